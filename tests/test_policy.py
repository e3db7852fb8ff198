"""The policy pack (policy/): each policy against passing and violating resources, every policy mandatory,
the pack passing on both stacks' resources as the program registers them, and the pack's process
answering the engine's gRPC calls as `pulumi preview --policy-pack policy` makes them."""

from __future__ import annotations

import base64
import gzip
import os
import subprocess
import sys
from typing import Any

import grpc
import pulumi_aws
import pytest
from google.protobuf import empty_pb2, struct_pb2
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc
from pulumi_policy import (
    EnforcementLevel,
    PolicyCustomTimeouts,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
)
from pulumi_policy.deserialize import deserialize_properties
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, unknown_checking_proxy

from policy.resource_policies import POLICIES, SECRET_OUTPUTS, TAGGABLE_AWS_TYPES

from conftest import PROJECT, ROOT, SECRET_SIG, RecordingMonitor, Registration, run_program

BY_NAME = {policy.name: policy for policy in POLICIES}

INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
INSTANCE = "aws:ec2/instance:Instance"
TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
IMDS_OK = {"httpEndpoint": "enabled", "httpTokens": "required", "httpPutResponseHopLimit": 1.0}
TAGS = {"Name": "hashistack-aws-x", "Project": "hashistack", "Stack": "aws"}
UUID = "0f8fad5b-d9cb-469f-a165-70867728950e"
CA_ONLY = "#cloud-config\nwrite_files:\n- content: |\n    -----BEGIN CERTIFICATE-----\n    MIIB\n    -----END CERTIFICATE-----\n"


def gzipped_base64(text: str) -> str:
    return base64.b64encode(gzip.compress(text.encode(), mtime=0)).decode()


def args_for(
    typ: str, props: dict[str, Any], secret_outputs: tuple[str, ...] = (), stack: str = "aws", name: str = "r"
) -> ResourceValidationArgs:
    """What the policy SDK builds from the engine's request: proxied props, options, the URN."""
    urn = f"urn:pulumi:{stack}::{PROJECT['name']}::{typ}::{name}"
    opts = PolicyResourceOptions(
        protect=False,
        ignore_changes=[],
        delete_before_replace=None,
        aliases=[],
        custom_timeouts=PolicyCustomTimeouts(0, 0, 0),
        additional_secret_outputs=list(secret_outputs),
        parent=None,
    )
    return ResourceValidationArgs(typ, unknown_checking_proxy(props), urn, name, opts, None)


def violations(policy: ResourceValidationPolicy, args: ResourceValidationArgs) -> list[str]:
    found: list[str] = []
    policy.validate(args, lambda message, urn=None: found.append(message))
    return found


BAD_JOB = """
job "bad" {
  namespace = "apps"
  group "web" {
    task "server" {
      driver = "docker"
      config {
        image = "nginx:latest"
      }
      resources {
        cpu    = 100
        memory = 64
      }
    }
    task "script" {
      driver = "raw_exec"
      config {
        command = "/bin/true"
      }
      resources {
        cpu    = 100
        memory = 64
      }
    }
  }
}
"""

