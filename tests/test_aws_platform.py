"""AwsNetwork + AwsNodes under mocks, wired as __main__.py wires them: what an attacker or an outage would test."""

from __future__ import annotations

import base64
import fnmatch
import gzip
import inspect
import ipaddress
import json
from collections import Counter
from typing import Any

import pulumi_aws as aws
import pytest
import yaml
from mock_aws import AWS_ACCOUNT, AWS_AMI, AWS_REGION
from test_node_config import appears

from components import aws_platform
from components.node_config import EC2_USER_DATA_LIMIT, TLS_DIR
from components.node_plan import JOIN_TAG_KEY, join_tag_value
from scripts.stack_files import stack_settings

from conftest import is_secret, plaintext_strings, run_program, unwrap

STACK = "aws"
NAME = "cluster"  # as __main__.py names the components
SERVERS = [f"server-{i}" for i in range(3)]
INSTANCE = "aws:ec2/instance:Instance"
TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
GROUP = "aws:autoscaling/group:Group"
INGRESS_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
EGRESS_RULE = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
PARAMETER = "aws:ssm/parameter:Parameter"
WORLD = {"0.0.0.0/0", "::/0"}


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
    "aws:ec2/eip:Eip": 6,  # one per server, one per subnet for the ingress load balancer
    "aws:lb/loadBalancer:LoadBalancer": 2,
    "aws:lb/targetGroup:TargetGroup": 5,
    "aws:lb/listener:Listener": 5,
    "aws:lb/targetGroupAttachment:TargetGroupAttachment": 9,  # servers x API ports
    "aws:kms/key:Key": 1,
    "aws:kms/alias:Alias": 1,
    "aws:iam/role:Role": 4,  # one per server, one for all clients
    "aws:iam/rolePolicy:RolePolicy": 4,
    "aws:iam/instanceProfile:InstanceProfile": 4,
    PARAMETER: 15,  # 4 per server, 3 for all clients
    INSTANCE: 3,
    TEMPLATE: 1,
    GROUP: 1,
    "pulumi-python:dynamic/hashistack:ServerHealth": 3,
}


def _run(overrides: dict[str, Any] | None = None, later: bool = False):
    """__main__.py itself, for the aws stack (as `pulumi preview` runs it; `later`: not the first `up`)."""
    return run_program(STACK, overrides, preview=True, later=later)


@pytest.fixture(scope="module")
def monitor():
    return _run()


def _inventory(monitor) -> dict[str, int]:
    """The platform's resources: AWS ones, its components and the server gates."""
    mine = ("aws:", "hashistack:aws:", "pulumi-python:dynamic/hashistack:ServerHealth")
    return dict(Counter(r.type for r in monitor.registrations if r.type.startswith(mine)))


def _aws(monitor):
    aws_registrations = [r for r in monitor.registrations if r.type.startswith("aws:")]
    assert aws_registrations, "no AWS resource registered"
    return aws_registrations


def _by_id(monitor) -> dict[str, Any]:
    return {r.id: r for r in monitor.registrations}


def _short(registration) -> str:
    return registration.name.removeprefix(f"{NAME}-")


def _decoded(encoded: str) -> str:
    return gzip.decompress(base64.b64decode(encoded)).decode()


def _user_data(monitor) -> dict[str, tuple[str, bytes]]:
    """Node -> (urn, the gzipped bytes EC2 receives) for every server instance and the client template."""
    found = {}
    for instance in monitor.of_type(INSTANCE):
        found[_short(instance)] = (instance.urn, base64.b64decode(unwrap(instance.inputs["userDataBase64"])))
    for template in monitor.of_type(TEMPLATE):
        found["client"] = (template.urn, base64.b64decode(unwrap(template.inputs["userData"])))
    assert sorted(found) == sorted([*SERVERS, "client"]), sorted(found)
    return found


def _cert_pem(monitor, node: str) -> str:
    return monitor.one("tls:index/locallySignedCert:LocallySignedCert", f"{NAME}-{node}").outputs["certPem"]


