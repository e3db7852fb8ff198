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

from components.config.settings import MAX_API_ALLOWED_CIDRS, SECURITY_GROUP_RULES
from components.nodes.node_config import EC2_USER_DATA_LIMIT, TLS_DIR
from components.nodes.node_plan import JOIN_TAG_KEY, join_tag_value
from components.platforms.aws import nodes as aws_platform
from scripts.stack_files import stack_settings

from conftest import ROOT, ClusterMocks, RecordingMonitor, is_secret, plaintext_strings, run_program, unwrap

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
    assert (inputs["minSize"], inputs["maxSize"], inputs["desiredCapacity"]) == (500, 501, 500), group.urn
    assert inputs["instanceRefresh"]["preferences"]["maxHealthyPercentage"] == 101, "one extra instance at a time"
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


def test_parameters_are_encrypted_with_the_stacks_own_key_whose_policy_reads_only_what_it_must(monitor):
    """Not the account's aws/ssm key, which decrypts for whoever may read a parameter. The key policy:
    the account administers (AWS KMS docs, default key policy, key administrators) but may not use it;
    the deploying role (the session's issuer, not the session: aws iam get_session_context) encrypts
    and decrypts through SSM; each node role decrypts its own parameters only, through SSM, which
    passes the parameter's ARN as encryption context (AWS docs: Parameter Store and AWS KMS,
    kms:EncryptionContext:PARAMETER_ARN)."""
    key = monitor.one("aws:kms/key:Key", f"{NAME}-secrets")
    for parameter in monitor.of_type(PARAMETER):
        assert parameter.inputs["keyId"] == key.outputs["arn"], parameter.urn
    assert key.inputs["enableKeyRotation"] is True
    statements = {st["Sid"]: st for st in json.loads(key.inputs["policy"])["Statement"]}
    admin = statements.pop("AccountAdministers")
    assert admin["Principal"] == {"AWS": f"arn:aws:iam::{AWS_ACCOUNT}:root"}
    assert not {"kms:*", "kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:ReEncrypt*"} & set(admin["Action"])
    assert "kms:ScheduleKeyDeletion" in admin["Action"]
    deployer = statements.pop("DeployerThroughSsm")
    assert deployer["Principal"] == {"AWS": f"arn:aws:iam::{AWS_ACCOUNT}:role/hashistack-deploy"}
    assert deployer["Condition"] == {"StringEquals": {"kms:ViaService": f"ssm.{AWS_REGION}.amazonaws.com"}}
    roles = {_short(r): r.outputs["arn"] for r in monitor.of_type("aws:iam/role:Role")}
    assert sorted(statements) == sorted(f"{scope.replace('-', '').capitalize()}ReadsItsOwn" for scope in roles)
    for scope, arn in roles.items():
        statement = statements[f"{scope.replace('-', '').capitalize()}ReadsItsOwn"]
        assert (statement["Principal"], statement["Action"]) == ({"AWS": arn}, "kms:Decrypt"), scope
        assert statement["Condition"] == {
            "StringEquals": {"kms:ViaService": f"ssm.{AWS_REGION}.amazonaws.com"},
            "StringLike": {"kms:EncryptionContext:PARAMETER_ARN": _parameter_pattern(scope)},
        }, scope


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
    # IPv4 only: the ingress load balancer has no IPv6 address, so ::/0 would admit nothing.
    assert {(r[3], r[5]) for r in world_open} == {(80, "0.0.0.0/0"), (443, "0.0.0.0/0")}


def test_no_ingress_rule_allows_every_protocol(monitor):
    for urn, _group, protocol, *_ in _rules(monitor):
        assert protocol in ("tcp", "udp"), urn


