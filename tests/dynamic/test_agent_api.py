"""Bootstrap steps against a fake cluster that answers as the pinned Nomad, Consul and Vault do
(tests/fake_cluster.py; every answer's source in tests/upstream.py): first creation, already done,
done by someone else, the answers that differ between releases, and TLS always verified."""

from __future__ import annotations

import ssl
import time

import pytest
import upstream
from fake_cluster import CONSUL_TOKEN, NOMAD_TOKEN, FakeCluster
from fake_https import FakeTime, operator_tls
from fake_https import instant_poller as poller

from components.dynamic import agent_api
from components.dynamic.agent_api import (
    BootstrapError,
    PresetToken,
    consul_preset_tokens,
    nomad_acl_bootstrap,
    vault_init,
    vault_sealed,
    vault_unseal,
)
from components.dynamic.http_api import DeadlineExceeded, HttpsApi

OTHER = "99999999-ffff-4fff-8fff-999999999999"
AGENT, NOMAD_AGENT = "11111111-aaaa-4aaa-8aaa-111111111111", "22222222-bbbb-4bbb-8bbb-222222222222"


@pytest.fixture
def cluster(fake_api) -> FakeCluster:
    return FakeCluster(fake_api)


# -- Nomad ------------------------------------------------------------------------------------------
def test_nomad_bootstrap_waits_out_no_leader_then_uses_the_preset_secret(pki, cluster):
    cluster.boot(*cluster.names)
    time, logs = FakeTime(), []
    time.on_sleep = lambda: cluster.form(*cluster.names) if len(logs) == 2 else None
    assert nomad_acl_bootstrap(cluster.api(pki, "nomad"), NOMAD_TOKEN, poller(time=time, logs=logs)) == (
        "acc-nomad-management"
    )
    assert cluster.nomad_management == NOMAD_TOKEN
    assert sum("No cluster leader" in line for line in logs) == 2, logs
    assert logs[2:] == ["Nomad: ACLs bootstrapped with the preset management token"], "bootstrapped once"
    assert cluster.apis["server-0"]["nomad"].seen("POST", "/v1/acl/bootstrap")[-1].body == {
        "BootstrapSecret": NOMAD_TOKEN
    }


def test_nomad_losing_its_leader_during_the_bootstrap_is_waited_out(pki, cluster):
    """The bootstrap is forwarded to the leader: a 500 "No cluster leader" is not a failure."""
    cluster.boot(*cluster.names)
    cluster.form(*cluster.names)
    nomad = cluster.apis["server-0"]["nomad"]
    real = nomad.routes[("POST", "/v1/acl/bootstrap")]
    answers = iter([upstream.nomad_no_leader()])
    nomad.on("POST", "/v1/acl/bootstrap", lambda seen: next(answers, None) or real(seen))
    assert nomad_acl_bootstrap(cluster.api(pki, "nomad"), NOMAD_TOKEN, poller()) == "acc-nomad-management"


def test_nomad_already_bootstrapped_with_our_secret_is_success(pki, cluster):
    cluster.boot(*cluster.names)
    cluster.form(*cluster.names)
    cluster.nomad_management = NOMAD_TOKEN
    logs: list[str] = []
    assert nomad_acl_bootstrap(cluster.api(pki, "nomad"), NOMAD_TOKEN, poller(logs=logs)) == "acc-nomad-management"
    assert logs == ["Nomad: ACLs already bootstrapped with the preset token"]


@pytest.mark.parametrize("version", ["1.10.3", "1.10.0"])
def test_nomad_bootstrapped_by_someone_else_fails_with_the_reset_procedure(pki, cluster, version):
    """An unknown token is 403 "Permission denied" from v1.10.1, 404 in v1.10.0: both mean "not ours"."""
    cluster.boot(*cluster.names)
    cluster.form(*cluster.names)
    cluster.nomad_management, cluster.nomad_version = OTHER, version
    with pytest.raises(BootstrapError) as raised:
        nomad_acl_bootstrap(cluster.api(pki, "nomad"), NOMAD_TOKEN, poller())
    assert str(raised.value) == (
        "Nomad's ACLs were bootstrapped with another token, and the stack's preset token is not a management "
        "token there. To hand them back to this stack: on the Nomad leader, write the reset index (7) to "
        "/opt/nomad/data/server/acl-bootstrap-reset (`echo <index> | sudo tee "
        "/opt/nomad/data/server/acl-bootstrap-reset`), then run `pulumi up` again."
    )