# -- inventory --------------------------------------------------------------------------------------


def test_inventory(monitor):
    assert _inventory(monitor) == EXPECTED_INVENTORY


def test_inventory_does_not_grow_with_the_clients(monitor):
    """Clients are an autoscaling group with one shared spec: 500 clients cost the program no more than 3."""
    many = _run({"clientCount": 500})
    assert _inventory(many) == _inventory(monitor)
    (group,) = many.of_type(GROUP)
    inputs = unwrap(group.inputs)
    assert (inputs["minSize"], inputs["maxSize"], inputs["desiredCapacity"]) == (500, 500, 500), group.urn
    assert unwrap(many.stack_outputs["clients"])["size"] == 500


def test_every_taggable_resource_carries_the_stack_tags(monitor):
    checked = 0
    for registration in _aws(monitor):
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


def test_no_secret_value_appears_in_plain_text_in_any_aws_input(monitor):
    secrets = monitor.secret_values()
    assert secrets
    for registration in _aws(monitor):
        for text in plaintext_strings(registration.inputs):
            leaked = [s for s in secrets if s in text]
            assert not leaked, f"{registration.urn}: secret value in plain text: {leaked[0][:40]}..."


def test_the_vault_seal_names_the_stack_key(monitor):
    key_arn = monitor.one("aws:kms/key:Key", f"{NAME}-vault-seal").outputs["arn"]
    for node, (urn, data) in _user_data(monitor).items():
        files = {f["path"]: f["content"] for f in yaml.safe_load(gzip.decompress(data))["write_files"]}
        if node != "client":
            assert f'kms_key_id = "{key_arn}"' in files["/etc/vault.d/vault.hcl"], urn
        else:
            assert "/etc/vault.d/vault.hcl" not in files, urn


# -- SSM Parameter Store ------------------------------------------------------------------------------


def test_every_parameter_is_a_secret_secure_string_on_its_nodes_path(monitor):
    parameters = monitor.of_type(PARAMETER)
    names = set()
    for parameter in parameters:
        assert parameter.inputs["type"] == "SecureString", parameter.urn
        assert is_secret(parameter.inputs["value"]), f"{parameter.urn}: value is not a secret input"
        names.add(parameter.inputs["name"])
    server_files = ("consul-secrets", "nomad-secrets", "tls-key", "vault-env")
    expected = {f"/hashistack/{STACK}/{s}/{f}" for s in SERVERS for f in server_files}
    expected |= {f"/hashistack/{STACK}/clients/{f}" for f in ("consul-secrets", "nomad-secrets", "tls-key")}
    assert names == expected


def test_each_server_key_is_stored_under_that_server_only(monitor):
    for node in [*SERVERS, "clients"]:
        parameter = monitor.one(PARAMETER, f"{NAME}-{node}-tls-key")
        key_name = f"{NAME}-{node}" if node != "clients" else f"{NAME}-client"
        key = monitor.one("tls:index/privateKey:PrivateKey", key_name).outputs["privateKeyPem"]
        assert unwrap(parameter.inputs["value"]) == key, parameter.urn


# -- IAM ---------------------------------------------------------------------------------------------


def _policies(monitor) -> dict[str, dict]:
    """Role scope (server-N, clients) -> its inline policy document."""
    roles = {r.id: _short(r) for r in monitor.of_type("aws:iam/role:Role")}
    policies = {}
    for policy in monitor.of_type("aws:iam/rolePolicy:RolePolicy"):
        policies[roles[policy.inputs["role"]]] = json.loads(policy.inputs["policy"])
    assert sorted(policies) == sorted([*SERVERS, "clients"])
    return policies


def _parameter_pattern(scope: str) -> str:
    return f"arn:aws:ssm:{AWS_REGION}:{AWS_ACCOUNT}:parameter/hashistack/{STACK}/{scope}/*"