# (case id, resource type, props, additional secret outputs, None when it passes / a phrase of the violation)
CASES: dict[str, list[tuple[str, str, dict, tuple[str, ...], str | None]]] = {
    "no-internet-ingress-but-web": [
        ("https-from-world", INGRESS, {"ipProtocol": "tcp", "fromPort": 443.0, "toPort": 443.0, "cidrIpv4": "0.0.0.0/0"}, (), None),
        ("http-from-world-v6", INGRESS, {"ipProtocol": "tcp", "fromPort": 80, "toPort": 80, "cidrIpv6": "::/0"}, (), None),
        ("ssh-from-allowed", INGRESS, {"ipProtocol": "tcp", "fromPort": 22, "toPort": 22, "cidrIpv4": "198.51.100.0/24"}, (), None),
        ("ssh-from-world", INGRESS, {"ipProtocol": "tcp", "fromPort": 22, "toPort": 22, "cidrIpv4": "0.0.0.0/0"}, (), "tcp/22 to 0.0.0.0/0"),
        ("all-from-world-v6", INGRESS, {"ipProtocol": "-1", "cidrIpv6": "::/0"}, (), "every port"),
        ("web-range-from-world", INGRESS, {"ipProtocol": "tcp", "fromPort": 80, "toPort": 443, "cidrIpv4": "0.0.0.0/0"}, (), "tcp/80-443"),
        ("inline-consul-from-world", "aws:ec2/securityGroup:SecurityGroup", {"ingress": [{"protocol": "tcp", "fromPort": 8501, "toPort": 8501, "cidrBlocks": ["10.0.0.0/8", "0.0.0.0/0"]}]}, (), "inline ingress[0] opens tcp/8501"),
        ("legacy-rule-nomad-from-world", "aws:ec2/securityGroupRule:SecurityGroupRule", {"type": "ingress", "protocol": "tcp", "fromPort": 4646, "toPort": 4646, "cidrBlocks": ["0.0.0.0/0"]}, (), "tcp/4646"),
        ("legacy-egress-to-world", "aws:ec2/securityGroupRule:SecurityGroupRule", {"type": "egress", "protocol": "-1", "fromPort": 0, "toPort": 0, "cidrBlocks": ["0.0.0.0/0"]}, (), None),
    ],
    "imdsv2-only": [
        ("instance", INSTANCE, {"metadataOptions": IMDS_OK}, (), None),
        ("template", TEMPLATE, {"metadataOptions": {**IMDS_OK, "httpPutResponseHopLimit": 1}}, (), None),
        ("tokens-optional", INSTANCE, {"metadataOptions": {**IMDS_OK, "httpTokens": "optional"}}, (), "httpTokens is 'optional'"),
        ("two-hops", TEMPLATE, {"metadataOptions": {**IMDS_OK, "httpPutResponseHopLimit": 2.0}}, (), "HopLimit is 2"),
        ("no-metadata-options", INSTANCE, {}, (), "httpTokens is None"),
    ],
    "encrypted-volumes": [
        ("instance", INSTANCE, {"rootBlockDevice": {"encrypted": True, "volumeType": "gp3"}}, (), None),
        ("template", TEMPLATE, {"blockDeviceMappings": [{"deviceName": "/dev/sda1", "ebs": {"encrypted": "true"}}]}, (), None),
        ("instance-plain-root", INSTANCE, {"rootBlockDevice": {"volumeType": "gp3"}}, (), "rootBlockDevice.encrypted"),
        ("instance-plain-data", INSTANCE, {"rootBlockDevice": {"encrypted": True}, "ebsBlockDevices": [{"encrypted": False}]}, (), "ebsBlockDevices[0]"),
        ("template-image-root", TEMPLATE, {}, (), "no blockDeviceMappings"),
        ("template-plain", TEMPLATE, {"blockDeviceMappings": [{"deviceName": "/dev/sda1", "ebs": {"encrypted": "false"}}]}, (), "/dev/sda1"),
        ("volume-plain", "aws:ebs/volume:Volume", {"size": 10}, (), "encrypted is not true"),
    ],
    "secrets-stay-secret": [
        ("preset-token", "random:index/randomUuid:RandomUuid", {}, ("result",), None),
        ("preset-token-in-clear", "random:index/randomUuid:RandomUuid", {}, (), "'result'"),
        ("private-key", "tls:index/privateKey:PrivateKey", {"algorithm": "ECDSA"}, ("privateKeyOpenssh", "privateKeyPem", "privateKeyPemPkcs8"), None),
        ("private-key-pem-in-clear", "tls:index/privateKey:PrivateKey", {"algorithm": "ECDSA"}, ("privateKeyOpenssh", "privateKeyPemPkcs8"), "'privateKeyPem'"),
        ("vault-init-without-recovery-keys", "pulumi-python:dynamic/hashistack:VaultInit", {}, ("root_token", "unseal_keys"), "'recovery_keys'"),
        ("parameter", "aws:ssm/parameter:Parameter", {"type": "SecureString", "value": "k", "keyId": "arn:aws:kms:eu-central-1:1:key/x"}, ("value",), None),
        ("parameter-aws-ssm-key", "aws:ssm/parameter:Parameter", {"type": "SecureString", "value": "k"}, ("value",), "keyId is None"),
        ("parameter-aws-ssm-alias", "aws:ssm/parameter:Parameter", {"type": "SecureString", "value": "k", "keyId": "alias/aws/ssm"}, ("value",), "aws/ssm key"),
        ("parameter-plain", "aws:ssm/parameter:Parameter", {"type": "String", "value": "k"}, ("value",), "'SecureString'"),
        ("user-data-ca-only", INSTANCE, {"userDataBase64": gzipped_base64(CA_ONLY)}, (), None),
        ("user-data-key", INSTANCE, {"userDataBase64": gzipped_base64(CA_ONLY + "-----BEGIN EC PRIVATE KEY-----\nMHc\n")}, (), "a private key"),
        ("template-user-data-gossip-key", TEMPLATE, {"userData": base64.b64encode(b'encrypt = "' + b"A" * 43 + b'="\n').decode()}, (), "a gossip key"),
        ("plain-user-data-token", INSTANCE, {"userData": f'acl {{ tokens {{ initial_management = "{UUID}" }} }}'}, (), "an ACL token"),
    ],
    "nomad-jobs-pass-the-job-rules": [
        ("hello-docker", "nomad:index/job:Job", {"jobspec": (ROOT / "jobs" / "hello-docker.nomad.hcl").read_text(), "hcl2": {"vars": {"datacenters": '["dc1"]'}}}, (), None),
        ("not-a-job", "nomad:index/aclPolicy:AclPolicy", {"rulesHcl": "namespace \"*\" {}"}, (), None),
        ("latest-image", "nomad:index/job:Job", {"jobspec": BAD_JOB}, (), 'images-pinned: image "nginx:latest"'),
        ("raw-exec", "nomad:index/job:Job", {"jobspec": BAD_JOB}, (), "no-raw-exec"),
        ("not-hcl", "nomad:index/job:Job", {"jobspec": "job {"}, (), "not valid HCL"),
    ],
    "project-and-stack-tags": [
        ("vpc", "aws:ec2/vpc:Vpc", {"tags": TAGS}, (), None),
        ("autoscaling-group", "aws:autoscaling/group:Group", {"tags": [{"key": k, "value": v, "propagateAtLaunch": True} for k, v in TAGS.items()]}, (), None),
        ("not-taggable", "aws:ec2/routeTableAssociation:RouteTableAssociation", {"subnetId": "s"}, (), None),
        ("not-aws", "libvirt:index/volume:Volume", {"name": "v"}, (), None),
        ("vpc-untagged", "aws:ec2/vpc:Vpc", {}, (), "tag Project is missing"),
        ("vpc-other-stack", "aws:ec2/vpc:Vpc", {"tags": {**TAGS, "Stack": "dev"}}, (), "tag Stack is 'dev', not 'aws'"),
        ("autoscaling-group-without-project", "aws:autoscaling/group:Group", {"tags": [{"key": "Stack", "value": "aws"}]}, (), "tag Project is missing"),
        ("unlisted-type-with-tags", "aws:sqs/queue:Queue", {"tags": {"Project": "hashistack"}}, (), "tag Stack is missing"),
    ],
}  # fmt: skip