def test_nomad_wrong_reset_index_names_the_file_and_the_index(pki, cluster):
    cluster.boot(*cluster.names)
    cluster.form(*cluster.names)
    cluster.apis["server-0"]["nomad"].on("POST", "/v1/acl/bootstrap", upstream.nomad_acl_wrong_reset_index(6, 7))
    with pytest.raises(BootstrapError) as raised:
        nomad_acl_bootstrap(cluster.api(pki, "nomad"), NOMAD_TOKEN, poller())
    message = str(raised.value)
    assert "specified 6, reset index: 7" in message and "acl-bootstrap-reset" in message
    assert "delete the file" in message


def test_nomad_anonymous_token_is_not_ours(pki, cluster):
    """Without a token Nomad answers 200 with the anonymous token: only Type management counts."""
    cluster.boot(*cluster.names)
    cluster.form(*cluster.names)
    cluster.nomad_management = OTHER
    assert agent_api._nomad_management_accessor(cluster.api(pki, "nomad"), "") is None
    assert agent_api._nomad_management_accessor(cluster.api(pki, "nomad"), OTHER) == "acc-nomad-management"


def test_nomad_without_leader_times_out_and_never_bootstraps(pki, cluster):
    cluster.boot(*cluster.names)
    with pytest.raises(DeadlineExceeded, match=r"Nomad: gave up after 30 s: no Nomad leader yet \(500 'No cluster"):
        nomad_acl_bootstrap(cluster.api(pki, "nomad"), NOMAD_TOKEN, poller(timeout=30))
    assert cluster.nomad_management is None


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (upstream.nomad_permission_denied(), "403 Permission denied"),
        (upstream.nomad_acl_disabled(), "400 ACL support disabled"),
    ],
)
def test_nomad_unexpected_answer_fails_with_it(pki, cluster, answer, message):
    cluster.boot(*cluster.names)
    cluster.form(*cluster.names)
    cluster.apis["server-0"]["nomad"].on("POST", "/v1/acl/bootstrap", answer)
    with pytest.raises(BootstrapError) as raised:
        nomad_acl_bootstrap(cluster.api(pki, "nomad"), NOMAD_TOKEN, poller())
    assert str(raised.value) == f"Nomad ACL bootstrap failed: {message}"


# -- Consul -----------------------------------------------------------------------------------------
POLICIES = {"agent": 'node_prefix "" { policy = "write" }', "nomad-agent": 'service_prefix "" { policy = "write" }'}
TOKENS = [PresetToken(AGENT, "agent", ("agent",)), PresetToken(NOMAD_AGENT, "nomad-agent", ("nomad-agent",))]


def consul_api(pki, cluster: FakeCluster, token: str = CONSUL_TOKEN) -> HttpsApi:
    return cluster.api(pki, "consul", headers={"X-Consul-Token": token})


@pytest.mark.parametrize(
    "unknown_token",
    [upstream.consul_unknown_token, upstream.consul_unknown_token_as_documented],
    ids=["as-the-code-reads-403", "as-the-changelog-says-404"],
)
def test_consul_tokens_get_the_preset_secret_ids(pki, cluster, unknown_token):
    cluster.boot(*cluster.names)
    cluster.consul_unknown_token = unknown_token
    time, logs = FakeTime(), []
    time.on_sleep = lambda: cluster.form(*cluster.names) if len(logs) == 2 else None
    accessors = consul_preset_tokens(consul_api(pki, cluster), POLICIES, TOKENS, poller(time=time, logs=logs))
    assert set(accessors) == {"agent", "nomad-agent"}
    assert cluster.consul_tokens[AGENT]["Policies"] == ["agent"]
    assert cluster.consul_tokens[NOMAD_AGENT]["Policies"] == ["nomad-agent"]
    assert cluster.consul_tokens[AGENT]["AccessorID"] == accessors["agent"]
    assert cluster.consul_policies["agent"]["Rules"] == POLICIES["agent"]
    assert cluster.consul_policies["agent"]["Description"] == "hashistack: agent"
    assert cluster.consul_tokens[NOMAD_AGENT]["Description"] == "nomad-agent"
    assert sum("No cluster leader" in line for line in logs) == 2, "waits for a leader first"


