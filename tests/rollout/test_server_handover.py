"""The handover before a server's machine goes, and the chain's end, against a fake cluster that
answers as the pinned Consul, Nomad and Vault do (tests/fake_cluster.py, sources in tests/upstream.py):
the rest of the cluster must be able to lose the server, and its leadership moves elsewhere first."""

from __future__ import annotations

import pytest
import upstream
from fake_cluster import CONSUL_TOKEN, NOMAD_TOKEN, VAULT_ROOT, FakeCluster
from fake_https import operator_tls

from components.rollout import server_handover, server_health, vault_standby
from components.rollout.server_handover import HandoverRefusedError, _ServerHandoverProvider, downgrade_failures
from components.rollout.vault_standby import _VaultStandbyFirstProvider

PINNED = {product: upstream.PINNED[product] for product in ("consul", "nomad", "vault")}


@pytest.fixture
def cluster(fake_api) -> FakeCluster:
    return FakeCluster(fake_api)


@pytest.fixture
def built(pki, cluster) -> FakeCluster:
    """An earlier run's cluster: server-0 leads Consul and Nomad and is Vault's active node."""
    cluster.build(pki)
    return cluster


@pytest.fixture
def provider(monkeypatch, cluster) -> _ServerHandoverProvider:
    on_ports = server_health.server_apis

    monkeypatch.setattr(server_health, "server_apis", lambda *args: on_ports(*args, ports=cluster.ports))
    return _ServerHandoverProvider(timeout=0.3, interval=0.02)


def props(pki, cluster: FakeCluster, name: str, *, prefer: str = "", vault_token: str = VAULT_ROOT, **changes):
    tls = operator_tls(pki)
    return {
        "node_name": name,
        "address": cluster.address(name),
        "peers": {n: cluster.address(n) for n in cluster.names if n != name},
        "prefer": prefer,
        "machine_spec": "spec-1",
        "versions": dict(PINNED),
        "ca_pem": tls.ca_pem,
        "client_cert_pem": tls.client_cert_pem,
        "client_key_pem": tls.client_key_pem,
        "consul_token": CONSUL_TOKEN,
        "nomad_token": NOMAD_TOKEN,
        "vault_token": vault_token,
        **changes,
    }


def roll(provider, pki, cluster: FakeCluster, name: str, **kwargs) -> str:
    """The handover's update, as the engine runs it when the server's machine is about to be replaced."""
    olds = props(pki, cluster, name, **kwargs)
    news = {**olds, "machine_spec": "spec-2"}
    return provider.update(name, olds, news).outs["status"]


def transfers(cluster: FakeCluster, product: str, method: str, path: str) -> list[dict[str, str]]:
    return [seen.query for name in cluster.names for seen in cluster.apis[name][product].seen(method, path)]


def test_the_leader_hands_consul_and_nomad_over_and_vault_steps_down(pki, built, provider):
    status = roll(provider, pki, built, "server-0")
    assert (built.consul.leader, built.nomad.leader, built.vault.leader) != ("server-0",) * 3
    assert "server-0" not in (built.consul.leader, built.nomad.leader, built.vault.leader)
    assert "Consul: leadership handed to server-1" in status and "Nomad: leadership handed to server-1" in status
    assert "Vault: stepped down" in status
    # Consul registers transfer-leader for POST only; Nomad's transfer-leadership wants the id.
    consul_id, nomad_id = built.consul.raft_id("server-1"), built.nomad.raft_id("server-1")
    assert transfers(built, "consul", "POST", "/v1/operator/raft/transfer-leader") == [{"id": consul_id}]
    assert transfers(built, "nomad", "PUT", "/v1/operator/raft/transfer-leadership") == [{"id": nomad_id}]


def test_leadership_goes_to_the_server_replaced_before(pki, built, provider):
    built.consul.leader = built.nomad.leader = "server-2"
    status = roll(provider, pki, built, "server-2", prefer="server-1")
    assert built.consul.leader == built.nomad.leader == "server-1"
    assert "handed to server-1" in status
    assert "Vault: not the active node" in status  # server-0 stays active: server-2 is a standby