def test_api_ports_are_reachable_only_from_the_allowed_ranges_and_the_cluster(monitor):
    rules = _rules(monitor)
    allowed = {str(c) for c in stack_settings(STACK).aws.api_allowed_cidrs}
    assert allowed
    lb = {"sg:api-lb"}
    expected = {
        # Prometheus (a job on a client) scrapes every Nomad agent: jobs/prometheus.nomad.hcl.
        ("servers", 4646): lb | allowed | {"sg:clients"},
        ("servers", 8501): lb | allowed,
        ("servers", 8200): lb | allowed | {"sg:servers", "sg:clients"},
        ("clients", 4646): {"sg:servers", "sg:clients"},  # log streaming, exec, metrics, alloc migration
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


def test_the_servers_security_group_stays_within_aws_rule_limit_at_the_most_ranges_allowed():
    """AWS VPC quotas: 60 inbound rules per security group and address family; settings cap the ranges."""
    ranges = [f"198.51.{i}.0/24" for i in range(MAX_API_ALLOWED_CIDRS)]
    monitor = _run({"apiAllowedCidrs": ranges})
    servers = [r for r in _rules(monitor) if r[1] == "servers"]
    assert len(servers) == 17 + 4 * MAX_API_ALLOWED_CIDRS <= SECURITY_GROUP_RULES
    with pytest.raises(Exception, match=rf"may hold at most {MAX_API_ALLOWED_CIDRS} IPv4 ranges"):
        _run({"apiAllowedCidrs": [*ranges, "198.51.100.0/24"]})


def test_the_api_load_balancer_asks_nomad_and_vault_whether_they_serve(monitor):
    """A TCP check passes for a sealed or uninitialised Vault and a Nomad without a leader; the HTTPS
    ones do not: Vault's /v1/sys/health answers 501 uninitialised, 503 sealed, 200 active or (with
    standbyok) standby (hashicorp/vault http/sys_health.go getSysHealth); Nomad's agent health answers
    500 without a leader (hashicorp/nomad v1.10.3 command/agent/agent_endpoint.go HealthRequest).
    Consul stays TCP: its servers' HTTPS API wants a client certificate the load balancer has not."""
    checks = {
        r.inputs["port"]: r.inputs["healthCheck"]
        for r in monitor.of_type("aws:lb/targetGroup:TargetGroup")
        if "api" in r.name
    }
    assert checks[4646] == {
        "protocol": "HTTPS",
        "port": "traffic-port",
        "path": "/v1/agent/health?type=server",
        "matcher": "200",
    }
    assert checks[8200] == {
        "protocol": "HTTPS",
        "port": "traffic-port",
        "path": "/v1/sys/health?standbyok=true",
        "matcher": "200",
    }
    assert checks[8501] == {"protocol": "TCP", "port": "traffic-port"}


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


def test_debian_12_nodes_boot_the_debian_cloud_team_s_image():
    """The Debian cloud team's AWS account and image names (debian-12-amd64-<date>-<build>)."""
    monitor = _run({"nodeOs": "debian-12"})
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
    assert [aws_platform.refresh_headroom(n) for n in (1, 2, 3, 500)] == [200, 150, 134, 101]
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


def _preflight_run(answers: dict, overrides: dict | None = None):
    monitor = RecordingMonitor(AnsweringMocks(answers))
    return run_program(STACK, overrides, preview=True, monitor=monitor)


class AnsweringMocks(ClusterMocks):
    """The mocks, with some invokes answered otherwise (another account, another region)."""

    def __init__(self, answers: dict):
        super().__init__()
        self.answers = answers

    def call(self, args):
        if args.token in self.answers:
            self.calls.append(args)
            answer = self.answers[args.token]
            return answer(args.args) if callable(answer) else answer
        return super().call(args)


def test_the_default_shape_fits_a_fresh_account_with_five_servers_too():
    """AWS docs (Elastic IP address quota): 5 per region by default; the ingress load balancer takes
    none (AWS gives it one static address per zone)."""
    monitor = run_program(STACK, {"serverCount": 5}, preview=True)
    assert len(monitor.of_type("aws:ec2/eip:Eip")) == 5
    quota = [c for c in monitor.mocks.calls if c.token == "aws:servicequotas/getServiceQuota:getServiceQuota"]
    assert [(c.args["quotaCode"], c.args["serviceCode"]) for c in quota] == [("L-0263D0A3", "ec2")]


def test_elastic_ips_beyond_the_quota_stop_before_any_resource():
    taken = {"id": "r", "allocationIds": ["eipalloc-1", "eipalloc-2", "eipalloc-3"], "publicIps": []}
    ours = {"id": "r", "allocationIds": ["eipalloc-3"], "publicIps": []}
    answers = {"aws:ec2/getEips:getEips": lambda args: ours if args.get("tags") else taken}
    with pytest.raises(Exception, match=r"serverCount: 5 servers need 5 Elastic IPs in eu-central-1; the quota is 5 and 2"
                       r" are taken by other stacks.*--desired-value 7"):  # fmt: skip
        _preflight_run(answers, {"serverCount": 5})
    assert _preflight_run(answers).of_type("aws:ec2/eip:Eip"), "3 servers, 2 taken, 1 of them ours: 4 of 5"


def test_an_unreadable_quota_is_warned_about_not_fatal():
    # As the engine reports a provider's refusal: the invoke's failures (the SDK raises "invoke of ... failed").
    denied = ({}, [("", "AccessDeniedException: not authorized to GetServiceQuota")])
    monitor = _preflight_run({"aws:servicequotas/getServiceQuota:getServiceQuota": denied})
    assert len(monitor.of_type("aws:ec2/eip:Eip")) == 3


def test_subnets_get_distinct_zones_that_need_no_opt_in():
    monitor = run_program(STACK, preview=True)
    (call,) = [c for c in monitor.mocks.calls if c.token == "aws:index/getAvailabilityZones:getAvailabilityZones"]
    assert call.args["state"] == "available"
    assert call.args["filters"] == [{"name": "opt-in-status", "values": ["opt-in-not-required"]}]
    zones = {r.name: r.inputs["availabilityZone"] for r in monitor.of_type("aws:ec2/subnet:Subnet")}
    assert zones == {f"{NAME}-subnet-{i}": f"eu-central-1{z}" for i, z in enumerate("abc")}


def test_a_region_with_fewer_zones_than_subnets_stops_before_any_resource():
    two = {"id": "r", "names": ["eu-central-1a", "eu-central-1b"], "zoneIds": ["euc1-az2", "euc1-az3"]}
    with pytest.raises(Exception, match=r"subnetCidrs: 3 subnets need 3 availability zones, and eu-central-1 offers 2"):
        _preflight_run({"aws:index/getAvailabilityZones:getAvailabilityZones": two})


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