def test_consul_second_run_changes_nothing_and_repairs_drift(pki, cluster):
    cluster.boot(*cluster.names)
    cluster.form(*cluster.names)
    consul = cluster.apis["server-0"]["consul"]
    first = consul_preset_tokens(consul_api(pki, cluster), POLICIES, TOKENS, poller())
    writes = len([r for r in consul.requests if r.method == "PUT"])
    assert consul_preset_tokens(consul_api(pki, cluster), POLICIES, TOKENS, poller()) == first
    assert len([r for r in consul.requests if r.method == "PUT"]) == writes, "an idempotent second run writes nothing"
    cluster.consul_policies["agent"]["Rules"] = 'node_prefix "" { policy = "read" }'  # changed by hand
    cluster.consul_tokens[AGENT]["Policies"] = ["nomad-agent"]
    consul_preset_tokens(consul_api(pki, cluster), POLICIES, TOKENS, poller())
    assert cluster.consul_policies["agent"]["Rules"] == POLICIES["agent"]
    assert cluster.consul_tokens[AGENT] == {"AccessorID": first["agent"], "Description": "agent", "Policies": ["agent"]}


def test_consul_permission_denied_is_not_an_absent_token(pki, cluster):
    """Only "not found" creates a token; a 403 "Permission denied" stops with the answer."""
    cluster.boot(*cluster.names)
    cluster.form(*cluster.names)
    consul = cluster.apis["server-0"]["consul"]
    real = consul.routes[("GET", "/v1/acl/token/self")]
    consul.on(
        "GET",
        "/v1/acl/token/self",
        lambda seen: (
            upstream.consul_permission_denied("acl:read") if seen.headers.get("X-Consul-Token") == AGENT else real(seen)
        ),
    )
    with pytest.raises(BootstrapError, match="checking token agent failed: 403 Permission denied"):
        consul_preset_tokens(consul_api(pki, cluster), POLICIES, TOKENS, poller())
    assert AGENT not in cluster.consul_tokens


def test_consul_absent_reads_exactly_not_found():
    absent = agent_api.consul_absent
    assert absent(upstream.consul_unknown_token()) and absent(upstream.consul_unknown_token_as_documented())
    assert absent(upstream.consul_policy_missing())
    assert not absent(upstream.consul_permission_denied("acl:read")), "denied is not absent"
    assert not absent(upstream.consul_no_leader())


def test_consul_with_a_wrong_management_token_never_writes(pki, cluster):
    cluster.boot(*cluster.names)
    cluster.form(*cluster.names)
    with pytest.raises(DeadlineExceeded, match="Consul's ACLs not ready \\(403 'token does not exist"):
        consul_preset_tokens(consul_api(pki, cluster, token=OTHER), POLICIES, TOKENS, poller(timeout=20))
    assert not [r for r in cluster.apis["server-0"]["consul"].requests if r.method == "PUT"]


def test_consul_needs_the_client_certificate(pki, cluster):
    cluster.boot(*cluster.names)
    cluster.form(*cluster.names)
    port = cluster.ports[0]
    without_cert = HttpsApi(
        f"https://127.0.0.1:{port}", operator_tls(pki, with_client_cert=False), headers={"X-Consul-Token": CONSUL_TOKEN}
    )
    with pytest.raises(DeadlineExceeded):
        consul_preset_tokens(without_cert, POLICIES, TOKENS, poller(timeout=10))


# -- Vault ------------------------------------------------------------------------------------------
def test_vault_init_waits_for_it_to_listen_then_shamir_unseal(pki, cluster):
    time = FakeTime()
    time.on_sleep = lambda: cluster.boot("server-0") if time.now >= 10 else None  # nothing listens for 10 s
    keys = vault_init(cluster.api(pki, "vault"), auto_unseal=False, shares=5, threshold=3, poller=poller(time=time))
    assert keys.root_token == "hvs.root-of-the-fake" and len(keys.unseal_keys) == 5 and keys.recovery_keys == ()
    assert cluster.apis["server-0"]["vault"].seen("PUT", "/v1/sys/init")[0].body == {
        "secret_shares": 5,
        "secret_threshold": 3,
    }
    assert vault_sealed(cluster.api(pki, "vault")) is True
    logs: list[str] = []
    assert vault_unseal(cluster.api(pki, "vault"), keys.unseal_keys, poller(logs=logs)) == "unsealed"
    assert logs == [], "the shares go out on the first attempt"
    assert len(cluster.apis["server-0"]["vault"].seen("PUT", "/v1/sys/unseal")) == 3, "exactly the threshold"
    assert vault_sealed(cluster.api(pki, "vault")) is False


def test_vault_init_auto_unseal_returns_recovery_keys(pki, fake_api):
    cluster = FakeCluster(fake_api, seal_type="awskms")
    cluster.boot("server-0")
    keys = vault_init(cluster.api(pki, "vault"), auto_unseal=True, shares=5, threshold=3, poller=poller())
    assert keys.unseal_keys == () and len(keys.recovery_keys) == 5
    assert cluster.apis["server-0"]["vault"].seen("PUT", "/v1/sys/init")[0].body == {
        "recovery_shares": 5,
        "recovery_threshold": 3,
    }