def test_a_follower_hands_nothing_over(pki, built, provider):
    status = roll(provider, pki, built, "server-1", prefer="server-0")
    assert "Consul: not the leader" in status and "Nomad: not the leader" in status
    assert "Vault: not the active node" in status
    assert transfers(built, "consul", "POST", "/v1/operator/raft/transfer-leader") == []
    assert transfers(built, "nomad", "PUT", "/v1/operator/raft/transfer-leadership") == []


def test_the_preferred_server_is_passed_over_when_it_is_not_a_healthy_voter(pki, built, provider):
    built.nomad.leader = "server-2"
    built.nomad.servers["server-1"] = {"Healthy": True, "Voter": False}
    with pytest.raises(HandoverRefusedError, match="server-1: Nomad autopilot reports Healthy=True, Voter=False"):
        roll(provider, pki, built, "server-2", prefer="server-1")
    assert built.nomad.leader == "server-2"


@pytest.mark.parametrize(
    ("break_it", "named"),
    [
        (
            lambda c: c.rejoin("server-2", healthy=False, products="consul"),
            "server-2: Consul autopilot reports Healthy=False",
        ),
        (
            lambda c: c.rejoin("server-2", healthy=False, products="nomad"),
            "server-2: Nomad autopilot reports Healthy=False",
        ),
        (lambda c: c.consul.servers.pop("server-2"), "server-2: not in Consul's raft configuration"),
        (lambda c: c.vault.unsealed.discard("server-2"), r"server-2: Vault is sealed \(`make unseal`\)"),
        (lambda c: c.set_running("server-2", running=False), "server-2: Vault does not answer"),
    ],
    ids=["consul-unhealthy", "nomad-unhealthy", "consul-missing", "vault-sealed", "server-down"],
)
def test_a_server_is_not_taken_down_while_another_is_unhealthy(pki, built, provider, break_it, named):
    break_it(built)
    with pytest.raises(HandoverRefusedError, match=named) as refused:
        roll(provider, pki, built, "server-0")
    assert "server-0 was not taken down" in str(refused.value)
    assert "docs/operations.md#a-server-that-is-not-healthy-stops-the-roll" in str(refused.value)
    # Nothing moved: the leaders are where they were.
    assert (built.consul.leader, built.nomad.leader, built.vault.leader) == ("server-0",) * 3


def test_a_vault_that_has_not_joined_stops_the_roll(pki, built, provider):
    built.vault.has_data.discard("server-1")
    built.vault.unsealed.discard("server-1")
    with pytest.raises(HandoverRefusedError, match="server-1: Vault is not initialised"):
        roll(provider, pki, built, "server-2")


def test_the_first_server_without_a_vault_token_says_how_to_step_vault_down(pki, built, provider):
    with pytest.raises(HandoverRefusedError, match="vault operator step-down") as refused:
        roll(provider, pki, built, "server-0", vault_token="")
    assert f"https://{built.address('server-0')}:" in str(refused.value)
    assert built.vault.leader == "server-0"


def test_a_leader_that_does_not_move_in_time_stops_the_roll(pki, built, provider):
    built.vault.step_down_moves = False
    with pytest.raises(HandoverRefusedError, match="server-0 Vault step-down: gave up after 0 s: still active"):
        roll(provider, pki, built, "server-0")


@pytest.mark.parametrize(
    ("product", "setting"), [("consul", "consulVersion"), ("nomad", "nomadVersion"), ("vault", "vaultVersion")]
)
def test_a_peer_on_a_newer_version_stops_the_roll(pki, built, provider, product, setting):
    newer = "99.0.0"
    versions = built.vault.versions if product == "vault" else getattr(built, product).versions
    versions["server-2"] = newer
    with pytest.raises(
        HandoverRefusedError, match=f"{setting}: {PINNED[product]} is older than {newer}, which server-2 runs"
    ):
        roll(provider, pki, built, "server-0")


