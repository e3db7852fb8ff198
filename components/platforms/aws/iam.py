"""Each node's IAM identity: an instance role and profile per server and one for every client, and
the role's inline policy (DESIGN decision 10): cloud auto-join, its own SSM parameters only
(parameter_store.py), and for a server Vault's seal key."""

from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws

from components.config.settings import PROJECT, Settings
from components.nodes.node_config import NodeSpec, ssm_scope
from components.platforms.aws.parameter_store import ParametersOf
from components.platforms.aws.tags import stack_tags

# Who may take an instance role: EC2, for the instances (nodes and image builds) it is attached to.
EC2_ASSUME_ROLE_POLICY = json.dumps({
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}],
})  # fmt: skip


def instance_role(
    name: str, settings: Settings, node: NodeSpec, opts: pulumi.ResourceOptions
) -> tuple[aws.iam.Role, aws.iam.InstanceProfile]:
    """The instance role of a server, or of every client, and its instance profile."""
    scope = ssm_scope(node)
    role = aws.iam.Role(
        f"{name}-{scope}",
        description=f"{PROJECT} {settings.stack} {scope}",
        assume_role_policy=EC2_ASSUME_ROLE_POLICY,
        tags=stack_tags(settings, scope),
        opts=opts,
    )
    profile = aws.iam.InstanceProfile(f"{name}-{scope}", role=role.name, tags=stack_tags(settings, scope), opts=opts)
    return role, profile


def node_policy(
    name: str,
    node: NodeSpec,
    role: aws.iam.Role,
    parameters_of: ParametersOf,
    vault_key_arn: pulumi.Output[str] | None,
    opts: pulumi.ResourceOptions,
) -> aws.iam.RolePolicy:
    """What a node's role may do: find the servers, read its own parameters, and (a server) unseal Vault."""
    scope = ssm_scope(node)
    statements = [
        # DescribeInstances supports no resource-level permissions: "*" is the only resource it
        # accepts. Cloud auto-join needs it to find the servers by tag.
        {"Sid": "CloudAutoJoin", "Effect": "Allow", "Action": ["ec2:DescribeInstances"], "Resource": "*"},
        {
            "Sid": "OwnSecrets",
            "Effect": "Allow",
            "Action": ["ssm:GetParameters"],
            "Resource": parameters_of(scope),
        },
    ]
    if vault_key_arn is not None:
        statements.append(
            {
                "Sid": "VaultAutoUnseal",
                "Effect": "Allow",
                "Action": ["kms:Encrypt", "kms:Decrypt", "kms:DescribeKey"],
                "Resource": vault_key_arn,
            }
        )
    return aws.iam.RolePolicy(
        f"{name}-{scope}",
        role=role.id,
        policy=pulumi.Output.json_dumps({"Version": "2012-10-17", "Statement": statements}),
        opts=opts,
    )