def test_policies_grant_exactly_the_listed_actions_on_this_stacks_resources(monitor):
    key_arn = monitor.one("aws:kms/key:Key", f"{NAME}-vault-seal").outputs["arn"]
    for scope, document in _policies(monitor).items():
        granted = {}
        for statement in document["Statement"]:
            assert statement.keys() <= {"Sid", "Effect", "Action", "Resource"}, f"{scope}: {statement}"
            assert statement["Effect"] == "Allow", f"{scope}: {statement}"
            granted[tuple(sorted(statement["Action"]))] = statement["Resource"]
        expected = {
            ("ec2:DescribeInstances",): "*",  # no resource-level permissions exist for it
            ("ssm:GetParameters",): _parameter_pattern(scope),
        }
        if scope != "clients":
            expected[("kms:Decrypt", "kms:DescribeKey", "kms:Encrypt")] = key_arn
        assert granted == expected, f"{scope}: {json.dumps(document, indent=1)}"


def test_each_parameter_is_readable_by_its_own_role_only(monitor):
    patterns = {scope: _parameter_pattern(scope) for scope in _policies(monitor)}
    parameters = monitor.of_type(PARAMETER)
    assert parameters
    for parameter in parameters:
        arn = parameter.outputs["arn"]
        readers = {scope for scope, pattern in patterns.items() if fnmatch.fnmatchcase(arn, pattern)}
        owner = parameter.inputs["name"].split("/")[3]
        assert readers == {owner}, f"{parameter.urn}: readable by {readers}"


def test_roles_are_assumable_by_ec2_only(monitor):
    roles = monitor.of_type("aws:iam/role:Role")
    assert roles
    for role in roles:
        (statement,) = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
        assert statement["Principal"] == {"Service": "ec2.amazonaws.com"}, role.urn
        assert statement["Action"] == "sts:AssumeRole", role.urn


def test_each_server_runs_with_its_own_instance_profile(monitor):
    profiles = {r.outputs["name"]: r for r in monitor.of_type("aws:iam/instanceProfile:InstanceProfile")}
    roles = {r.outputs["name"]: _short(r) for r in monitor.of_type("aws:iam/role:Role")}
    for instance in monitor.of_type(INSTANCE):
        profile = profiles[instance.inputs["iamInstanceProfile"]]
        assert roles[profile.inputs["role"]] == _short(instance), instance.urn
    (template,) = monitor.of_type(TEMPLATE)
    arn = template.inputs["iamInstanceProfile"]["arn"]
    (profile,) = [p for p in profiles.values() if p.outputs["arn"] == arn]
    assert roles[profile.inputs["role"]] == "clients", template.urn


def test_nodes_boot_only_once_their_policy_and_secrets_exist(monitor):
    """Nothing in the user-data names the parameters, so the dependency must be explicit."""
    by_scope: dict[str, set[str]] = {}
    for parameter in monitor.of_type(PARAMETER):  # /hashistack/<stack>/<scope>/<file>
        by_scope.setdefault(parameter.inputs["name"].split("/")[3], set()).add(parameter.urn)
    for policy in monitor.of_type("aws:iam/rolePolicy:RolePolicy"):
        by_scope.setdefault(_short(policy), set()).add(policy.urn)
    assert sorted(by_scope) == sorted([*SERVERS, "clients"]), sorted(by_scope)
    for instance in monitor.of_type(INSTANCE):
        missing = by_scope[_short(instance)] - instance.dependencies
        assert not missing, f"{instance.urn} does not wait for {sorted(missing)}"
    (group,) = monitor.of_type(GROUP)
    assert not by_scope["clients"] - group.dependencies, group.urn


# -- security groups ----------------------------------------------------------------------------------