def test_an_older_version_is_refused_in_every_preview():
    olds = {"versions": {"consul": "2.0.4", "nomad": "2.0.7", "vault": "2.1.1"}}
    older = {"versions": {"consul": "2.0.4", "nomad": "2.0.5", "vault": "2.1.1"}}
    (failure,) = downgrade_failures(olds, older)
    assert failure.property == "versions"
    assert failure.reason.startswith("nomadVersion: 2.0.5 is older than 2.0.7")
    assert "set nomadVersion to 2.0.7 or newer" in failure.reason
    assert downgrade_failures(olds, {"versions": {"consul": "2.0.5", "nomad": "2.0.7", "vault": "2.2.0"}}) == []
    assert downgrade_failures({}, older) == []  # a new handover has no history
    check = _ServerHandoverProvider().check(olds, older)
    assert [f.property for f in check.failures] == ["versions"]


def test_creation_passes_with_no_cluster_and_checks_one_that_answers(pki, cluster, provider):
    created = provider.create(props(pki, cluster, "server-0"))
    assert created.id == "server-0"
    assert created.outs["status"] == "server-0: no cluster answers yet, nothing to hand over"
    cluster.build(pki)
    cluster.rejoin("server-2", healthy=False)
    with pytest.raises(HandoverRefusedError, match="server-2: Consul autopilot reports Healthy=False"):
        provider.create(props(pki, cluster, "server-0"))


def test_the_cluster_as_it_stood_counts_and_the_server_itself_does_not(pki, built, provider):
    """A 3 -> 2 change keeps the leaving server-2 among the peers that must be healthy; the server
    itself is never its own peer."""
    olds = props(pki, built, "server-1")
    news = {**olds, "machine_spec": "spec-2", "peers": {"server-0": built.address("server-0")}}
    built.rejoin("server-2", healthy=False)
    with pytest.raises(HandoverRefusedError, match="server-2"):
        provider.update("server-1", olds, news)
    olds["peers"]["server-1"] = built.address("server-1")
    built.rejoin("server-2")
    built.rejoin("server-1", healthy=False)  # its own state does not matter: it is about to go
    assert "healthy voters" in provider.update("server-1", olds, news).outs["status"]


def test_only_a_machine_about_to_be_replaced_runs_the_handover(pki, cluster):
    provider = _ServerHandoverProvider()
    olds = props(pki, cluster, "server-0")
    assert not provider.diff("server-0", olds, {**olds, "consul_token": "rotated", "vault_token": "new"}).changes
    for key in ("machine_spec", "address"):
        result = provider.diff("server-0", olds, {**olds, key: "changed"})
        assert result.changes and not result.replaces, key
    renamed = provider.diff("server-0", olds, {**olds, "node_name": "server-9"})
    assert renamed.replaces == ["node_name"] and renamed.delete_before_replace is False


# -- the chain's end ------------------------------------------------------------------------------------
@pytest.fixture
def end(monkeypatch, cluster) -> _VaultStandbyFirstProvider:
    on_ports = vault_standby.server_apis
    monkeypatch.setattr(vault_standby, "server_apis", lambda *args: on_ports(*args, ports=cluster.ports))
    return _VaultStandbyFirstProvider(timeout=0.3, interval=0.02)


def end_props(pki, cluster: FakeCluster, **changes) -> dict:
    return {
        "node_name": "server-0",
        "address": cluster.address("server-0"),
        "has_peers": True,
        "machines": ["m-0", "m-1", "m-2"],
        "ca_pem": operator_tls(pki).ca_pem,
        "vault_token": VAULT_ROOT,
        **changes,
    }


def test_the_chain_ends_with_vault_active_on_another_server(pki, built, end):
    created = end.create(end_props(pki, built))
    assert created.outs["status"] == "Vault: stepped down to a standby"
    assert built.vault.leader not in (None, "server-0")
    again = end.update("vault-standby-first", created.outs, end_props(pki, built, machines=["m-3", "m-1", "m-2"]))
    assert again.outs["status"] == "Vault: not the active node"


