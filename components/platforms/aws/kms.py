"""The stack's two KMS keys: Vault's auto-unseal key, and the key of the nodes' secrets in SSM
Parameter Store (parameter_store.py), whose key policy lets each node role decrypt its own
parameters only."""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from components.config.settings import PROJECT, Settings
from components.platforms.aws.parameter_store import ParametersOf
from components.platforms.aws.tags import stack_tags

# The longest window: a deleted key makes Vault's data unreadable, and deletion can be cancelled until then.
KMS_DELETION_WINDOW_DAYS = 30
# What the account (its IAM policies) may do with the secrets key: AWS KMS docs, "Default key policy",
# the key administrators' statement; no use of the key (no Decrypt) among them.
KMS_ADMINISTRATION = (
    "kms:Create*",
    "kms:Describe*",
    "kms:Enable*",
    "kms:List*",
    "kms:Put*",
    "kms:Update*",
    "kms:Revoke*",
    "kms:Disable*",
    "kms:Get*",
    "kms:Delete*",
    "kms:TagResource",
    "kms:UntagResource",
    "kms:ScheduleKeyDeletion",
    "kms:CancelKeyDeletion",
)


def vault_seal_key(name: str, settings: Settings, opts: pulumi.ResourceOptions) -> aws.kms.Key:
    """The key Vault auto-unseals with (the servers' role policies may use it), and its alias."""
    key = aws.kms.Key(
        f"{name}-vault-seal",
        description=f"{PROJECT} stack {settings.stack}: Vault auto-unseal",
        enable_key_rotation=True,
        deletion_window_in_days=KMS_DELETION_WINDOW_DAYS,
        tags=stack_tags(settings, "vault-seal"),
        opts=opts,
    )
    aws.kms.Alias(f"{name}-vault-seal", name=f"alias/{PROJECT}-{settings.stack}-vault", target_key_id=key.id, opts=opts)
    return key


def secrets_key(
    name: str,
    settings: Settings,
    roles: dict[str, tuple[aws.iam.Role, aws.iam.InstanceProfile]],
    parameters_of: ParametersOf,
    identity: pulumi.Output,
    partition: pulumi.Output,
    opts: pulumi.ResourceOptions,
) -> aws.kms.Key:
    """The stack's own key for its SSM parameters. With the account's aws/ssm key any principal of
    the account allowed to read a parameter could decrypt it; this key's policy lets the account
    administer it (never lock it: refresh and destroy keep working) but decrypt nothing, the
    deploying role encrypt and decrypt through SSM, and each node role decrypt its own parameters
    only: SSM passes the parameter's ARN as encryption context (AWS docs, "How AWS Systems Manager
    Parameter Store uses AWS KMS": kms:EncryptionContext:PARAMETER_ARN)."""
    invoke = pulumi.InvokeOutputOptions(parent=opts.parent)
    # An assumed role's session ARN changes with every session: the key names the role itself.
    deployer = aws.iam.get_session_context_output(arn=identity.arn, opts=invoke).issuer_arn
    ssm_service = pulumi.Output.concat("ssm.", settings.aws.region, ".", partition.dns_suffix)
    account_root = pulumi.Output.concat("arn:", partition.partition, ":iam::", identity.account_id, ":root")
    statements: list = [
        {
            "Sid": "AccountAdministers",
            "Effect": "Allow",
            "Principal": {"AWS": account_root},
            "Action": list(KMS_ADMINISTRATION),
            "Resource": "*",
        },
        {
            "Sid": "DeployerThroughSsm",
            "Effect": "Allow",
            "Principal": {"AWS": deployer},
            "Action": ["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey", "kms:DescribeKey"],
            "Resource": "*",
            "Condition": {"StringEquals": {"kms:ViaService": ssm_service}},
        },
    ]
    for scope, (role, _profile) in roles.items():
        statements.append(
            {
                "Sid": f"{scope.replace('-', '').capitalize()}ReadsItsOwn",
                "Effect": "Allow",
                "Principal": {"AWS": role.arn},
                "Action": "kms:Decrypt",
                "Resource": "*",
                "Condition": {
                    "StringEquals": {"kms:ViaService": ssm_service},
                    "StringLike": {"kms:EncryptionContext:PARAMETER_ARN": parameters_of(scope)},
                },
            }
        )
    key = aws.kms.Key(
        f"{name}-secrets",
        description=f"{PROJECT} stack {settings.stack}: the nodes' secrets in SSM Parameter Store",
        enable_key_rotation=True,
        deletion_window_in_days=KMS_DELETION_WINDOW_DAYS,
        policy=pulumi.Output.json_dumps({"Version": "2012-10-17", "Statement": statements}),
        tags=stack_tags(settings, "secrets"),
        opts=opts,
    )
    aws.kms.Alias(
        f"{name}-secrets",
        name=f"alias/{PROJECT}-{settings.stack}-secrets",
        target_key_id=key.id,
        opts=opts,
    )
    return key
