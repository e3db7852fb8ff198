"""AwsNodes (components/platforms/aws/nodes.py) under mocks: the nodes' user-data, the server instances, the
client launch template and autoscaling group, the server chain."""

from __future__ import annotations

import base64
import gzip

import pytest
import upstream
import yaml
from aws_program import GROUP, INSTANCE, NAME, SERVERS, STACK, TEMPLATE, aws_resources, preview, run_aws, short
from mock_aws import AWS_AMI, AWS_REGION

from components.nodes.node_config import EC2_USER_DATA_LIMIT, TLS_DIR
from components.nodes.node_plan import JOIN_TAG_KEY, join_tag_value
from components.platforms.aws import nodes as aws_nodes
from scripts.stack_files import stack_settings

from conftest import ROOT, appears, is_secret, unwrap


@pytest.fixture(scope="module")
def monitor():
    return preview()


def _user_data(monitor) -> dict[str, tuple[str, bytes]]:
    """Node -> (urn, the gzipped bytes EC2 receives) for every server instance and the client template."""
    found = {}
    for instance in monitor.of_type(INSTANCE):
        found[short(instance)] = (instance.urn, base64.b64decode(unwrap(instance.inputs["userDataBase64"])))
    for template in monitor.of_type(TEMPLATE):
        found["client"] = (template.urn, base64.b64decode(unwrap(template.inputs["userData"])))
    assert sorted(found) == sorted([*SERVERS, "client"]), sorted(found)
    return found


def _cert_pem(monitor, node: str) -> str:
    return monitor.one("tls:index/locallySignedCert:LocallySignedCert", f"{NAME}-{node}").outputs["certPem"]


# -- user-data ----------------------------------------------------------------------------------------


def test_each_node_boots_with_its_own_certificate(monitor):
    ca = unwrap(monitor.of_type("tls:index/selfSignedCert:SelfSignedCert")[0].outputs["certPem"])
    for node, (urn, data) in _user_data(monitor).items():
        document = yaml.safe_load(gzip.decompress(data))
        files = {f["path"]: f["content"] for f in document["write_files"]}
        assert files[f"{TLS_DIR}/node.pem"] == _cert_pem(monitor, node), urn
        assert files[f"{TLS_DIR}/ca.pem"] == ca, urn
        if node != "client":
            assert document["hostname"] == node, urn
            # The node fetches its secrets from its own Parameter Store path.
            assert f"/hashistack/{STACK}/{node}/tls-key" in files["/etc/hashistack/ssm-secrets.tsv"], urn


def test_certificates_differ_per_server(monitor):
    certificates = {_cert_pem(monitor, node) for node in SERVERS}
    assert len(certificates) == len(SERVERS)


def test_user_data_holds_no_secret_and_fits_ec2(monitor):
    secrets = monitor.secret_values()
    assert len(secrets) > 20  # keys, gossip keys, tokens, parameter values
    for node, (urn, data) in _user_data(monitor).items():
        assert len(data) < EC2_USER_DATA_LIMIT, f"{urn}: {len(data)} bytes of gzipped user-data"
        text = gzip.decompress(data).decode()
        assert "PRIVATE KEY" not in text, urn
        leaked = [s for s in secrets if appears(s, text)]
        assert not leaked, f"{urn}: user-data of {node} carries a secret: {leaked[0][:40]}..."


def test_user_data_is_not_secret_since_it_carries_none(monitor):
    """Were it secret, a secret Output would have flowed into it."""
    for instance in monitor.of_type(INSTANCE):
        assert not is_secret(instance.inputs["userDataBase64"]), instance.urn
    (template,) = monitor.of_type(TEMPLATE)
    assert not is_secret(template.inputs["userData"]), template.urn


def test_the_vault_seal_names_the_stack_key(monitor):
    key_arn = monitor.one("aws:kms/key:Key", f"{NAME}-vault-seal").outputs["arn"]
    for node, (urn, data) in _user_data(monitor).items():
        files = {f["path"]: f["content"] for f in yaml.safe_load(gzip.decompress(data))["write_files"]}
        if node != "client":
            assert f'kms_key_id = "{key_arn}"' in files["/etc/vault.d/vault.hcl"], urn
        else:
            assert "/etc/vault.d/vault.hcl" not in files, urn


# -- instances, launch template, autoscaling ----------------------------------------------------------


