"""ClientFleet: `pulumi up` waits for the AWS client group's instance refresh, against a Nomad whose
node list answers as tests/upstream.py says (hashicorp/nomad v2.0.5 NodeListStub)."""

from __future__ import annotations

import pytest
import upstream
from fake_https import FakeApi, Seen, operator_tls

from components.dynamic.http_api import Poller
from components.rollout import client_node
from components.rollout.client_fleet import RefreshNotDoneError, _ClientFleetProvider, _registered_up_to

TOKEN = "11111111-2222-4333-8444-555555555555"
OLD, NEW = "2.0.5", upstream.PINNED["nomad"]


class FakeNodes:
    """Nomad's node list as a refresh moves through it: nodes register, get ready, go down."""

    def __init__(self, api: FakeApi):
        self.nodes: list[dict] = []
        self.index = 100
        self.steps: list = []
        self.denied = 0
        """Lists refused before the token is known (Nomad's ACLs not bootstrapped yet)."""
        api.contract_only = True
        api.on("GET", "/v1/nodes", self._list)

    def add(self, version: str, status: str = "ready") -> dict:
        self.index += 1
        node = {"ID": f"node-{self.index}", "Name": f"ip-10-0-0-{self.index}", "Status": status,
                "SchedulingEligibility": "eligible", "Drain": False, "Version": version, "CreateIndex": self.index}  # fmt: skip
        self.nodes.append(node)
        return node

    def _list(self, seen: Seen):
        if seen.headers.get("X-Nomad-Token") != TOKEN or self.denied:
            self.denied = max(0, self.denied - 1)
            return upstream.nomad_permission_denied()
        if self.steps:  # the refresh moves on between two polls
            self.steps.pop(0)()
        return upstream.nomad_nodes(list(self.nodes))


@pytest.fixture
def nodes(fake_api, monkeypatch) -> FakeNodes:
    api = fake_api(client_cert=False)
    monkeypatch.setattr(client_node, "NOMAD_HTTPS_PORT", api.port)
    return FakeNodes(api)


def props(pki, **changes) -> dict:
    return {"group_name": "hashistack-aws-clients", "region": "eu-west-1", "template_version": "1", "count": 2,
            "nomad_version": NEW, "addresses": ["127.0.0.9", "127.0.0.1"], "ca_pem": operator_tls(pki).ca_pem,
            "nomad_token": TOKEN, **changes}  # fmt: skip


def provider() -> _ClientFleetProvider:
    return _ClientFleetProvider(per_client=0.5, interval=0.01)


def test_the_up_waits_until_the_refresh_has_replaced_every_client(pki, nodes):
    old = [nodes.add(OLD), nodes.add(OLD)]

    def launch():
        nodes.add(NEW, status="initializing")

    def ready_and_retire_one():
        nodes.nodes[-1]["Status"] = "ready"
        old[0]["Status"] = "down"

    def second():
        nodes.add(NEW)
        old[1]["Status"] = "down"

    nodes.steps = [lambda: None, launch, ready_and_retire_one, second]
    outs = provider().update("g", props(pki), props(pki, template_version="2")).outs
    assert outs["status"] == "2 of 2 new clients in service, 0 old ones still ready"
    assert nodes.steps == []  # it waited for the last step


def test_a_refresh_that_stalls_fails_naming_the_group_and_the_command(pki, nodes):
    nodes.add(OLD)
    nodes.add(OLD)
    nodes.steps = [lambda: None, lambda: nodes.add(NEW)]
    with pytest.raises(RefreshNotDoneError) as stalled:
        provider().update("g", props(pki), props(pki, template_version="2"))
    message = str(stalled.value)
    assert "1 of 2 new clients in service, 2 old ones still ready" in message
    assert (
        "aws autoscaling describe-instance-refreshes --auto-scaling-group-name hashistack-aws-clients "
        "--region eu-west-1" in message
    )
    assert "start-instance-refresh" in message