def test_a_single_server_has_nobody_to_hand_over_to(pki, built, end):
    assert end.create(end_props(pki, built, has_peers=False)).outs["status"] == "server-0: the only server"
    assert built.vault.leader == "server-0"


def test_the_end_runs_again_only_after_a_new_machine(pki, cluster):
    provider = _VaultStandbyFirstProvider()
    olds = end_props(pki, cluster)
    assert not provider.diff("x", olds, {**olds, "vault_token": "rotated"}).changes
    assert provider.diff("x", olds, {**olds, "machines": ["m-9", "m-1", "m-2"]}).changes


# -- a server leaving the plan ----------------------------------------------------------------------------
def test_scaling_5_to_3_leaves_no_dead_voter_in_any_product(pki, fake_api, monkeypatch):
    """The departing servers' machines go first (they depend on their handovers); each handover's
    delete then takes the server out of Consul's, Nomad's and Vault's raft configurations, through
    the servers that remain, so the next replacement counts three voters, not five."""
    cluster = FakeCluster(fake_api, servers=5)
    on_ports = server_health.server_apis
    monkeypatch.setattr(server_health, "server_apis", lambda *args: on_ports(*args, ports=cluster.ports))
    cluster.build(pki)
    cluster.set_running("server-3", "server-4", running=False)
    provider = _ServerHandoverProvider(timeout=0.3, interval=0.02)
    for leaving in ("server-4", "server-3"):
        provider.delete(leaving, props(pki, cluster, leaving))
    remaining = ["server-0", "server-1", "server-2"]
    assert sorted(cluster.consul.servers) == sorted(cluster.nomad.servers) == remaining
    assert sorted(cluster.vault.members) == remaining
    # The remaining handovers recorded the new plan of peers in the same `up`, without a check ...
    olds = props(pki, cluster, "server-1")
    news = {**olds, "peers": {n: cluster.address(n) for n in ("server-0", "server-2")}}
    assert provider.diff("server-1", olds, news).changes
    recorded = provider.update("server-1", olds, news).outs
    assert recorded["status"] == "server-1: peers recorded" and recorded["peers"] == news["peers"]
    # ... so the next roll's handover counts the three that remain.
    status = provider.update("server-1", recorded, {**recorded, "machine_spec": "spec-2"}).outs["status"]
    assert status.startswith("server-1: the others are healthy voters")


def log_calls(monkeypatch) -> list[tuple[str, str]]:
    logged: list[tuple[str, str]] = []
    for level in ("info", "warn"):
        monkeypatch.setattr(server_handover.pulumi.log, level, lambda text, level=level: logged.append((level, text)))
    return logged


def test_removal_of_a_departed_server_never_holds_a_destroy_up(pki, built, provider, monkeypatch):
    built.set_running(*built.names, running=False)  # `pulumi destroy`: the rest went too
    status = server_handover.remove_departed(
        provider._apis(props(pki, built, "server-2")), "server-2", props(pki, built, "server-2")["peers"]
    )
    assert status == "server-2: no cluster answers, nothing to remove"
    built.set_running("server-0")
    built.consul.leader = built.nomad.leader = None  # no quorum left: the removals are refused, not fatal
    built.vault.unsealed.clear()
    logged = log_calls(monkeypatch)
    provider.delete("server-2", props(pki, built, "server-2"))
    assert "server-2" in built.consul.servers and "server-2" in built.vault.members
    assert logged == [
        (
            "warn",
            "server-2 left the cluster: Consul: not removed, no server answers autopilot health (`consul operator "
            "raft remove-peer` by hand); Nomad: not removed, no server answers autopilot health (`nomad operator "
            "raft remove-peer` by hand); Vault: removal refused (`vault operator raft remove-peer` by hand)",
        )
    ]


