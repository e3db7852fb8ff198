"""The two network load balancers: the API's (Nomad, Consul and Vault on the servers' fixed private
addresses) and the ingress's (80/443 on the clients of the autoscaling group).

Each forwards TCP, so TLS stays end to end; what a target must answer to get traffic is in
HEALTH_CHECKS. AwsNetwork creates the API's, which every server certificate names; AwsNodes the
ingress's, whose target groups the client group joins.
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from components.config.settings import Settings
from components.platforms.aws.ports import API_PORTS, INGRESS_PORTS, NOMAD_HTTP_PORT, VAULT_API_PORT
from components.platforms.aws.tags import stack_tags
from components.platforms.shape import ServerAddress

# ELB names are at most 32 characters and Pulumi's auto-name appends 8 ("-" and 7 random characters).
_ELB_NAME_MAX = 32 - 8
# Connections to a deregistered target get this long to finish; a drained client keeps serving
# until Nomad stops its allocations, so a short delay loses nothing (AWS default: 300 s).
DEREGISTRATION_DELAY_SECONDS = 30


def _elb_name(name: str) -> str:
    if len(name) > _ELB_NAME_MAX:
        raise ValueError(
            f"load balancer or target group name {name!r} has {len(name)} characters; AWS allows "
            f"{_ELB_NAME_MAX} before Pulumi's random suffix: give the component a shorter name"
        )
    return name


# What the API load balancer asks each server before sending it traffic: the agent serving, not merely
# its port open. Both answer without a token or a client certificate; anything but 200 is unhealthy.
HEALTH_CHECKS = {
    # 200 once the server knows a leader, 500 otherwise (hashicorp/nomad v2.0.5
    # command/agent/agent_endpoint.go HealthRequest; no ACL; verify_https_client = false).
    NOMAD_HTTP_PORT: "/v1/agent/health?type=server",
    # 200 active or (standbyok) standby; 501 uninitialised, 503 sealed, 429 never asked for
    # (hashicorp/vault http/sys_health.go getSysHealth).
    VAULT_API_PORT: "/v1/sys/health?standbyok=true",
    # Consul: TCP only. Its servers' HTTPS API requires a client certificate (verify_incoming), which
    # a load balancer's health check cannot present.
}


def _health_check(port: int) -> aws.lb.TargetGroupHealthCheckArgs:
    path = HEALTH_CHECKS.get(port)
    if path is None:
        return aws.lb.TargetGroupHealthCheckArgs(protocol="TCP", port="traffic-port")
    return aws.lb.TargetGroupHealthCheckArgs(protocol="HTTPS", port="traffic-port", path=path, matcher="200")


def _tcp_forward(
    prefix: str,
    settings: Settings,
    balancer: aws.lb.LoadBalancer,
    port: int,
    target_type: str,
    vpc_id: pulumi.Input[str],
    opts: pulumi.ResourceOptions,
) -> aws.lb.TargetGroup:
    """A TCP listener on `port` forwarding to a new target group on the same port (TLS stays end to end)."""
    what = f"{prefix.rsplit('-', 1)[-1]}-{port}"
    target_group = aws.lb.TargetGroup(
        _elb_name(f"{prefix}-{port}"),
        port=port,
        protocol="TCP",
        target_type=target_type,
        vpc_id=vpc_id,
        health_check=_health_check(port),
        deregistration_delay=DEREGISTRATION_DELAY_SECONDS,
        connection_termination=True,
        tags=stack_tags(settings, what),
        opts=opts,
    )
    aws.lb.Listener(
        f"{prefix}-{port}",
        load_balancer_arn=balancer.arn,
        port=port,
        protocol="TCP",
        default_actions=[aws.lb.ListenerDefaultActionArgs(type="forward", target_group_arn=target_group.arn)],
        tags=stack_tags(settings, what),
        opts=opts,
    )
    return target_group


def _network_load_balancer(
    name: str,
    settings: Settings,
    what: str,
    subnet_ids: list[pulumi.Output[str]],
    security_group_id: pulumi.Input[str],
    opts: pulumi.ResourceOptions,
) -> aws.lb.LoadBalancer:
    """An internet-facing network load balancer in every subnet, balancing across the zones."""
    return aws.lb.LoadBalancer(
        _elb_name(f"{name}-{what}"),
        load_balancer_type="network",
        internal=False,
        subnets=subnet_ids,
        security_groups=[security_group_id],
        enable_cross_zone_load_balancing=True,
        tags=stack_tags(settings, what),
        opts=opts,
    )


def api_load_balancer(
    name: str,
    settings: Settings,
    subnet_ids: list[pulumi.Output[str]],
    security_group_id: pulumi.Input[str],
    vpc_id: pulumi.Input[str],
    servers: list[ServerAddress],
    opts: pulumi.ResourceOptions,
) -> aws.lb.LoadBalancer:
    """The API load balancer: Nomad 4646, Consul 8501 and Vault 8200 on every server."""
    api = _network_load_balancer(name, settings, "api", subnet_ids, security_group_id, opts)
    for port in API_PORTS:
        # "ip" targets: the servers' fixed private addresses, known before any instance exists.
        target_group = _tcp_forward(f"{name}-api", settings, api, port, "ip", vpc_id, opts)
        for server in servers:
            aws.lb.TargetGroupAttachment(
                f"{name}-api-{port}-{server.name}",
                target_group_arn=target_group.arn,
                target_id=server.private_ip,
                port=port,
                opts=opts,
            )
    return api


def ingress_load_balancer(
    name: str,
    settings: Settings,
    subnet_ids: list[pulumi.Output[str]],
    security_group_id: pulumi.Input[str],
    vpc_id: pulumi.Input[str],
    opts: pulumi.ResourceOptions,
) -> tuple[aws.lb.LoadBalancer, list[aws.lb.TargetGroup]]:
    """The ingress load balancer (80/443) and its target groups, which the client group joins."""
    ingress_targets = []
    # No Elastic IPs: an account has 5 per region by default and the servers need theirs
    # (ELASTIC_IP_QUOTA_CODE in preflight.py). AWS gives a network load balancer one static
    # address per zone anyway; reach it by its DNS name (ingressEndpoint).
    ingress = _network_load_balancer(name, settings, "ingress", subnet_ids, security_group_id, opts)
    for port in INGRESS_PORTS:
        target_group = _tcp_forward(f"{name}-ingress", settings, ingress, port, "instance", vpc_id, opts)
        ingress_targets.append(target_group)
    return ingress, ingress_targets