def test_a_client_on_another_nomad_version_does_not_count_as_done(pki, nodes):
    nodes.add(NEW)
    nodes.add(OLD)  # registered after the update began, but not what this `up` installs
    with pytest.raises(RefreshNotDoneError, match=f"ready clients on Nomad {OLD} \\(not {NEW}\\)"):
        provider().create(props(pki))


def test_the_first_up_waits_for_its_clients_through_the_acl_bootstrap(pki, nodes):
    """Before the bootstrap has made the preset token Nomad's management token, the list is refused."""
    nodes.denied = 2
    nodes.steps = [lambda: nodes.add(NEW), lambda: nodes.add(NEW)]
    outs = provider().create(props(pki)).outs
    assert outs["status"].startswith("2 of 2 new clients in service")
    assert nodes.denied == 0 and nodes.steps == []


def test_a_larger_count_counts_the_clients_that_stay(pki, nodes):
    nodes.add(NEW)
    nodes.add(NEW)
    nodes.steps = [lambda: None, lambda: nodes.add(NEW)]
    outs = provider().update("g", props(pki), props(pki, count=3)).outs
    assert outs["status"].startswith("3 of 3 new clients in service")


def test_only_what_rolls_the_group_waits_again(pki):
    olds = props(pki)
    assert not provider().diff("g", olds, {**olds, "nomad_token": "rotated", "addresses": ["10.0.0.1"]}).changes
    for key, value in (("template_version", "2"), ("count", 3), ("nomad_version", "9.9.9")):
        assert provider().diff("g", olds, {**olds, key: value}).changes, key


def test_a_refresh_counts_from_the_clients_listed_when_it_began(pki, nodes):
    """The list is refused at first (a server still settling after the roll): counting from index 0
    would take the two old clients, on the same version, for the refresh's."""
    old = [nodes.add(NEW), nodes.add(NEW)]

    def replace(node):
        nodes.add(NEW)
        node["Status"] = "down"

    nodes.denied = 1
    nodes.steps = [lambda: None, lambda: replace(old[0]), lambda: replace(old[1])]
    outs = provider().update("g", props(pki), props(pki, template_version="2")).outs
    assert outs["status"] == "2 of 2 new clients in service, 0 old ones still ready"
    assert nodes.steps == []  # it waited for both replacements


def test_the_clients_listed_before_the_refresh_are_read_from_the_newest_index(pki, nodes):
    apis = [client_node.nomad_api(a, operator_tls(pki).ca_pem, TOKEN) for a in ("127.0.0.9", "127.0.0.1")]
    nodes.add(NEW)["CreateIndex"] = 7
    nodes.add(NEW)["CreateIndex"] = "unreadable"
    nodes.add(NEW)["CreateIndex"] = 5
    assert _registered_up_to(apis, Poller(1, 0.01)) == 7
    nodes.nodes.clear()
    assert _registered_up_to(apis, Poller(1, 0.01)) == 0


@pytest.mark.parametrize(
    "unfit", [{"Drain": True}, {"SchedulingEligibility": "ineligible"}], ids=["draining", "ineligible"]
)
def test_a_new_client_that_takes_no_work_does_not_count(pki, nodes, unfit):
    nodes.add(NEW)
    nodes.add(NEW).update(unfit)
    with pytest.raises(RefreshNotDoneError, match="1 of 2 new clients in service"):
        provider().create(props(pki))


def test_a_renamed_group_counts_its_clients_from_now(pki, nodes):
    old = [nodes.add(NEW), nodes.add(NEW)]
    nodes.steps = [lambda: None, lambda: [nodes.add(NEW), nodes.add(NEW), *(n.update(Status="down") for n in old)]]
    provider().update("g", props(pki), props(pki, group_name="hashistack-aws-clients-2"))
    assert nodes.steps == []  # the two clients there before did not count