def test_a_server_already_gone_from_raft_is_not_removed_twice(pki, built, provider):
    built.consul.servers.pop("server-2")
    status = server_handover.remove_departed(
        provider._apis(props(pki, built, "server-2")), "server-2", props(pki, built, "server-2")["peers"]
    )
    assert status == "server-2 left the cluster: Consul: not a member; Nomad: removed; Vault: removed"


def test_a_departed_server_is_removed_through_any_server_that_answers(pki, built, provider, monkeypatch):
    """The first remaining server is down too: the removals go through the next one."""
    built.consul.leader = built.nomad.leader = "server-1"
    built.vault.leader = "server-1"
    built.set_running("server-0", running=False)
    logged = log_calls(monkeypatch)
    provider.delete("server-2", props(pki, built, "server-2"))
    assert logged == [("info", "server-2 left the cluster: Consul: removed; Nomad: removed; Vault: removed")]
    assert "server-2" not in built.consul.servers and "server-2" not in built.nomad.servers
    assert built.vault.members == {"server-0", "server-1"}
    (removal,) = built.apis["server-1"]["vault"].seen("POST", "/v1/sys/storage/raft/remove-peer")
    assert removal.body == {"server_id": "server-2"}
    assert removal.headers.get("X-Vault-Token") == VAULT_ROOT


# -- what each refusal says -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("health", "problem"),
    [
        (None, "Vault does not answer"),
        ({"removed_from_cluster": True, "initialized": True}, "Vault was removed from the raft cluster"),
        ({"removed_from_cluster": False, "initialized": False}, "Vault is not initialised (not joined)"),
        ({"initialized": True, "sealed": True}, "Vault is sealed (`make unseal`)"),
        ({"initialized": True, "sealed": False, "removed_from_cluster": False}, None),
    ],
)
def test_each_vault_state_that_stops_the_roll_is_named(health, problem):
    assert server_handover.vault_problem(health) == problem


def test_a_refused_nomad_transfer_stops_the_roll_with_what_nomad_answered(pki, built, provider):
    path = "/v1/operator/raft/transfer-leadership"
    built.apis["server-0"]["nomad"].on("PUT", path, upstream.nomad_permission_denied())
    with pytest.raises(HandoverRefusedError) as refused:
        roll(provider, pki, built, "server-0", prefer="server-2")
    target = built.nomad.raft_id("server-2")
    assert str(refused.value).startswith(
        f"server-0 leads Nomad and would not hand leadership to server-2: PUT {path}?id={target} answers 403: "
    )
    assert str(refused.value).endswith(
        "Nothing was taken down; see docs/operations.md#a-server-that-is-not-healthy-stops-the-roll."
    )
    assert built.nomad.leader == "server-0" and built.vault.leader == "server-0"  # Vault was not asked


def test_a_transfer_that_is_accepted_but_does_not_move_stops_the_roll(pki, built, provider):
    built.apis["server-0"]["consul"].on(
        "POST", "/v1/operator/raft/transfer-leader", upstream.consul_leadership_transferred()
    )
    with pytest.raises(HandoverRefusedError) as refused:
        roll(provider, pki, built, "server-0")
    assert str(refused.value) == (
        "server-0 Consul hand-over to server-1: gave up after 0 s: Consul leader: server-0. The machine was not "
        "taken down; see docs/operations.md#a-server-that-is-not-healthy-stops-the-roll."
    )


def test_a_vault_that_refuses_to_step_down_stops_the_roll(pki, built, provider):
    with pytest.raises(HandoverRefusedError) as refused:
        roll(provider, pki, built, "server-0", vault_token="not-the-root-token")
    assert str(refused.value).startswith(
        "server-0's Vault would not step down: PUT /v1/sys/step-down answers 403: {'errors': ['permission denied']}."
    )
    assert built.vault.leader == "server-0"