def test_every_policy_is_mandatory_has_a_unique_name_and_test_cases():
    assert len(BY_NAME) == len(POLICIES) >= 5
    for policy in POLICIES:
        assert isinstance(policy, ResourceValidationPolicy), policy
        assert policy.enforcement_level == EnforcementLevel.MANDATORY, policy.name
    assert set(CASES) == set(BY_NAME), "every policy needs passing and violating cases here"
    for name, cases in CASES.items():
        outcomes = {expected is None for *_, expected in cases}
        assert outcomes == {True, False}, f"{name}: needs at least one passing and one violating resource"


@pytest.mark.parametrize(
    ("policy", "typ", "props", "secret_outputs", "expected"),
    [pytest.param(name, *case[1:], id=f"{name}:{case[0]}") for name, cases in CASES.items() for case in cases],
)
def test_policy_case(policy, typ, props, secret_outputs, expected):
    found = violations(BY_NAME[policy], args_for(typ, props, secret_outputs))
    if expected is None:
        assert found == []
    else:
        assert any(expected in message for message in found), found


def test_an_unknown_value_during_preview_is_left_to_the_engine():
    """The SDK reports a policy that reads an unknown value as not run (advisory), never as passed."""
    from pulumi_policy.proxy import UnknownValueError

    rule = {"ipProtocol": "tcp", "fromPort": 22, "toPort": 22, "cidrIpv4": UNKNOWN_STRING_VALUE}
    with pytest.raises(UnknownValueError):
        violations(BY_NAME["no-internet-ingress-but-web"], args_for(INGRESS, rule))