def test_instance_metadata_requires_tokens_and_stops_at_the_instance(monitor):
    instances = monitor.of_type(INSTANCE)
    assert len(instances) == len(SERVERS)
    for registration, options in [(i, i.inputs["metadataOptions"]) for i in instances] + [
        (t, t.inputs["metadataOptions"]) for t in monitor.of_type(TEMPLATE)
    ]:
        assert options["httpTokens"] == "required", registration.urn
        assert options["httpPutResponseHopLimit"] == 1, registration.urn
        assert options["httpEndpoint"] == "enabled", registration.urn


def test_every_volume_is_encrypted_gp3(monitor):
    instances = monitor.of_type(INSTANCE)
    assert instances
    for instance in instances:
        root = instance.inputs["rootBlockDevice"]
        assert root["encrypted"] is True and root["volumeType"] == "gp3", instance.urn
        assert "ebsBlockDevices" not in instance.inputs, instance.urn
    (template,) = monitor.of_type(TEMPLATE)
    mappings = unwrap(template.inputs["blockDeviceMappings"])
    assert [m["deviceName"] for m in mappings] == ["/dev/sda1"], template.urn  # the image's root device
    for mapping in mappings:
        assert mapping["ebs"]["encrypted"] == "true" and mapping["ebs"]["volumeType"] == "gp3", template.urn


def test_debian_12_nodes_boot_the_debian_cloud_team_s_image():
    """The Debian cloud team's AWS account and image names (debian-12-amd64-<date>-<build>)."""
    monitor = run_aws({"nodeOs": "debian-12"})
    (call,) = [c for c in monitor.mocks.calls if c.token == "aws:ec2/getAmi:getAmi"]
    assert call.args["owners"] == ["136693071363"]
    assert {f["name"]: f["values"] for f in call.args["filters"]}["name"] == ["debian-12-amd64-*"]


def test_the_image_is_canonicals_ubuntu_noble(monitor):
    (call,) = [c for c in monitor.mocks.calls if c.token == "aws:ec2/getAmi:getAmi"]
    assert call.args["owners"] == ["099720109477"]
    filters = {f["name"]: f["values"] for f in call.args["filters"]}
    assert filters["name"] == ["ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*"]
    for instance in monitor.of_type(INSTANCE):
        assert instance.inputs["ami"] == AWS_AMI, instance.urn
    (template,) = monitor.of_type(TEMPLATE)
    assert template.inputs["imageId"] == AWS_AMI


def test_the_join_tag_is_on_server_instances_only(monitor):
    tagged = set()
    for registration in aws_resources(monitor):
        inputs = unwrap(registration.inputs)
        tag_sets = [inputs.get("tags") or {}]
        tag_sets += [spec.get("tags") or {} for spec in inputs.get("tagSpecifications") or []]
        if registration.type == GROUP:
            tag_sets = [{t["key"]: t["value"] for t in inputs["tags"]}]
        if any(JOIN_TAG_KEY in tags for tags in tag_sets):
            tagged.add(registration.urn)
    instances = monitor.of_type(INSTANCE)
    assert tagged == {i.urn for i in instances}
    for instance in instances:
        assert instance.inputs["tags"][JOIN_TAG_KEY] == join_tag_value(stack_settings(STACK)), instance.urn


def test_clients_are_tagged_at_launch_without_the_join_tag(monitor):
    (group,) = monitor.of_type(GROUP)
    tags = {t["key"]: t for t in unwrap(group.inputs["tags"])}
    assert set(tags) == {"Name", "Project", "Stack"}, group.urn
    assert all(t["propagateAtLaunch"] for t in tags.values()), group.urn


