"""AwsNetwork + AwsNodes under mocks, wired as __main__.py wires them: what an attacker or an outage would test.

This file holds what concerns the platform as a whole (inventory, tags, secrets in plain text, the stack's
outputs); the files next to it test one module of components/platforms/aws/ each, and share the program
run of aws_program.py."""

from __future__ import annotations

import inspect
from collections import Counter

import pulumi_aws as aws
import pytest
from aws_program import (
    EGRESS_RULE,
    GROUP,
    INGRESS_RULE,
    INSTANCE,
    NAME,
    PARAMETER,
    SERVERS,
    STACK,
    TEMPLATE,
    aws_resources,
    preview,
    run_aws,
)

from conftest import plaintext_strings, unwrap


@pytest.fixture(scope="module")
def monitor():
    return preview()


# The aws stack: 3 servers over 3 subnets, one apiAllowedCidrs range, clients in one group.
EXPECTED_INVENTORY = {
    "hashistack:aws:Network": 1,
    "hashistack:aws:Nodes": 1,
    "aws:ec2/vpc:Vpc": 1,
    "aws:ec2/internetGateway:InternetGateway": 1,
    "aws:ec2/routeTable:RouteTable": 1,
    "aws:ec2/subnet:Subnet": 3,
    "aws:ec2/routeTableAssociation:RouteTableAssociation": 3,
    "aws:ec2/securityGroup:SecurityGroup": 4,
    INGRESS_RULE: 37,
    EGRESS_RULE: 7,  # nodes: all; load balancers: their target ports only
    "aws:ec2/networkInterface:NetworkInterface": 3,
    "aws:ec2/eip:Eip": 3,  # one per server: within a fresh account's 5, with 5 servers too
    "aws:lb/loadBalancer:LoadBalancer": 2,
    "aws:lb/targetGroup:TargetGroup": 5,
    "aws:lb/listener:Listener": 5,
    "aws:lb/targetGroupAttachment:TargetGroupAttachment": 9,  # servers x API ports
    "aws:kms/key:Key": 2,  # Vault's seal; the nodes' secrets in SSM
    "aws:kms/alias:Alias": 2,
    "aws:iam/role:Role": 4,  # one per server, one for all clients
    "aws:iam/rolePolicy:RolePolicy": 4,
    "aws:iam/instanceProfile:InstanceProfile": 4,
    PARAMETER: 15,  # 4 per server, 3 for all clients
    INSTANCE: 3,
    TEMPLATE: 1,
    GROUP: 1,
    "aws:autoscaling/lifecycleHook:LifecycleHook": 1,
    "pulumi-python:dynamic/hashistack:ServerHealth": 3,
}


def _inventory(monitor) -> dict[str, int]:
    """The platform's resources: AWS ones, its components and the server gates."""
    mine = ("aws:", "hashistack:aws:", "pulumi-python:dynamic/hashistack:ServerHealth")
    return dict(Counter(r.type for r in monitor.registrations if r.type.startswith(mine)))


# -- inventory --------------------------------------------------------------------------------------


def test_inventory(monitor):
    assert _inventory(monitor) == EXPECTED_INVENTORY


def test_inventory_does_not_grow_with_the_clients(monitor):
    """Clients are an autoscaling group with one shared spec: 500 clients cost the program no more than 3."""
    many = run_aws({"clientCount": 500})
    assert _inventory(many) == _inventory(monitor)
    (group,) = many.of_type(GROUP)
    inputs = unwrap(group.inputs)
    assert (inputs["minSize"], inputs["maxSize"], inputs["desiredCapacity"]) == (500, 501, 500), group.urn
    assert inputs["instanceRefresh"]["preferences"]["maxHealthyPercentage"] == 101, "one extra instance at a time"
    assert unwrap(many.stack_outputs["clients"])["size"] == 500


def test_every_taggable_resource_carries_the_stack_tags(monitor):
    checked = 0
    for registration in aws_resources(monitor):
        module, cls = registration.type.split(":")[1].split("/")[0], registration.type.split(":")[2]
        resource_class = getattr(getattr(aws, module), cls)
        if "tags" not in inspect.signature(resource_class._internal_init).parameters:
            continue
        tags = unwrap(registration.inputs).get("tags") or {}
        if registration.type == GROUP:  # a list of {key, value, propagateAtLaunch}
            tags = {t["key"]: t["value"] for t in tags}
        assert tags.get("Project") == "hashistack" and tags.get("Stack") == STACK, f"{registration.urn}: {tags}"
        assert tags.get("Name", "").startswith(f"hashistack-{STACK}-"), f"{registration.urn}: Name {tags.get('Name')}"
        checked += 1
    assert checked > 50


# -- secrets ------------------------------------------------------------------------------------------


def test_no_secret_value_appears_in_plain_text_in_any_aws_input(monitor):
    secrets = monitor.secret_values()
    assert secrets
    for registration in aws_resources(monitor):
        for text in plaintext_strings(registration.inputs):
            leaked = [s for s in secrets if s in text]
            assert not leaked, f"{registration.urn}: secret value in plain text: {leaked[0][:40]}..."


# -- outputs ------------------------------------------------------------------------------------------


def test_outputs(monitor):
    outputs = unwrap(monitor.stack_outputs)
    eips = {node: monitor.one("aws:ec2/eip:Eip", f"{NAME}-{node}").outputs["publicIp"] for node in SERVERS}
    assert outputs["serverAddresses"] == eips
    assert outputs["sshCommands"] == {node: f"ssh ubuntu@{ip}" for node, ip in eips.items()}
    assert outputs["apiEndpoint"] == monitor.one("aws:lb/loadBalancer:LoadBalancer", f"{NAME}-api").outputs["dnsName"]
    ingress = monitor.one("aws:lb/loadBalancer:LoadBalancer", f"{NAME}-ingress")
    assert outputs["ingressEndpoint"] == ingress.outputs["dnsName"]
    (group,) = monitor.of_type(GROUP)
    assert outputs["clients"] == {"autoscalingGroup": group.outputs["name"], "size": 3}
    # The servers by name; the ingress's names are DNS's (a CNAME to ingressEndpoint).
    assert outputs["hostsLines"].splitlines() == [f"{ip} {node}" for node, ip in eips.items()]
    assert len(set(eips.values())) == len(SERVERS), "mock addresses must differ"