def _rules(monitor, typ: str = INGRESS_RULE) -> list[tuple[str, str, str, int | None, int | None, str]]:
    """(urn, group, protocol, from, to, source) with groups named by their key (servers, api-lb, ...)."""
    groups = {r.id: _short(r) for r in monitor.of_type("aws:ec2/securityGroup:SecurityGroup")}
    rules = []
    for rule in monitor.of_type(typ):
        inputs = unwrap(rule.inputs)
        peers = [inputs.get(k) for k in ("cidrIpv4", "cidrIpv6", "referencedSecurityGroupId", "prefixListId")]
        assert sum(p is not None for p in peers) == 1, f"{rule.urn}: {inputs}"
        peer = next(p for p in peers if p is not None)
        source = f"sg:{groups[peer]}" if peer in groups else peer
        rules.append(
            (
                rule.urn,
                groups[inputs["securityGroupId"]],
                inputs["ipProtocol"],
                inputs.get("fromPort"),
                inputs.get("toPort"),
                source,
            )
        )
    assert rules, f"no {typ}"
    return rules


def _sources(rules, group: str, port: int, protocol: str = "tcp") -> dict[str, list[str]]:
    """Source -> URNs of the rules that let it reach `port` on `group`."""
    found: dict[str, list[str]] = {}
    for urn, g, proto, first, last, source in rules:
        if g == group and (proto == "-1" or (proto == protocol and first <= port <= last)):
            found.setdefault(source, []).append(urn)
    return found


def _assert_sources(rules, group: str, port: int, expected: set[str], protocol: str = "tcp") -> None:
    found = _sources(rules, group, port, protocol)
    extra = {source: urns for source, urns in found.items() if source not in expected}
    assert not extra, f"{protocol}/{port} on {group} is open to more than {sorted(expected)}: {extra}"
    assert set(found) == expected, f"{protocol}/{port} on {group}: {sorted(found)}, expected {sorted(expected)}"


def test_only_the_ingress_load_balancer_is_open_to_the_world_on_80_and_443(monitor):
    world_open = [r for r in _rules(monitor) if r[5] in WORLD]
    assert world_open, "the ingress must be reachable from the internet"
    for urn, group, protocol, first, last, _ in world_open:
        assert group == "ingress-lb" and protocol == "tcp" and first == last and first in (80, 443), urn
    assert {(r[3], r[5]) for r in world_open} == {(p, w) for p in (80, 443) for w in WORLD}


def test_no_ingress_rule_allows_every_protocol(monitor):
    for urn, _group, protocol, *_ in _rules(monitor):
        assert protocol in ("tcp", "udp"), urn


def test_api_ports_are_reachable_only_from_the_allowed_ranges_and_the_cluster(monitor):
    rules = _rules(monitor)
    allowed = {str(c) for c in stack_settings(STACK).aws.api_allowed_cidrs}
    assert allowed
    lb = {"sg:api-lb"}
    expected = {
        ("servers", 4646): lb | allowed,
        ("servers", 8501): lb | allowed,
        ("servers", 8200): lb | allowed | {"sg:servers", "sg:clients"},
        ("clients", 4646): {"sg:servers"},  # log streaming and exec, from the servers only
        ("clients", 8501): set(),
        ("clients", 8200): set(),
        ("api-lb", 4646): allowed,
        ("api-lb", 8501): allowed,
        ("api-lb", 8200): allowed,
        ("ingress-lb", 4646): set(),
        ("ingress-lb", 8501): set(),
        ("ingress-lb", 8200): set(),
    }
    for (group, port), sources in expected.items():
        _assert_sources(rules, group, port, sources)


def test_ssh_only_from_the_allowed_ranges(monitor):
    rules = _rules(monitor)
    allowed = {str(c) for c in stack_settings(STACK).aws.api_allowed_cidrs}
    for group in ("servers", "clients"):
        _assert_sources(rules, group, 22, allowed)
    for group in ("api-lb", "ingress-lb"):
        _assert_sources(rules, group, 22, set())