def test_clients_roll_launch_before_terminate_and_drain_before_they_go(monitor):
    """AWS API RefreshPreferences: MinHealthyPercentage 100 and MaxHealthyPercentage above it launch a
    replacement before terminating; the terminating-transition hook (API LifecycleHook: default result
    ABANDON unless set, heartbeat 30-7200 s) holds a client while its Nomad drains it: longer than
    nomad.service's stop timeout on clients (cloudinit/nomad-drain.conf)."""
    (group,) = monitor.of_type(GROUP)
    inputs = unwrap(group.inputs)
    assert (inputs["minSize"], inputs["maxSize"], inputs["desiredCapacity"]) == (3, 4, 3)
    refresh = inputs["instanceRefresh"]
    assert refresh["strategy"] == "Rolling"
    assert refresh["preferences"]["minHealthyPercentage"] == 100
    assert refresh["preferences"]["maxHealthyPercentage"] == 134, "3 clients: one more at a time"
    assert [aws_nodes.refresh_headroom(n) for n in (1, 2, 3, 500)] == [200, 150, 134, 101]
    (hook,) = monitor.of_type("aws:autoscaling/lifecycleHook:LifecycleHook")
    assert hook.inputs["autoscalingGroupName"] == group.outputs["name"]
    assert hook.inputs["lifecycleTransition"] == "autoscaling:EC2_INSTANCE_TERMINATING"
    assert hook.inputs["defaultResult"] == "CONTINUE"
    stop = next(
        line.split("=", 1)[1]
        for line in (ROOT / "cloudinit" / "nomad-drain.conf").read_text().splitlines()
        if line.startswith("TimeoutStopSec=")
    )
    assert stop.endswith("min") and hook.inputs["heartbeatTimeout"] > int(stop.removesuffix("min")) * 60
    for target_group in monitor.of_type("aws:lb/targetGroup:TargetGroup"):
        assert (target_group.inputs["deregistrationDelay"], target_group.inputs["connectionTermination"]) == (30, True)


# -- the server chain ---------------------------------------------------------------------------------


def test_servers_are_replaced_one_after_another():
    """On every `up` after the first (tests/rollout/test_server_chain.py has the first)."""
    monitor = run_aws(later=True)
    gates = {
        short(r).removesuffix("-healthy"): r for r in monitor.of_type("pulumi-python:dynamic/hashistack:ServerHealth")
    }
    assert sorted(gates) == SERVERS
    for i, node in enumerate(SERVERS):
        instance = monitor.one(INSTANCE, f"{NAME}-{node}")
        assert instance.delete_before_replace, instance.urn
        earlier = {gates[s].urn for s in SERVERS[:i]}
        handover = monitor.one("pulumi-python:dynamic/hashistack:ServerHandover", f"{NAME}-{node}-handover")
        assert handover.urn in instance.dependencies, "the instance goes after its handover"
        waits_for = {urn for urn in handover.dependencies if urn in {g.urn for g in gates.values()}}
        assert waits_for == ({gates[SERVERS[i - 1]].urn} if i else set()), f"{instance.urn} waits for {waits_for}"
        assert waits_for <= earlier


def test_a_gate_that_times_out_names_the_console_command_of_its_instance(monitor):
    for node in SERVERS:
        instance = monitor.one(INSTANCE, f"{NAME}-{node}")
        gate = monitor.one("pulumi-python:dynamic/hashistack:ServerHealth", f"{NAME}-{node}-healthy")
        assert gate.inputs["console_command"] == (
            f"aws ec2 get-console-output --latest --output text --region {AWS_REGION} --instance-id {instance.id}"
        )
        assert gate.inputs["console_log"] == "", "AWS has no console log on this host"


def test_a_newer_image_replaces_no_node(monitor):
    for instance in monitor.of_type(INSTANCE):
        assert "ami" in instance.ignore_changes, instance.urn
    (template,) = monitor.of_type(TEMPLATE)
    assert "imageId" in template.ignore_changes, template.urn


def test_the_up_waits_for_the_client_group_s_refresh(monitor):
    """The fleet wait follows the group, is keyed on the launch template version it runs, and the
    stack's `clients` output waits for it."""
    (fleet,) = monitor.of_type("pulumi-python:dynamic/hashistack:ClientFleet")
    group = monitor.one("aws:autoscaling/group:Group", "cluster-clients")
    template = monitor.one("aws:ec2/launchTemplate:LaunchTemplate", "cluster-client")
    assert group.urn in fleet.dependencies
    inputs = unwrap(fleet.inputs)
    assert inputs["count"] == 3 and inputs["nomad_version"] == upstream.PINNED["nomad"]
    assert inputs["region"] == AWS_REGION
    assert inputs["template_version"] == unwrap(group.inputs)["launchTemplate"]["version"]
    assert template.urn in group.dependencies or template.urn in fleet.dependencies
    assert len(inputs["addresses"]) == 3
    assert is_secret(fleet.inputs["nomad_token"])
