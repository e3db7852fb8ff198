"""ClientNode: a libvirt client is ready before the next is touched and drained before its machine
goes, against a Nomad that answers as tests/upstream.py says (hashicorp/nomad v1.10.3)."""

from __future__ import annotations

import threading

import pytest
import upstream
from fake_https import FakeApi, Seen, operator_tls
from pulumi.output import Unknown

from components.rollout import client_node
from components.rollout.client_node import DRAIN_DEADLINE_SECONDS, ClientNotReadyError, _ClientNodeProvider

TOKEN = "11111111-2222-4333-8444-555555555555"


class FakeNomad:
    """A Nomad server's node endpoints: a node list, each node, its drain."""

    def __init__(self, api: FakeApi):
        self.api, self.nodes, self.drain_polls = api, {}, 2
        api.contract_only = True
        api.on("GET", "/v1/nodes", self._list)
        self.accepts_token = True

    def register(self, node_id: str, name: str, status: str = "ready", eligibility: str = "eligible") -> None:
        self.nodes[node_id] = {"ID": node_id, "Name": name, "Status": status, "SchedulingEligibility": eligibility,
                               "Drain": False, "DrainStrategy": None}  # fmt: skip
        self.api.on("GET", f"/v1/node/{node_id}", lambda _seen, i=node_id: self._node(i))
        self.api.on("PUT", f"/v1/node/{node_id}/drain", lambda seen, i=node_id: self._drain(i, seen))

    def _list(self, seen: Seen):
        if seen.headers.get("X-Nomad-Token") != TOKEN or not self.accepts_token:
            return upstream.nomad_permission_denied()
        return upstream.nomad_nodes([{k: v for k, v in n.items() if k != "DrainStrategy"} for n in self.nodes.values()])

    def _node(self, node_id: str):
        node = self.nodes[node_id]
        if node["DrainStrategy"] is not None:
            self.drain_polls -= 1
            if self.drain_polls <= 0:  # the allocations have moved: the drainer clears the strategy
                node.update(Drain=False, DrainStrategy=None)
        return upstream.nomad_node(node)

    def _drain(self, node_id: str, seen: Seen):
        spec = seen.body["DrainSpec"]
        self.nodes[node_id].update(Drain=True, SchedulingEligibility="ineligible", DrainStrategy={"DrainSpec": spec})
        return upstream.nomad_drain_updated(["eval-1"])


@pytest.fixture
def nomad(fake_api, monkeypatch):
    api = fake_api(client_cert=False)  # nomad.hcl: verify_https_client = false
    monkeypatch.setattr(client_node, "NOMAD_HTTPS_PORT", api.port)
    return FakeNomad(api)


def props(pki, machine: str = "domain-1") -> dict:
    return {"node_name": "client-0", "machine_id": machine, "addresses": ["127.0.0.9", "127.0.0.1"],
            "ca_pem": operator_tls(pki).ca_pem, "nomad_token": TOKEN}  # fmt: skip


def test_a_client_counts_once_its_nomad_node_is_ready(pki, nomad):
    """Until the ACL bootstrap the preset token is unknown (403); then the node registers
    ("initializing"), then it is ready (nomad/structs/structs.go Node.Ready: ready, eligible, no drain)."""
    nomad.accepts_token = False
    provider = _ClientNodeProvider(timeout=5, interval=0.01)

    def boot() -> None:
        nomad.accepts_token = True
        nomad.register("old-node", "client-0", status="down")  # an earlier machine of the same name
        nomad.register("new-node", "client-0", status="initializing")
        threading.Timer(0.1, lambda: nomad.nodes["new-node"].update(Status="ready")).start()

    threading.Timer(0.1, boot).start()
    created = provider.create(props(pki))
    assert created.id == "client-0" and created.outs["status"] == "client-0: Nomad node new-node is ready"
    assert nomad.api.seen("GET", "/v1/nodes")[0].headers["X-Nomad-Token"] == TOKEN