def test_vault_already_initialised_fails_with_the_way_out(pki, cluster):
    cluster.boot("server-0")
    vault_init(cluster.api(pki, "vault"), auto_unseal=False, shares=5, threshold=3, poller=poller())
    with pytest.raises(BootstrapError, match="already initialised, but this stack holds no keys"):
        vault_init(cluster.api(pki, "vault"), auto_unseal=False, shares=5, threshold=3, poller=poller())
    assert len(cluster.apis["server-0"]["vault"].seen("PUT", "/v1/sys/init")) == 1


@pytest.fixture
def initialised(pki, cluster) -> tuple[str, ...]:
    """server-0 initialised and unsealed; the other servers booted, outside Vault's raft."""
    cluster.boot(*cluster.names)
    keys = vault_init(cluster.api(pki, "vault"), auto_unseal=False, shares=5, threshold=3, poller=poller())
    vault_unseal(cluster.api(pki, "vault"), keys.unseal_keys, poller())
    return keys.unseal_keys


def test_a_follower_gets_no_share_before_it_holds_the_join_challenge(pki, cluster, initialised):
    """Uninitialised (t = 0) it would refuse them (400 "Vault is not initialized"); once retry_join has
    the leader's challenge, the leader's shares complete the join and Vault unseals in the background."""
    time, logs = FakeTime(), []
    time.on_sleep = lambda: cluster.retry_join() if time.now >= 15 else None
    vault = cluster.api(pki, "vault", node="server-1")
    assert vault_unseal(vault, initialised, poller(time=time, logs=logs)).startswith("unsealed")
    unseals = cluster.apis["server-1"]["vault"].seen("PUT", "/v1/sys/unseal")
    assert [r.body["key"] for r in unseals] == list(initialised[:3]), "no share before the challenge, then 3"
    assert any("waiting for the raft join challenge" in line for line in logs), logs
    assert "server-1" in cluster.vault.members


def test_a_threshold_that_is_still_finishing_is_not_given_again(pki, cluster, initialised):
    cluster.retry_join()
    cluster.vault.finishing_reads = 4  # the join completes, then the unseal, over several reads
    logs: list[str] = []
    assert vault_unseal(cluster.api(pki, "vault", node="server-1"), initialised, poller(logs=logs)).startswith(
        "unsealed"
    )
    assert len(cluster.apis["server-1"]["vault"].seen("PUT", "/v1/sys/unseal")) == 3
    assert any("finishing the unseal" in line for line in logs), logs


def test_a_threshold_vault_never_finishes_is_given_again_after_the_settling_polls(pki, cluster, initialised):
    """Vault restarted in the middle of a join, say: after UNSEAL_SETTLE_POLLS reads the shares go again."""
    cluster.retry_join()
    cluster.vault.finishing_reads = 10**6  # the join never completes by itself
    unseals = cluster.apis["server-1"]["vault"]
    logs: list[str] = []
    vault = cluster.api(pki, "vault", node="server-1")
    assert vault_unseal(vault, initialised, poller(timeout=60, logs=logs)) == "unsealed"
    assert [line.split(": waiting, ")[1] for line in logs] == [
        "sealed after 3 key shares, finishing the unseal",
        *["sealed, finishing the unseal (joining the raft cluster)"] * agent_api.UNSEAL_SETTLE_POLLS,
    ]
    assert len(unseals.seen("PUT", "/v1/sys/unseal")) == 6, "the threshold once, then once more"


def test_too_few_key_shares_never_count_as_unsealed(pki, cluster, initialised):
    cluster.seal_all()
    with pytest.raises(DeadlineExceeded, match=r"still sealed after all 2 key shares \(progress 2 of 3\)"):
        vault_unseal(cluster.api(pki, "vault"), initialised[:2], poller(timeout=10))


def test_unseal_continues_from_the_progress_vault_reports(pki, cluster, initialised):
    cluster.seal_all()
    cluster.vault.given["server-0"] = list(initialised[:2])  # someone gave two shares already
    vault_unseal(cluster.api(pki, "vault"), initialised, poller())
    assert [r.body["key"] for r in cluster.apis["server-0"]["vault"].seen("PUT", "/v1/sys/unseal")][-1:] == [
        initialised[2]
    ]
    assert len(cluster.apis["server-0"]["vault"].seen("PUT", "/v1/sys/unseal")) == 4, "3 at init, then 1"