def test_the_step_down_waits_for_vault_to_report_a_standby(pki, built, provider):
    status = roll(provider, pki, built, "server-0")
    assert status == (
        "server-0: the others are healthy voters; Consul: leadership handed to server-1; "
        "Nomad: leadership handed to server-1; Vault: stepped down to a standby"
    )
    (step_down,) = built.apis["server-0"]["vault"].seen("PUT", "/v1/sys/step-down")
    assert step_down.headers.get("X-Vault-Token") == VAULT_ROOT
    assert built.vault.leader == "server-1"


def test_a_sealed_or_silent_vault_is_not_stepped_down(pki, built, provider):
    poller = server_handover.Poller(0.1, 0.01)
    api = server_health.server_apis(operator_tls(pki), "", "", VAULT_ROOT).vault
    built.vault.unsealed.discard("server-1")
    assert server_handover.vault_step_down("server-1", api(built.address("server-1")), True, poller) == (
        "Vault: not the active node"
    )
    built.vault.unsealed.discard("server-0")  # sealed while it was the active node: nothing to step down
    assert server_handover.vault_step_down("server-0", api(built.address("server-0")), True, poller) == (
        "Vault: not the active node"
    )
    built.set_running("server-2", running=False)
    assert server_handover.vault_step_down("server-2", api(built.address("server-2")), True, poller) == (
        "Vault: not the active node"
    )
    assert not [s for n in built.names for s in built.apis[n]["vault"].seen("PUT", "/v1/sys/step-down")]


def test_leadership_goes_to_the_preferred_server_else_the_first_healthy_voter():
    voter = {"Healthy": True, "Voter": True, "ID": "id"}
    servers = {"a": voter, "b": voter, "c": {**voter, "Healthy": False}, "d": {**voter, "ID": ""}}
    assert server_handover.transfer_target(servers, ["b", "a"], "b") == "b"
    assert server_handover.transfer_target(servers, ["b", "a"], "x") == "a"  # not a peer: sorted order
    assert server_handover.transfer_target(servers, ["c", "b"], "c") == "b"  # preferred but unhealthy
    assert server_handover.transfer_target(servers, ["d", "c"], "d") is None  # no raft id, unhealthy


def test_a_leader_with_nobody_to_take_over_is_not_taken_down(pki):
    product = server_handover.raft_products(server_health.server_apis(operator_tls(pki), "", "", ""))[0]
    servers = {"server-0": {"Leader": True, "ID": "0"}, "server-1": {"Healthy": False, "Voter": True, "ID": "1"}}
    with pytest.raises(HandoverRefusedError, match=r"^server-0 leads Consul and no other server can take over$"):
        server_handover.transfer_leadership(product, servers, "server-0", "a", {"server-1": "b"}, "", None)  # type: ignore[arg-type]


def test_a_removal_a_server_refuses_says_what_to_run_by_hand(pki, built, provider, monkeypatch):
    for name in built.names:
        built.apis[name]["consul"].on(
            "DELETE", "/v1/operator/raft/peer", upstream.consul_permission_denied("operator:write")
        )
    logged = log_calls(monkeypatch)
    provider.delete("server-2", props(pki, built, "server-2"))
    assert logged == [
        (
            "warn",
            "server-2 left the cluster: Consul: removal refused (`consul operator raft remove-peer` by hand); "
            "Nomad: removed; Vault: removed",
        )
    ]
    assert "server-2" in built.consul.servers


def test_every_unhealthy_peer_is_named_at_once(pki, built, provider):
    built.rejoin("server-1", healthy=False, products="consul")
    built.vault.unsealed.discard("server-2")
    with pytest.raises(HandoverRefusedError) as refused:
        roll(provider, pki, built, "server-0")
    assert (
        "server-1: Consul autopilot reports Healthy=False, Voter=True; server-2: Vault is sealed (`make unseal`). "
        "Bring those servers back first" in str(refused.value)
    )


def test_the_chain_end_without_a_token_names_the_active_server(pki, built, end):
    with pytest.raises(HandoverRefusedError, match=r"^server-0 is Vault's active node"):
        end.create(end_props(pki, built, vault_token=""))
