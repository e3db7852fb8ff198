"""The security groups and their rules (components/platforms/aws/firewall.py) under mocks: who may reach which port."""

from __future__ import annotations

import pytest
from aws_program import EGRESS_RULE, INGRESS_RULE, STACK, WORLD, preview, run_aws, short

from components.config.reading import MAX_API_ALLOWED_CIDRS, SECURITY_GROUP_RULES
from scripts.stack_files import stack_settings

from conftest import unwrap


@pytest.fixture(scope="module")
def monitor():
    return preview()


def _rules(monitor, typ: str = INGRESS_RULE) -> list[tuple[str, str, str, int | None, int | None, str]]:
    """(urn, group, protocol, from, to, source) with groups named by their key (servers, api-lb, ...)."""
    groups = {r.id: short(r) for r in monitor.of_type("aws:ec2/securityGroup:SecurityGroup")}
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
    monitor = run_aws({"apiAllowedCidrs": ranges})
    servers = [r for r in _rules(monitor) if r[1] == "servers"]
    assert len(servers) == 17 + 4 * MAX_API_ALLOWED_CIDRS <= SECURITY_GROUP_RULES
    with pytest.raises(Exception, match=rf"may hold at most {MAX_API_ALLOWED_CIDRS} IPv4 ranges"):
        run_aws({"apiAllowedCidrs": [*ranges, "198.51.100.0/24"]})


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
    monitor = run_aws({"apiAllowedCidrs": ["198.51.100.0/24", "2001:db8::/32"]})
    rules = _rules(monitor)
    _assert_sources(rules, "servers", 22, {"198.51.100.0/24", "2001:db8::/32"})
    _assert_sources(rules, "api-lb", 8200, {"198.51.100.0/24", "2001:db8::/32"})
    for rule in monitor.of_type(INGRESS_RULE):
        assert ":" not in (unwrap(rule.inputs).get("cidrIpv4") or ""), rule.urn


def test_no_node_answers_dns_to_the_network(monitor):
    """A client's resolved listens on the node's address too (DNSStubListenerExtra, for containers),
    and servers answer Consul DNS on theirs: no security group admits port 53 or 8600 from anywhere."""
    rules = _rules(monitor)
    for group in ("servers", "clients"):
        for port in (53, 8600):
            for protocol in ("tcp", "udp"):
                _assert_sources(rules, group, port, set(), protocol)