def test_cluster_ports_between_the_nodes(monitor):
    rules = _rules(monitor)
    nodes = {"sg:servers", "sg:clients"}
    for group in ("servers", "clients"):
        for protocol in ("tcp", "udp"):
            _assert_sources(rules, group, 8301, nodes, protocol)  # Consul serf LAN
    _assert_sources(rules, "servers", 8300, nodes)  # Consul RPC
    _assert_sources(rules, "servers", 4647, nodes)  # Nomad RPC
    _assert_sources(rules, "servers", 4648, {"sg:servers"}, "udp")  # Nomad serf
    _assert_sources(rules, "servers", 8201, {"sg:servers"})  # Vault cluster
    _assert_sources(rules, "clients", 25000, {"sg:clients"}, "udp")  # dynamic ports
    _assert_sources(rules, "clients", 443, {"sg:ingress-lb"})
    _assert_sources(rules, "servers", 443, set())
    for traefik in (8080, 8443):  # reached only through the node's redirect of 80/443 (ingress.nft)
        _assert_sources(rules, "clients", traefik, set())


def test_load_balancers_reach_only_their_targets(monitor):
    egress = _rules(monitor, EGRESS_RULE)
    for urn, group, protocol, first, last, target in egress:
        if group == "api-lb":
            assert (protocol, target) == ("tcp", "sg:servers") and first == last and first in (4646, 8501, 8200), urn
        elif group == "ingress-lb":
            assert (protocol, target) == ("tcp", "sg:clients") and first == last and first in (80, 443), urn
        else:
            assert group in ("servers", "clients") and target == "0.0.0.0/0", urn
    assert {r[1] for r in egress} == {"servers", "clients", "api-lb", "ingress-lb"}


def test_ipv6_allowed_ranges_become_ipv6_rules():
    monitor = _run({"apiAllowedCidrs": ["198.51.100.0/24", "2001:db8::/32"]})
    rules = _rules(monitor)
    _assert_sources(rules, "servers", 22, {"198.51.100.0/24", "2001:db8::/32"})
    _assert_sources(rules, "api-lb", 8200, {"198.51.100.0/24", "2001:db8::/32"})
    for rule in monitor.of_type(INGRESS_RULE):
        assert ":" not in (unwrap(rule.inputs).get("cidrIpv4") or ""), rule.urn


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
    for registration in _aws(monitor):
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


def test_servers_boot_on_their_fixed_interfaces(monitor):
    settings = stack_settings(STACK)
    subnets = {r.id: unwrap(r.inputs)["cidrBlock"] for r in monitor.of_type("aws:ec2/subnet:Subnet")}
    for i, node in enumerate(SERVERS):
        interface = monitor.one("aws:ec2/networkInterface:NetworkInterface", f"{NAME}-{node}")
        inputs = unwrap(interface.inputs)
        assert ipaddress.ip_address(inputs["privateIps"][0]) in ipaddress.ip_network(subnets[inputs["subnetId"]])
        assert subnets[inputs["subnetId"]] == str(settings.aws.subnet_cidrs[i % len(settings.aws.subnet_cidrs)])
        address = monitor.one("aws:ec2/eip:Eip", f"{NAME}-{node}")
        assert address.inputs["networkInterface"] == interface.id, address.urn
        instance = monitor.one(INSTANCE, f"{NAME}-{node}")
        assert instance.inputs["primaryNetworkInterface"]["networkInterfaceId"] == interface.id, instance.urn


def test_server_certificates_name_the_load_balancer_and_both_addresses(monitor):
    api = monitor.one("aws:lb/loadBalancer:LoadBalancer", f"{NAME}-api")
    dns_name = api.outputs["dnsName"]
    for node in SERVERS:
        request = unwrap(monitor.one("tls:index/certRequest:CertRequest", f"{NAME}-{node}").inputs)
        assert dns_name in request["dnsNames"], node
        private_ip = monitor.one("aws:ec2/networkInterface:NetworkInterface", f"{NAME}-{node}").outputs["privateIp"]
        public_ip = monitor.one("aws:ec2/eip:Eip", f"{NAME}-{node}").outputs["publicIp"]
        assert {private_ip, public_ip} <= set(request["ipAddresses"]), node


