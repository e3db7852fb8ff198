"""The API and ingress load balancers (components/platforms/aws/load_balancers.py) under mocks: their
targets, their health checks and their names."""

from __future__ import annotations

import pytest
from aws_program import GROUP, NAME, preview

from components.platforms.aws import load_balancers

from conftest import unwrap


@pytest.fixture(scope="module")
def monitor():
    return preview()


def test_the_api_load_balancer_asks_nomad_and_vault_whether_they_serve(monitor):
    """A TCP check passes for a sealed or uninitialised Vault and a Nomad without a leader; the HTTPS
    ones do not: Vault's /v1/sys/health answers 501 uninitialised, 503 sealed, 200 active or (with
    standbyok) standby (hashicorp/vault http/sys_health.go getSysHealth); Nomad's agent health answers
    500 without a leader (hashicorp/nomad v2.0.5 command/agent/agent_endpoint.go HealthRequest).
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


def test_load_balancer_names_too_long_for_aws_are_refused():
    with pytest.raises(ValueError, match="24 before Pulumi's random suffix"):
        load_balancers._elb_name("a-component-name-too-long")