# -- the pack on the program's own resources ---------------------------------------------------------------
def registered(stack: str) -> RecordingMonitor:
    """The program as `pulumi preview` runs it for the stack file (the aws example range passes there)."""
    return run_program(stack, preview=True)


def engine_args(registration: Registration) -> ResourceValidationArgs:
    """The args the SDK would build from the engine's request for this registration."""
    opts = PolicyResourceOptions(
        protect=False,
        ignore_changes=registration.ignore_changes,
        delete_before_replace=registration.delete_before_replace,
        aliases=[],
        custom_timeouts=PolicyCustomTimeouts(0, 0, 0),
        additional_secret_outputs=sorted(registration.secret_outputs),
        parent=registration.parent or None,
    )
    props = unknown_checking_proxy(deserialize_properties(registration.inputs))
    return ResourceValidationArgs(registration.type, props, registration.urn, registration.name, opts, None)


@pytest.fixture(scope="module", params=["dev", "aws"])
def stack_resources(request) -> tuple[str, list[Registration]]:
    monitor = registered(request.param)
    # Components have no inputs and no provider behind them: the engine does not analyse them.
    return request.param, [r for r in monitor.registrations if not r.type.startswith("hashistack:")]


def test_the_pack_passes_on_each_stack(stack_resources):
    stack, resources = stack_resources
    judged = {
        "dev": {"tls:index/privateKey:PrivateKey", "random:index/randomUuid:RandomUuid", "pulumi:providers:vault"},
        "aws": {INGRESS, INSTANCE, TEMPLATE, "aws:ssm/parameter:Parameter", "aws:autoscaling/group:Group"},
    }[stack]
    assert judged <= {r.type for r in resources}, "the stack no longer has what these policies judge"
    problems = []
    for registration in resources:
        for policy in POLICIES:
            problems += [
                f"{registration.urn}: {policy.name}: {m}" for m in violations(policy, engine_args(registration))
            ]
    assert problems == []


def test_the_taggable_types_cover_the_program(stack_resources):
    stack, resources = stack_resources
    taggable = set()
    for typ in {r.type for r in resources if r.type.startswith("aws:")}:
        module, name = typ.split(":")[1].split("/")[0], typ.rsplit(":", 1)[1]
        args_class = getattr(getattr(pulumi_aws, module), f"{name}Args")
        if hasattr(args_class, "tags"):
            taggable.add(typ)
    assert taggable <= TAGGABLE_AWS_TYPES, f"add to TAGGABLE_AWS_TYPES: {sorted(taggable - TAGGABLE_AWS_TYPES)}"
    assert stack == "dev" or taggable, "no taggable AWS resource found"