def test_the_api_load_balancer_targets_every_server_on_every_api_port(monitor):
    groups = {r.outputs["arn"]: r.inputs["port"] for r in monitor.of_type("aws:lb/targetGroup:TargetGroup")}
    private_ips = {r.outputs["privateIp"] for r in monitor.of_type("aws:ec2/networkInterface:NetworkInterface")}
    targets = {
        (groups[r.inputs["targetGroupArn"]], r.inputs["targetId"], r.inputs["port"])
        for r in monitor.of_type("aws:lb/targetGroupAttachment:TargetGroupAttachment")
    }
    assert targets == {(p, ip, p) for p in (4646, 8501, 8200) for ip in private_ips}
    for name in ("api", "ingress"):
        lb = unwrap(monitor.one("aws:lb/loadBalancer:LoadBalancer", f"{NAME}-{name}").inputs)
        assert lb["loadBalancerType"] == "network" and lb["internal"] is False, name


def test_the_ingress_serves_the_client_group(monitor):
    (group,) = monitor.of_type(GROUP)
    inputs = unwrap(group.inputs)
    ingress_groups = {
        r.outputs["arn"]: r.inputs for r in monitor.of_type("aws:lb/targetGroup:TargetGroup") if "ingress" in r.name
    }
    assert sorted(inputs["targetGroupArns"]) == sorted(ingress_groups)
    assert sorted(g["port"] for g in ingress_groups.values()) == [80, 443]
    assert all(g["targetType"] == "instance" for g in ingress_groups.values())
    assert len(inputs["vpcZoneIdentifiers"]) == 3


# -- the server chain ---------------------------------------------------------------------------------


def test_servers_are_replaced_one_after_another():
    """On every `up` after the first (tests/test_server_chain.py has the first)."""
    monitor = _run(later=True)
    gates = {
        _short(r).removesuffix("-healthy"): r for r in monitor.of_type("pulumi-python:dynamic/hashistack:ServerHealth")
    }
    assert sorted(gates) == SERVERS
    for i, node in enumerate(SERVERS):
        instance = monitor.one(INSTANCE, f"{NAME}-{node}")
        assert instance.delete_before_replace, instance.urn
        earlier = {gates[s].urn for s in SERVERS[:i]}
        waits_for = {urn for urn in instance.dependencies if urn in {g.urn for g in gates.values()}}
        assert waits_for == ({gates[SERVERS[i - 1]].urn} if i else set()), f"{instance.urn} waits for {waits_for}"
        assert waits_for <= earlier


def test_a_newer_image_replaces_no_node(monitor):
    for instance in monitor.of_type(INSTANCE):
        assert "ami" in instance.ignore_changes, instance.urn
    (template,) = monitor.of_type(TEMPLATE)
    assert "imageId" in template.ignore_changes, template.urn


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
    lines = outputs["hostsLines"].splitlines()
    assert lines[: len(SERVERS)] == [f"{ip} {node}" for node, ip in eips.items()]
    ingress_ip = monitor.one("aws:ec2/eip:Eip", f"{NAME}-ingress-0").outputs["publicIp"]
    assert lines[-1].split()[0] == ingress_ip and "traefik.hashistack.test" in lines[-1].split()
    assert len(set(eips.values()) | {ingress_ip}) == len(SERVERS) + 1, "mock addresses must differ"


def test_load_balancer_names_too_long_for_aws_are_refused():
    with pytest.raises(ValueError, match="24 before Pulumi's random suffix"):
        aws_platform._elb_name("a-component-name-too-long")


def test_no_node_answers_dns_to_the_network(monitor):
    """A client's resolved listens on the node's address too (DNSStubListenerExtra, for containers),
    and servers answer Consul DNS on theirs: no security group admits port 53 or 8600 from anywhere."""
    rules = _rules(monitor)
    for group in ("servers", "clients"):
        for port in (53, 8600):
            for protocol in ("tcp", "udp"):
                _assert_sources(rules, group, port, set(), protocol)