def test_a_blocking_unseal_is_waited_for_not_resent(pki, cluster, initialised):
    """PUT /v1/sys/unseal blocks while a follower completes its raft join: the call gets longer than
    an ordinary request, so the share is not sent again."""
    cluster.retry_join()
    vault_api = cluster.apis["server-1"]["vault"]
    real = vault_api.routes[("PUT", "/v1/sys/unseal")]

    def slow(seen):
        time.sleep(0.15)
        return real(seen)

    vault_api.on("PUT", "/v1/sys/unseal", slow)
    vault_unseal(cluster.api(pki, "vault", node="server-1", timeout=0.05), initialised, poller())
    assert len(vault_api.seen("PUT", "/v1/sys/unseal")) == 3


def test_vault_unseal_of_an_unsealed_server_sends_no_key(pki, cluster, initialised):
    before = len(cluster.apis["server-0"]["vault"].seen("PUT", "/v1/sys/unseal"))
    vault_unseal(cluster.api(pki, "vault"), initialised, poller())
    assert len(cluster.apis["server-0"]["vault"].seen("PUT", "/v1/sys/unseal")) == before


def test_vault_auto_unseal_is_waited_for(pki, fake_api):
    cluster = FakeCluster(fake_api, seal_type="awskms")
    cluster.boot(*cluster.names)
    vault_init(cluster.api(pki, "vault"), auto_unseal=True, shares=5, threshold=3, poller=poller())
    time, logs = FakeTime(), []
    time.on_sleep = cluster.retry_join
    assert vault_unseal(cluster.api(pki, "vault", node="server-2"), (), poller(time=time, logs=logs)).startswith(
        "unsealed"
    )
    assert any("waiting for auto-unseal" in line for line in logs)
    assert not cluster.apis["server-2"]["vault"].seen("PUT", "/v1/sys/unseal")


def test_vault_wrong_keys_time_out(pki, cluster, initialised):
    cluster.seal_all()
    wrong = tuple(f"d3Jvbmcta2V5LXNoYXJl{i}" for i in range(5))
    with pytest.raises(DeadlineExceeded, match="unseal answers 400"):
        vault_unseal(cluster.api(pki, "vault"), wrong, poller(timeout=15))


def test_unreachable_vault_reports_no_seal_status(pki):
    assert vault_sealed(HttpsApi("https://127.0.0.1:1", operator_tls(pki), timeout=1)) is None


def test_an_error_in_place_of_a_seal_status_is_never_unsealed(pki, fake_api):
    """Vault always answers seal-status with 200; anything else (a proxy, a broken node) says nothing."""
    broken = fake_api(client_cert=False)
    broken.on("GET", "/v1/sys/seal-status", (503, {"errors": ["Vault is sealed"], "sealed": False}))
    vault = HttpsApi(broken.url, operator_tls(pki, with_client_cert=False))
    assert vault_sealed(vault) is None
    with pytest.raises(DeadlineExceeded, match="seal status answers 503"):
        vault_unseal(vault, ("k",), poller(timeout=10))


def test_every_call_verifies_the_cluster_ca(pki, fake_api):
    impostor = fake_api(cert="impostor", client_cert=False)
    impostor.on("GET", "/v1/sys/init", upstream.vault_init_status(False))
    with pytest.raises(ssl.SSLCertVerificationError):
        vault_init(
            HttpsApi(impostor.url, operator_tls(pki, with_client_cert=False)),
            auto_unseal=False,
            shares=5,
            threshold=3,
            poller=poller(),
        )
    assert impostor.requests == []


def test_make_unseal_unseals_every_sealed_server_after_a_restart(pki, cluster, initialised):
    from scripts.unseal import unseal_all

    cluster.retry_join()
    for follower in ("server-1", "server-2"):
        vault_unseal(cluster.api(pki, "vault", node=follower), initialised, poller())
    cluster.restart_all()
    cluster.vault.unsealed.add("server-2")  # one already unsealed by hand
    outputs = {
        "vaultUnsealKeys": list(initialised),
        "caCertPem": (pki / "ca.pem").read_text(),
        "serverAddresses": cluster.addresses,
    }
    assert unseal_all(outputs, timeout=2, port=cluster.ports[2], interval=0.02) == [
        "server-0: unsealed",
        "server-1: unsealed",
        "server-2: already unsealed",
    ]
    with pytest.raises(SystemExit, match="no unseal keys"):
        unseal_all({**outputs, "vaultUnsealKeys": []})