def test_a_client_that_never_gets_ready_stops_the_up_with_where_to_look(pki, nomad):
    nomad.register("n1", "client-0", eligibility="ineligible")
    nomad.register("n2", "client-0")
    nomad.nodes["n2"]["Drain"] = True  # ready and eligible, but draining: Node.Ready says no
    with pytest.raises(ClientNotReadyError) as failed:
        _ClientNodeProvider(timeout=0.2, interval=0.01).create(props(pki))
    assert "client-0: no ready Nomad node yet (n1 ready/ineligible, n2 ready/eligible)" in str(failed.value)
    assert str(failed.value).endswith("fix the cause and run `pulumi up` again.")
    nomad.nodes.clear()
    attempt = client_node.node_ready(client_node.nomad_api("127.0.0.1", props(pki)["ca_pem"], TOKEN), "client-0")
    assert attempt() == (False, "client-0: no ready Nomad node yet (not registered)")


def test_a_replaced_client_is_drained_first(pki, nomad):
    """PUT /v1/node/<id>/drain with a deadline in nanoseconds (api/nodes.go DrainSpec, time.Duration),
    system jobs included, not marked eligible again; then it waits until DrainStrategy is null."""
    nomad.register("old-node", "client-0", status="down")
    nomad.register("live-node", "client-0")
    nomad.register("other", "client-1")
    _ClientNodeProvider(interval=0.01).delete("client-0", props(pki))
    (request,) = nomad.api.seen("PUT", "/v1/node/live-node/drain")
    assert request.body == {
        "DrainSpec": {"Deadline": DRAIN_DEADLINE_SECONDS * 1_000_000_000, "IgnoreSystemJobs": False},
        "MarkEligible": False,
    }
    assert not nomad.api.seen("PUT", "/v1/node/old-node/drain") and not nomad.api.seen("PUT", "/v1/node/other/drain")
    assert nomad.nodes["live-node"]["DrainStrategy"] is None and len(nomad.api.seen("GET", "/v1/node/live-node")) == 2


def test_drain_reports_what_it_could_not_do_and_never_keeps_the_machine(pki, nomad, monkeypatch):
    logs: list[str] = []
    api = client_node.nomad_api("127.0.0.1", props(pki)["ca_pem"], TOKEN)
    assert client_node.drain(api, "client-0", None, logs.append) == "client-0: no live Nomad node to drain"
    nomad.accepts_token = False
    assert client_node.drain(api, "client-0", None, logs.append) == (
        f"client-0: not drained, GET /v1/nodes answers 403: {upstream.nomad_permission_denied().body}"
    )
    nomad.api.down = True
    assert "not drained, Nomad does not answer" in client_node.drain(api, "client-0", None, logs.append)
    assert logs == []
    # No server answers: the first is asked, and named in what is reported.
    reported = []
    monkeypatch.setattr(client_node.pulumi.log, "info", reported.append)
    _ClientNodeProvider(interval=0.01).delete("client-0", props(pki))
    (line,) = reported
    assert line.startswith(f"client-0: not drained, Nomad does not answer (https://127.0.0.9:{nomad.api.port}: ")


def test_diff_replaces_for_a_new_machine_only(pki):
    provider, old = _ClientNodeProvider(), props(pki)
    assert not provider.diff("client-0", old, {**old, "nomad_token": "rotated"}).changes
    new = provider.diff("client-0", old, {**old, "machine_id": "domain-2"})
    assert new.changes is True and new.replaces == ["machine_id"] and new.delete_before_replace, "drain, then wait"
    assert provider.diff("client-0", old, {**old, "node_name": "client-9"}).replaces == ["node_name"]
    unknown = provider.diff("client-0", old, {**old, "machine_id": Unknown()})
    assert unknown.replaces == ["machine_id"], (
        "in a preview, and in the engine's walk of a replaced domain's dependents"
    )