def test_the_secret_outputs_table_knows_every_resource_with_secret_outputs(stack_resources):
    """A new secret-holding type (say a new dynamic resource) must be added to SECRET_OUTPUTS to be guarded."""
    _stack, resources = stack_resources
    unknown = {r.type for r in resources if r.secret_outputs and r.type not in SECRET_OUTPUTS}
    # Their secret outputs are declared by the provider schema (certificates' CA key inputs, OIDC secrets).
    schema_only = {
        "tls:index/certRequest:CertRequest",
        "tls:index/locallySignedCert:LocallySignedCert",
        "tls:index/selfSignedCert:SelfSignedCert",
        "vault:jwt/authBackend:AuthBackend",
    }
    assert unknown <= schema_only, sorted(unknown - schema_only)


# -- the pack's process, as the CLI runs it --------------------------------------------------------------
@pytest.fixture(scope="module")
def analyzer():
    """policy/__main__.py in a process of its own, serving the engine's Analyzer gRPC interface."""
    process = subprocess.Popen(
        [sys.executable, "-u", str(ROOT / "policy" / "__main__.py")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": ""},
    )
    try:
        port = process.stdout.readline().strip()
        assert port.isdigit(), f"the pack did not start: {port!r} {process.stderr.read() if process.poll() else ''}"
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield analyzer_pb2_grpc.AnalyzerStub(channel)
    finally:
        process.terminate()
        process.wait(timeout=10)


def analyze(stub, typ: str, props: dict[str, Any], secret_outputs: tuple[str, ...] = ()):
    properties = struct_pb2.Struct()
    properties.update(props)
    request = analyzer_pb2.AnalyzeRequest(
        type=typ,
        name="r",
        urn=f"urn:pulumi:aws::{PROJECT['name']}::{typ}::r",
        properties=properties,
        options=analyzer_pb2.AnalyzerResourceOptions(additionalSecretOutputs=list(secret_outputs)),
    )
    return stub.Analyze(request, timeout=10).diagnostics


def test_the_pack_process_lists_every_policy_as_mandatory(analyzer):
    info = analyzer.GetAnalyzerInfo(empty_pb2.Empty(), timeout=10)
    assert info.name == "hashistack"
    assert {p.name: p.enforcementLevel for p in info.policies} == {
        name: analyzer_pb2.EnforcementLevel.MANDATORY for name in BY_NAME
    }


def test_the_pack_process_stops_a_violation_and_passes_the_rest(analyzer):
    ssh = {"ipProtocol": "tcp", "fromPort": 22, "toPort": 22, "cidrIpv4": "0.0.0.0/0", "tags": TAGS}
    [diagnostic] = analyze(analyzer, INGRESS, ssh)
    assert diagnostic.policyName == "no-internet-ingress-but-web"
    assert diagnostic.enforcementLevel == analyzer_pb2.EnforcementLevel.MANDATORY
    assert "tcp/22" in diagnostic.message
    assert list(analyze(analyzer, INGRESS, {**ssh, "fromPort": 443, "toPort": 443})) == []


def test_the_pack_process_sees_values_but_not_secretness_of_inputs(analyzer):
    """The engine sends secret inputs wrapped; the SDK unwraps them before validation (the documented limit)."""
    wrapped = {**SECRET_SIG, "value": "s3cr3t"}
    parameter = {"type": "String", "value": wrapped, "tags": TAGS}
    [diagnostic] = analyze(analyzer, "aws:ssm/parameter:Parameter", parameter, ("value",))
    assert diagnostic.policyName == "secrets-stay-secret" and "'SecureString'" in diagnostic.message
    assert (
        list(
            analyze(
                analyzer,
                "aws:ssm/parameter:Parameter",
                {**parameter, "type": "SecureString", "keyId": "arn:k"},
                ("value",),
            )
        )
        == []
    )
