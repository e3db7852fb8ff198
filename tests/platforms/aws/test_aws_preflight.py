"""The checks before anything is created (components/platforms/aws/preflight.py): availability zones and
the Elastic IP quota, with the mocks answering as another account or region would."""

from __future__ import annotations

import pytest
from aws_program import NAME, STACK

from conftest import ClusterMocks, RecordingMonitor, run_program


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
