"""The security groups of the servers, the clients and the two load balancers, and every rule of
theirs, one rule resource each.

Nothing from the internet is admitted but 80/443 to the ingress load balancer, and SSH and the APIs
from apiAllowedCidrs, whose number settings caps so that the servers' group stays within AWS's rule
limit (components/config/reading.py). The policy pack checks the first from the outside
(policy/resource_policies.py, no-internet-ingress-but-web).
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from components.config.settings import Settings
from components.platforms.aws.ports import (
    API_PORTS,
    CONSUL_RPC_PORT,
    CONSUL_SERF_LAN_PORT,
    DYNAMIC_PORTS,
    INGRESS_PORTS,
    NOMAD_HTTP_PORT,
    NOMAD_RPC_PORT,
    NOMAD_SERF_PORT,
    SSH_PORT,
    VAULT_API_PORT,
    VAULT_CLUSTER_PORT,
)
from components.platforms.aws.tags import stack_tags

WORLD_IPV4 = "0.0.0.0/0"

# Security group key -> its description.
SECURITY_GROUPS = {
    "servers": "hashistack servers: Consul, Nomad and Vault",
    "clients": "hashistack clients: Nomad workloads",
    "api-lb": "hashistack API load balancer",
    "ingress-lb": "hashistack ingress load balancer",
}


def security_groups(
    name: str, settings: Settings, vpc_id: pulumi.Input[str], opts: pulumi.ResourceOptions
) -> dict[str, aws.ec2.SecurityGroup]:
    """The four security groups by key (servers, clients, api-lb, ingress-lb), with their rules."""
    sg = {
        key: aws.ec2.SecurityGroup(
            f"{name}-{key}", vpc_id=vpc_id, description=text, tags=stack_tags(settings, key), opts=opts
        )
        for key, text in SECURITY_GROUPS.items()
    }
    _rules(name, settings, sg, opts)
    return sg


def _rules(name: str, settings: Settings, sg: dict[str, aws.ec2.SecurityGroup], opts: pulumi.ResourceOptions) -> None:
    """Every port a security group admits, one rule resource each, so a change touches one rule."""
    allowed = list(settings.aws.api_allowed_cidrs)
    # (group, protocol, first port, last port, source: a group key or a CIDR)
    rules: list[tuple[str, str, int, int, object]] = []

    def allow(group: str, protocols: tuple[str, ...], ports: tuple[int, int], sources: list) -> None:
        rules.extend((group, protocol, *ports, source) for protocol in protocols for source in sources)

    nodes = ["servers", "clients"]
    for port, protocols, group, sources in (
        (CONSUL_SERF_LAN_PORT, ("tcp", "udp"), "servers", nodes),
        (CONSUL_SERF_LAN_PORT, ("tcp", "udp"), "clients", nodes),
        (CONSUL_RPC_PORT, ("tcp",), "servers", nodes),
        (NOMAD_RPC_PORT, ("tcp",), "servers", nodes),
        (NOMAD_SERF_PORT, ("tcp", "udp"), "servers", ["servers"]),
        (VAULT_API_PORT, ("tcp",), "servers", nodes),
        (VAULT_CLUSTER_PORT, ("tcp",), "servers", ["servers"]),
        # Servers reach clients for log streaming and `nomad alloc exec`; Prometheus, a job on a
        # client, scrapes every Nomad agent's /v1/metrics (jobs/prometheus.nomad.hcl), and a
        # migrating allocation's data moves from client to client over the same API.
        (NOMAD_HTTP_PORT, ("tcp",), "clients", ["servers", "clients"]),
        (NOMAD_HTTP_PORT, ("tcp",), "servers", ["clients"]),
        (SSH_PORT, ("tcp",), "servers", allowed),
        (SSH_PORT, ("tcp",), "clients", allowed),
    ):
        allow(group, protocols, (port, port), sources)
    for port in API_PORTS:
        # The load balancer for everyone allowed; the allowed ranges directly too, because the
        # operator's CLI and the program's health checks address each server's Elastic IP.
        allow("servers", ("tcp",), (port, port), ["api-lb", *allowed])
        allow("api-lb", ("tcp",), (port, port), allowed)
    allow("clients", ("tcp", "udp"), DYNAMIC_PORTS, ["clients"])
    for port in INGRESS_PORTS:
        allow("clients", ("tcp",), (port, port), ["ingress-lb"])
        # WARNING: the only rules open to the whole internet, by design: the ingress serves the jobs.
        # IPv4 only: the load balancer has no IPv6 address (ip_address_type "ipv4"), so an ::/0 rule
        # would admit nothing.
        allow("ingress-lb", ("tcp",), (port, port), [WORLD_IPV4])

    for group, protocol, first, last, source in rules:
        ports = str(first) if first == last else f"{first}-{last}"
        if isinstance(source, str) and source in sg:
            label, peer = source, {"referenced_security_group_id": sg[source].id}
        else:
            cidr = str(source)
            label = "world" if cidr == WORLD_IPV4 else f"allowed{allowed.index(source)}"
            label += "-v6" if ":" in cidr else ""
            peer = {"cidr_ipv6": cidr} if ":" in cidr else {"cidr_ipv4": cidr}
        rule = f"{group}-{protocol}-{ports}-from-{label}"
        aws.vpc.SecurityGroupIngressRule(
            f"{name}-{rule}",
            security_group_id=sg[group].id,
            ip_protocol=protocol,
            from_port=first,
            to_port=last,
            description=f"{protocol}/{ports} from {label}",
            tags=stack_tags(settings, rule),
            opts=opts,
            **peer,
        )

    # Nodes install packages and call AWS APIs (SSM, EC2, KMS) over the internet.
    for group in nodes:
        aws.vpc.SecurityGroupEgressRule(
            f"{name}-{group}-egress",
            security_group_id=sg[group].id,
            ip_protocol="-1",
            cidr_ipv4=WORLD_IPV4,
            description="all outbound",
            tags=stack_tags(settings, f"{group}-egress"),
            opts=opts,
        )
    # The load balancers talk to their targets on the listener ports, nothing else.
    for group, target, ports in (("api-lb", "servers", API_PORTS), ("ingress-lb", "clients", INGRESS_PORTS)):
        for port in ports:
            aws.vpc.SecurityGroupEgressRule(
                f"{name}-{group}-tcp-{port}-to-{target}",
                security_group_id=sg[group].id,
                ip_protocol="tcp",
                from_port=port,
                to_port=port,
                referenced_security_group_id=sg[target].id,
                description=f"tcp/{port} to {target}",
                tags=stack_tags(settings, f"{group}-tcp-{port}-to-{target}"),
                opts=opts,
            )
