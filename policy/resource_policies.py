"""The hashistack policy pack's rules: resource validation policies, each mandatory.

`pulumi preview --policy-pack policy` (and `up`) runs every policy in `POLICIES` on every resource the
program registers; a violation of a mandatory policy stops the operation. A policy is a function
`(args, report_violation)` plus one `mandatory(...)` entry in `POLICIES` (see
nomad_jobs_pass_the_job_rules below for a short one); tests/test_policy.py then wants a passing and a
violating case for it.

`args.props` are the resource's inputs as the engine sends them: camelCase names for provider resources
(`metadataOptions.httpTokens`), the program's own names for dynamic resources, plain values (the Python
SDK removes the secret markers before validation, so a policy cannot see whether an *input* is secret),
and, during a preview, unknown values that raise when read (the engine then reports the policy as not
run for that resource). What a policy can see about secretness is `args.opts.additional_secret_outputs`:
the outputs the state keeps secret (the SDK adds those a provider's schema declares secret).
"""

from __future__ import annotations

import base64
import binascii
import gzip
import ipaddress
import json
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pulumi_policy import EnforcementLevel, ReportViolation, ResourceValidationArgs, ResourceValidationPolicy

Validate = Callable[[ResourceValidationArgs, ReportViolation], None]


def mandatory(name: str, description: str, validate: Validate) -> ResourceValidationPolicy:
    return ResourceValidationPolicy(
        name=name, description=description, validate=validate, enforcement_level=EnforcementLevel.MANDATORY
    )


def _seq(value: Any) -> list:
    """A list property (a proxy in the engine, a list in tests); absent or null is empty."""
    if value is None or isinstance(value, str):
        return []
    return list(value) if isinstance(value, Sequence) else []


def _map(value: Any) -> Mapping:
    return value if isinstance(value, Mapping) else {}


def _true(value: Any) -> bool:
    """AWS booleans arrive as booleans, or as strings in launch templates ("true")."""
    return value is True or (isinstance(value, str) and value.lower() == "true")


# -- no port but 80/443 open to the internet --------------------------------------------------------
WEB_PORTS = frozenset({80, 443})
_PORT_PROTOCOLS = {"tcp": "tcp", "6": "tcp", "udp": "udp", "17": "udp"}


def _is_world(cidr: Any) -> bool:
    try:
        return ipaddress.ip_network(str(cidr), strict=False).prefixlen == 0
    except ValueError:
        return False


def _world_opening(protocol: Any, from_port: Any, to_port: Any) -> str | None:
    """Why a rule open to the whole internet is not allowed, or None for tcp/udp 80 or 443 alone."""
    kind = _PORT_PROTOCOLS.get(str(protocol).lower())
    if kind is None:
        return f"protocol {protocol} (every port)" if str(protocol) in ("-1", "all") else f"protocol {protocol}"
    first, last = int(from_port or 0), int(to_port or 0)
    if first == last and first in WEB_PORTS:
        return None
    return f"{kind}/{first}" if first == last else f"{kind}/{first}-{last}"


def _report_world(report_violation: ReportViolation, where: str, cidrs: list, reason: str | None) -> None:
    for cidr in cidrs:
        if _is_world(cidr) and reason:
            report_violation(
                f"{where} opens {reason} to {cidr}: only tcp 80 and 443 (the ingress) may be open to the "
                "internet; admit the ranges in apiAllowedCidrs or a security group instead"
            )


def no_internet_ingress_but_web(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    props = args.props
    if args.resource_type == "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule":
        reason = _world_opening(props.get("ipProtocol"), props.get("fromPort"), props.get("toPort"))
        _report_world(report_violation, "the rule", [props.get("cidrIpv4"), props.get("cidrIpv6")], reason)
    elif args.resource_type == "aws:ec2/securityGroupRule:SecurityGroupRule" and props.get("type") == "ingress":
        reason = _world_opening(props.get("protocol"), props.get("fromPort"), props.get("toPort"))
        cidrs = [*_seq(props.get("cidrBlocks")), *_seq(props.get("ipv6CidrBlocks"))]
        _report_world(report_violation, "the rule", cidrs, reason)
    elif args.resource_type == "aws:ec2/securityGroup:SecurityGroup":
        for i, rule in enumerate(_seq(props.get("ingress"))):
            rule = _map(rule)
            reason = _world_opening(rule.get("protocol"), rule.get("fromPort"), rule.get("toPort"))
            cidrs = [*_seq(rule.get("cidrBlocks")), *_seq(rule.get("ipv6CidrBlocks"))]
            _report_world(report_violation, f"inline ingress[{i}]", cidrs, reason)


# -- IMDSv2 only, one hop -------------------------------------------------------------------------------
_IMDS_TYPES = ("aws:ec2/instance:Instance", "aws:ec2/launchTemplate:LaunchTemplate")


def imdsv2_only(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type not in _IMDS_TYPES:
        return
    options = _map(args.props.get("metadataOptions"))
    if options.get("httpEndpoint") == "disabled":
        return  # no metadata service at all
    if options.get("httpTokens") != "required":
        report_violation(
            f"metadataOptions.httpTokens is {options.get('httpTokens')!r}: set it to 'required' (IMDSv2 only), "
            "or any process on the node can read the instance role's credentials with a plain GET"
        )
    hops = options.get("httpPutResponseHopLimit")
    if hops is None or int(hops) != 1:
        report_violation(
            f"metadataOptions.httpPutResponseHopLimit is {hops!r}: set it to 1, so a container behind a "
            "bridge (one hop more) cannot reach the instance role's credentials"
        )


# -- encrypted volumes -----------------------------------------------------------------------------------
def encrypted_volumes(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    props = args.props
    if args.resource_type == "aws:ec2/instance:Instance":
        if not _true(_map(props.get("rootBlockDevice")).get("encrypted")):
            report_violation("rootBlockDevice.encrypted is not true: the root volume holds the node's keys and data")
        for i, device in enumerate(_seq(props.get("ebsBlockDevices"))):
            if not _true(_map(device).get("encrypted")):
                report_violation(f"ebsBlockDevices[{i}].encrypted is not true")
    elif args.resource_type == "aws:ec2/launchTemplate:LaunchTemplate":
        mappings = [_map(m) for m in _seq(props.get("blockDeviceMappings"))]
        ebs = [(m.get("deviceName"), _map(m.get("ebs"))) for m in mappings if m.get("ebs") is not None]
        if not ebs:
            report_violation(
                "no blockDeviceMappings with ebs: the root volume would come from the image unencrypted; "
                "map the image's root device with ebs.encrypted 'true'"
            )
        for device, volume in ebs:
            if not _true(volume.get("encrypted")):
                report_violation(f"blockDeviceMappings {device}: ebs.encrypted is not 'true'")
    elif args.resource_type == "aws:ebs/volume:Volume" and not _true(props.get("encrypted")):
        report_violation("encrypted is not true")


# -- secrets stay secret ------------------------------------------------------------------------------------
# Outputs that hold keys, tokens or key shares, per resource type: each must be kept secret in the state
# (`additional_secret_outputs`, which the SDK fills from a provider's schema for tls, random, aws and the
# providers' credentials, and the program sets itself for RandomUuid and its dynamic resources).
SECRET_OUTPUTS: dict[str, frozenset[str]] = {
    "tls:index/privateKey:PrivateKey": frozenset({"privateKeyPem", "privateKeyPemPkcs8", "privateKeyOpenssh"}),
    "random:index/randomBytes:RandomBytes": frozenset({"base64", "hex"}),
    "random:index/randomPassword:RandomPassword": frozenset({"result"}),
    # The preset ACL secrets (DESIGN decision 2); the provider does not declare `result` secret.
    "random:index/randomUuid:RandomUuid": frozenset({"result"}),
    "aws:ssm/parameter:Parameter": frozenset({"value"}),
    "nomad:index/aclToken:AclToken": frozenset({"secretId"}),
    "vault:index/token:Token": frozenset({"clientToken"}),
    "vault:kv/secretV2:SecretV2": frozenset({"data", "dataJson"}),
    "pulumi:providers:consul": frozenset({"token", "keyPem"}),
    "pulumi:providers:nomad": frozenset({"secretId"}),
    "pulumi:providers:vault": frozenset({"token"}),
    "pulumi-python:dynamic/hashistack:ServerHealth": frozenset(
        {"client_key_pem", "consul_token", "nomad_token", "vault_token", "vault_unseal_keys"}
    ),
    "pulumi-python:dynamic/hashistack:ConsulPresetTokens": frozenset({"management_token", "tokens", "client_key_pem"}),
    "pulumi-python:dynamic/hashistack:NomadAclBootstrap": frozenset({"bootstrap_secret"}),
    "pulumi-python:dynamic/hashistack:VaultInit": frozenset({"root_token", "unseal_keys", "recovery_keys"}),
    "pulumi-python:dynamic/hashistack:VaultUnsealed": frozenset({"unseal_keys"}),
    "pulumi-python:dynamic/hashistack:ClientNode": frozenset({"nomad_token"}),
    "pulumi-python:dynamic/hashistack:ServerHandover": frozenset(
        {"client_key_pem", "consul_token", "nomad_token", "vault_token"}
    ),
    "pulumi-python:dynamic/hashistack:VaultStandbyFirst": frozenset({"vault_token"}),
    "pulumi-python:dynamic/hashistack:ClientFleet": frozenset({"nomad_token"}),
}

# EC2 user-data is readable by anyone allowed ec2:DescribeInstanceAttribute and cannot be secret: on AWS
# the nodes fetch their secrets from SSM Parameter Store (DESIGN decision 10), so user-data carries none.
_USER_DATA_SECRETS = (
    ("a private key", re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")),
    ("a gossip key", re.compile(r"""\bencrypt["']?\s*[=:]\s*["'][A-Za-z0-9+/]{43}=["']""")),
    (
        "an ACL token",
        re.compile(
            r"""(?i)(token|secret|initial_management|agent|default|replication)\w*["']?\s*[=:]\s*["']?"""
            r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
        ),
    ),
    ("a Vault token", re.compile(r"\bhv[sbr]\.[A-Za-z0-9_-]{20,}")),
)


def _user_data_text(value: Any, base64_encoded: bool) -> str:
    raw = str(value).encode()
    if base64_encoded:
        try:
            raw = base64.b64decode(b"".join(raw.split()), validate=True)
        except (binascii.Error, ValueError):
            return str(value)
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError):
            return raw.decode(errors="replace")
    return raw.decode(errors="replace")


def secrets_stay_secret(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    wanted = SECRET_OUTPUTS.get(args.resource_type, frozenset())
    declared = set(args.opts.additional_secret_outputs or ()) if args.opts else set()
    for name in sorted(wanted - declared):
        report_violation(
            f"output {name!r} holds secret material but is not kept secret in the state: add it to the "
            "resource's additional_secret_outputs (or pass the value through pulumi.Output.secret)"
        )
    if args.resource_type == "aws:ssm/parameter:Parameter" and args.props.get("type") != "SecureString":
        report_violation(
            f"type is {args.props.get('type')!r}: the stack's parameters hold node secrets; make it "
            "'SecureString' (encrypted with KMS, readable only with kms:Decrypt)"
        )
    elif args.resource_type == "aws:ssm/parameter:Parameter" and args.props.get("keyId") in (None, "", "alias/aws/ssm"):
        report_violation(
            f"keyId is {args.props.get('keyId')!r}: the account's aws/ssm key decrypts for every principal that may "
            "read the parameter; encrypt it with the stack's own key (its policy names the readers)"
        )
    if args.resource_type in _IMDS_TYPES:
        fields = (("userData", args.resource_type.endswith("LaunchTemplate")), ("userDataBase64", True))
        for field, encoded in fields:
            if args.props.get(field) is None:
                continue
            text = _user_data_text(args.props.get(field), encoded)
            for what, pattern in _USER_DATA_SECRETS:
                if pattern.search(text):
                    report_violation(
                        f"{field} carries {what}: EC2 user-data cannot be secret (any principal with "
                        "ec2:DescribeInstanceAttribute reads it); deliver it through an SSM SecureString"
                    )


# -- Project and Stack tags ---------------------------------------------------------------------------------
# The AWS resource types of this program that take tags (kept complete by tests/test_policy.py), and a few
# more a change could bring; any other aws resource given tags is checked too.
TAGGABLE_AWS_TYPES = frozenset(
    {
        "aws:autoscaling/group:Group",
        "aws:ebs/volume:Volume",
        "aws:ec2/eip:Eip",
        "aws:ec2/instance:Instance",
        "aws:ec2/internetGateway:InternetGateway",
        "aws:ec2/launchTemplate:LaunchTemplate",
        "aws:ec2/natGateway:NatGateway",
        "aws:ec2/networkInterface:NetworkInterface",
        "aws:ec2/routeTable:RouteTable",
        "aws:ec2/securityGroup:SecurityGroup",
        "aws:ec2/subnet:Subnet",
        "aws:ec2/vpc:Vpc",
        "aws:iam/instanceProfile:InstanceProfile",
        "aws:imagebuilder/component:Component",
        "aws:imagebuilder/image:Image",
        "aws:imagebuilder/imageRecipe:ImageRecipe",
        "aws:imagebuilder/infrastructureConfiguration:InfrastructureConfiguration",
        "aws:iam/role:Role",
        "aws:kms/key:Key",
        "aws:lb/listener:Listener",
        "aws:lb/loadBalancer:LoadBalancer",
        "aws:lb/targetGroup:TargetGroup",
        "aws:s3/bucket:Bucket",
        "aws:s3/bucketObjectv2:BucketObjectv2",
        "aws:s3/bucketV2:BucketV2",
        "aws:ssm/parameter:Parameter",
        "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule",
        "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
    }
)
REQUIRED_TAGS = ("Project", "Stack")


def _stack_and_project(urn: str) -> tuple[str, str]:
    """`urn:pulumi:<stack>::<project>::<type>::<name>`"""
    parts = urn.split("::")
    return parts[0].rsplit(":", 1)[-1], parts[1] if len(parts) > 1 else ""


def _tags(value: Any) -> dict[str, Any]:
    """A tags map, or an autoscaling group's list of {key, value, propagateAtLaunch}."""
    if isinstance(value, Mapping):
        return dict(value)
    return {_map(tag).get("key"): _map(tag).get("value") for tag in _seq(value)}


def project_and_stack_tags(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if not args.resource_type.startswith("aws:"):
        return
    if args.resource_type not in TAGGABLE_AWS_TYPES and "tags" not in args.props:
        return
    tags = _tags(args.props.get("tags"))
    stack, project = _stack_and_project(args.urn)
    for key, expected in zip(REQUIRED_TAGS, (project, stack), strict=True):
        if key not in tags:
            report_violation(f"tag {key} is missing: every AWS resource carries Project and Stack (cost, ownership)")
        elif tags[key] != expected:
            report_violation(f"tag {key} is {tags[key]!r}, not {expected!r} (from the resource's URN)")


# -- Nomad jobs pass the job rules ----------------------------------------------------------------------
def _variable_value(value: Any) -> Any:
    """An HCL2 variable as the Nomad provider receives it: a string, or an HCL (JSON) literal for lists."""
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def nomad_jobs_pass_the_job_rules(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """The program checks its job files at start; this catches a job submitted any other way."""
    if args.resource_type != "nomad:index/job:Job":
        return
    # Imported here: only a pack that sees a Nomad job pays for the HCL parser.
    from components.access.namespaces import NOMAD_NAMESPACES
    from components.workloads.job_model import JobLoadError, load_job_text
    from components.workloads.job_rules import check_job

    variables = {name: _variable_value(v) for name, v in _map(_map(args.props.get("hcl2")).get("vars")).items()}
    try:
        job = load_job_text(str(args.props.get("jobspec") or ""), Path(f"<{args.name}>"), variables)
    except JobLoadError as error:
        report_violation(str(error))
        return
    for violation in check_job(job, NOMAD_NAMESPACES):
        report_violation(str(violation))


POLICIES: list[ResourceValidationPolicy] = [
    mandatory(
        "no-internet-ingress-but-web",
        "No security group admits the internet (0.0.0.0/0, ::/0) on any port but tcp 80 and 443.",
        no_internet_ingress_but_web,
    ),
    mandatory(
        "imdsv2-only",
        "EC2 instances and launch templates require IMDSv2 tokens with a hop limit of 1.",
        imdsv2_only,
    ),
    mandatory(
        "encrypted-volumes",
        "EBS root and data volumes of instances, launch templates and volumes are encrypted.",
        encrypted_volumes,
    ),
    mandatory(
        "secrets-stay-secret",
        "Keys, tokens and key shares are secret in the state; SSM parameters are SecureStrings under the "
        "stack's own KMS key, not aws/ssm; EC2 user-data carries no secret.",
        secrets_stay_secret,
    ),
    mandatory(
        "project-and-stack-tags",
        "Every taggable AWS resource is tagged Project and Stack with its project's and stack's names.",
        project_and_stack_tags,
    ),
    mandatory(
        "nomad-jobs-pass-the-job-rules",
        "Every Nomad job passes the job rules of components/workloads/job_rules.py (pinned images, resources, "
        "no raw_exec or privileged containers, Vault only by workload identity, ...).",
        nomad_jobs_pass_the_job_rules,
    ),
]
