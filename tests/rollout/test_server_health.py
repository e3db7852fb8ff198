"""The server health gate against a fake cluster that answers as the pinned Consul, Nomad and Vault do
(tests/fake_cluster.py, sources in tests/upstream.py), in the products' real order: the first
creation, a rolling replacement and a restart; and the gate's dynamic provider itself."""

from __future__ import annotations

import base64
import os
import ssl
import threading
from collections.abc import Callable
from dataclasses import fields
from time import monotonic

import pytest
import upstream
from fake_cluster import CONSUL_TOKEN, NOMAD_TOKEN, VAULT_ROOT, FakeCluster
from fake_https import FakeTime, operator_tls
from pulumi.output import Unknown

from components.dynamic.http_api import Poller
from components.rollout.node_console import failure_line, log_file_watch
from components.rollout.server_health import (
    ServerHealthArgs,
    ServerUnhealthyError,
    _ServerHealthProvider,
    server_apis,
    wait_until_healthy,
)

from conftest import is_secret, unwrap

DYNAMIC = "pulumi-python:dynamic/hashistack:ServerHealth"


class Steps:
    """What happens in the cluster while a gate waits: one step per poll, then nothing."""

    def __init__(self, *steps: Callable[[], None]):
        self.steps = list(steps)

    def __call__(self) -> None:
        if self.steps:
            self.steps.pop(0)()


def gate(
    pki,
    cluster: FakeCluster,
    name: str,
    *,
    existed: bool = False,
    keys: tuple[str, ...] = (),
    steps: Steps | None = None,
    timeout: float = 60,
    consul_token: str = CONSUL_TOKEN,
    logs: list[str] | None = None,
) -> str:
    time = FakeTime()
    time.on_sleep = steps
    poller = Poller(timeout, 5, log=(logs if logs is not None else []).append, clock=time.clock, sleep=time.sleep)
    apis = server_apis(operator_tls(pki), consul_token, NOMAD_TOKEN, VAULT_ROOT, ports=cluster.ports)
    peers = [cluster.address(n) for n in cluster.names if n != name]
    return wait_until_healthy(apis, name, cluster.address(name), peers, keys, poller, cluster_existed=existed)


@pytest.fixture
def cluster(fake_api) -> FakeCluster:
    return FakeCluster(fake_api)


@pytest.fixture
def built(pki, cluster) -> tuple[FakeCluster, tuple[str, ...]]:
    """A cluster an earlier run built: every server a healthy voter everywhere, ACLs bootstrapped."""
    return cluster, cluster.build(pki)


# -- the first creation, in the chain's order ------------------------------------------------------
def test_first_creation_passes_each_server_in_the_chain_s_order(pki, cluster):
    """server-0 alone: no Consul or Nomad leader anywhere (Nomad answers 500 to a consistent read),
    Vault initialised on it and so its leader ("leader", not "voter"); then server-1 joins Vault; then
    server-2 completes bootstrap_expect, a leader is elected and the ACLs are not bootstrapped yet."""
    cluster.boot("server-0")
    keys = cluster.initialise_vault(pki)
    status = gate(pki, cluster, "server-0", keys=keys)
    assert status == (
        "server-0: Consul answers; no server has a leader yet (first creation); unsealed; "
        "Vault: unsealed, a healthy leader; Nomad answers; no server has a leader yet (first creation)"
    )

    cluster.boot("server-1")
    logs: list[str] = []
    steps = Steps(cluster.retry_join, lambda: None, lambda: None, lambda: cluster.vault_promote("server-1"))
    status = gate(pki, cluster, "server-1", keys=keys, logs=logs, steps=steps)
    assert "Vault: unsealed, a healthy voter" in status
    assert any("non-voter" in line for line in logs), "a Vault non-voter is not enough"

    cluster.boot("server-2")
    cluster.form(*cluster.names)  # bootstrap_expect reached: Consul and Nomad elect a leader

    def promote_2() -> None:
        cluster.vault_promote("server-2")

    status = gate(
        pki,
        cluster,
        "server-2",
        keys=keys,
        steps=Steps(cluster.retry_join, *[lambda: None] * 2, promote_2),
    )
    assert "Consul: a healthy voter" in status
    assert "Nomad answers; the servers with a leader do not know the preset token: ACLs not bootstrapped" in status


def test_nomad_without_a_leader_is_asked_for_a_stale_read(pki, cluster):
    cluster.boot("server-0")
    keys = cluster.initialise_vault(pki)
    gate(pki, cluster, "server-0", keys=keys)
    leader_reads = cluster.apis["server-0"]["nomad"].seen("GET", "/v1/status/leader")
    assert leader_reads and all(r.query == {"stale": "true"} for r in leader_reads)


# -- a rolling replacement: the cluster exists ----------------------------------------------------
def test_a_replaced_server_waits_until_it_is_a_voter_in_all_three(pki, built):
    cluster, keys = built
    cluster.replace("server-1")
    logs: list[str] = []
    status = gate(
        pki,
        cluster,
        "server-1",
        existed=True,
        keys=keys,
        logs=logs,
        steps=Steps(
            lambda: None,  # the new machine knows no leader: its own answers look like a first creation
            lambda: cluster.rejoin("server-1", healthy=False),  # Consul and Nomad: joined, not yet healthy
            lambda: cluster.rejoin("server-1"),
            cluster.retry_join,
        ),
    )
    assert "Consul: a healthy voter" in status and "Vault: unsealed, a healthy voter" in status
    assert "Nomad: a healthy voter" in status
    assert any("answers 500: No cluster leader" in line for line in logs), "autopilot asked through the new node"
    assert any("'Healthy': False" in line for line in logs), "an unhealthy voter is not enough"


def test_nomad_fails_closed_while_the_new_node_has_not_joined(pki, built):
    """The new node answers 500 to every forwarded read until it joins: the ACLs' state comes from the
    peers, and the gate waits for the node to be a voter, however long Consul and Vault are ready."""
    cluster, keys = built
    cluster.replace("server-2")
    steps = Steps(lambda: cluster.rejoin("server-2", products="consul"), cluster.retry_join)
    logs: list[str] = []
    with pytest.raises(
        ServerUnhealthyError, match="server-2 Nomad: gave up after 60 s: Nomad autopilot health answers 500"
    ):
        gate(pki, cluster, "server-2", existed=True, keys=keys, steps=steps, logs=logs)
    assert any(line.startswith("server-2 Nomad: waiting") for line in logs)


def test_an_unhealthy_peer_does_not_hold_back_a_healthy_server(pki, built):
    """Autopilot answers 429 with the full body when any server is unhealthy."""
    cluster, keys = built
    for state in (cluster.consul, cluster.nomad):
        state.servers["server-2"] = {"Healthy": False, "Voter": True}  # server-2 is down
    assert upstream.consul_autopilot_health(cluster.consul.health(lambda n: n)).status == 429
    status = gate(pki, cluster, "server-1", existed=True, keys=keys)
    assert "Consul: a healthy voter" in status and "Nomad: a healthy voter" in status


def test_no_leader_anywhere_in_a_cluster_that_existed_fails_closed(pki, built):
    cluster, keys = built
    cluster.set_running("server-0", "server-2", running=False)
    cluster.replace("server-1")
    with pytest.raises(ServerUnhealthyError) as raised:
        gate(pki, cluster, "server-1", existed=True, keys=keys, timeout=30)
    message = str(raised.value)
    assert "server-1 Consul: gave up after 30 s: no Consul server knows a leader" in message
    assert "quorums hold" in message and "journalctl -u consul -u vault -u nomad" in message


def test_nomad_fails_closed_without_a_leader_in_a_cluster_that_existed(pki, built):
    cluster, keys = built
    cluster.nomad.leader = None  # Nomad lost its quorum; Consul and Vault are fine
    with pytest.raises(
        ServerUnhealthyError, match="server-1 Nomad: gave up after 30 s: no Nomad server knows a leader"
    ):
        gate(pki, cluster, "server-1", existed=True, keys=keys, timeout=30)


def test_a_leader_known_to_the_node_alone_means_the_cluster_exists(pki, built):
    """Even for a new gate: the peers do not answer, the node knows a leader, so it must be a voter."""
    cluster, keys = built
    for state in (cluster.consul, cluster.nomad):
        state.servers["server-1"] = {"Healthy": False, "Voter": False}
    cluster.set_running("server-0", "server-2", running=False)
    with pytest.raises(ServerUnhealthyError, match="server-1 Consul: gave up after 30 s: Consul autopilot reports"):
        gate(pki, cluster, "server-1", keys=keys, timeout=30)


def test_nomad_acls_count_as_bootstrapped_when_only_the_node_accepts_the_token(pki, built):
    cluster, keys = built
    cluster.set_running("server-0", "server-2", running=False)
    assert "Nomad: a healthy voter" in gate(pki, cluster, "server-1", existed=True, keys=keys)


def test_nomad_waits_while_no_server_can_tell_whether_its_acls_exist(pki, built):
    """Peers down, the node not joined yet (500 to every forwarded read): no evidence either way."""
    cluster, keys = built
    cluster.nomad.joined.discard("server-1")
    nomad_api = cluster.apis["server-1"]["nomad"]
    nomad_api.on("GET", "/v1/status/leader", upstream.nomad_leader("10.0.0.1:4647"))  # its own stale view
    for peer in ("server-0", "server-2"):
        cluster.apis[peer]["nomad"].down = True
    with pytest.raises(ServerUnhealthyError, match="no Nomad server accepts or refuses the preset management token"):
        gate(pki, cluster, "server-1", keys=keys, timeout=30)


@pytest.mark.parametrize(
    ("peer_answer", "passes"),
    [
        (upstream.nomad_unknown_token(), True),
        (upstream.nomad_unknown_token_v1_10_0(), True),
        (upstream.nomad_token(NOMAD_TOKEN, "acc", kind="client"), False),
        (upstream.nomad_no_leader(), False),
    ],
    ids=["403-not-bootstrapped", "404-v1.10.0-not-bootstrapped", "a-client-token-proves-nothing", "no-answer"],
)
def test_what_a_peer_s_token_answer_proves(pki, built, peer_answer, passes):
    """A peer that knows a leader and refuses the preset token: ACLs not bootstrapped (a first `up`);
    any other answer proves nothing, and the gate waits."""
    cluster, keys = built
    cluster.nomad_management = None
    cluster.nomad.joined.discard("server-1")
    cluster.apis["server-1"]["nomad"].on("GET", "/v1/status/leader", upstream.nomad_leader(""))
    for peer in ("server-0", "server-2"):
        cluster.apis[peer]["nomad"].on("GET", "/v1/acl/token/self", peer_answer)
    if passes:
        assert "ACLs not bootstrapped yet" in gate(pki, cluster, "server-1", keys=keys)
    else:
        with pytest.raises(ServerUnhealthyError, match="no Nomad server accepts or refuses the preset management"):
            gate(pki, cluster, "server-1", keys=keys, timeout=15)


def test_a_peer_that_refuses_the_token_but_knows_no_leader_proves_nothing(pki, built):
    cluster, keys = built
    cluster.nomad_management = None
    cluster.nomad.joined = {"server-0"}  # only server-0 knows the leader; it is down
    cluster.apis["server-0"]["nomad"].down = True
    for name in ("server-1", "server-2"):
        cluster.apis[name]["nomad"].on("GET", "/v1/acl/token/self", upstream.nomad_unknown_token())
    cluster.apis["server-1"]["nomad"].on("GET", "/v1/status/leader", upstream.nomad_leader("10.0.0.1:4647"))
    with pytest.raises(ServerUnhealthyError, match="no Nomad server accepts or refuses"):
        gate(pki, cluster, "server-1", keys=keys, timeout=15)


def test_a_node_that_answers_its_leader_read_with_an_error_is_waited_for(pki, cluster):
    cluster.boot("server-0")
    cluster.apis["server-0"]["consul"].on("GET", "/v1/status/leader", upstream.consul_no_leader())
    with pytest.raises(ServerUnhealthyError, match=r"server-0 Consul: gave up after 15 s: Consul at .* answers 500"):
        gate(pki, cluster, "server-0", timeout=15)


def test_a_server_not_yet_in_autopilot_is_waited_for(pki, built):
    cluster, keys = built
    del cluster.consul.servers["server-1"]
    logs: list[str] = []
    steps = Steps(lambda: cluster.rejoin("server-1"))
    assert "Consul: a healthy voter" in gate(pki, cluster, "server-1", existed=True, keys=keys, steps=steps, logs=logs)
    assert logs == ["server-1 Consul: waiting, not yet in Consul's raft configuration"]


# -- a restart --------------------------------------------------------------------------------------
def test_after_a_restart_the_gate_unseals_its_server(pki, built):
    cluster, keys = built
    cluster.restart_all()
    status = gate(pki, cluster, "server-1", existed=True, keys=keys)
    assert "server-1" in cluster.vault.unsealed and "Vault: unsealed, a healthy voter" in status


def test_auto_unseal_is_waited_for_without_keys(pki, fake_api):
    cluster = FakeCluster(fake_api, seal_type="awskms")
    cluster.boot(*cluster.names)
    cluster.initialise_vault(pki)
    status = gate(pki, cluster, "server-1", steps=Steps(cluster.retry_join, lambda: cluster.vault_promote("server-1")))
    assert "Vault: unsealed, a healthy voter" in status
    assert not cluster.apis["server-1"]["vault"].seen("PUT", "/v1/sys/unseal")


# -- what never counts as healthy -----------------------------------------------------------------
def test_a_vault_that_never_joins_stops_the_chain(pki, cluster):
    cluster.boot("server-0", "server-1")
    keys = cluster.initialise_vault(pki)
    with pytest.raises(
        ServerUnhealthyError, match="server-1 Vault: gave up after 30 s: sealed, waiting for the raft join"
    ):
        gate(pki, cluster, "server-1", keys=keys, timeout=30)


def test_vault_states_that_are_not_healthy(pki, built):
    cluster, keys = built
    vault = cluster.apis["server-1"]["vault"]
    for answer in (
        upstream.vault_autopilot_not_ready(),
        upstream.vault_sealed(),
        upstream.vault_permission_denied(),
        upstream.vault_autopilot_state("server-0", {"server-1": {"status": "non-voter", "healthy": True}}),
        upstream.vault_autopilot_state("server-0", {"server-1": {"status": "voter", "healthy": False}}),
        upstream.vault_autopilot_state("server-0", {"server-0": {"status": "voter", "healthy": True}}),
    ):
        vault.on("GET", "/v1/sys/storage/raft/autopilot/state", answer)
        with pytest.raises(ServerUnhealthyError, match="server-1 Vault: gave up"):
            gate(pki, cluster, "server-1", existed=True, keys=keys, timeout=10)


def test_nothing_listening_times_out(pki, cluster):
    with pytest.raises(ServerUnhealthyError, match="no answer"):
        gate(pki, cluster, "server-0", timeout=10)


def test_a_timed_out_gate_names_the_console_command_where_it_has_one(pki, cluster):
    time = FakeTime()
    apis = server_apis(operator_tls(pki), CONSUL_TOKEN, NOMAD_TOKEN, VAULT_ROOT, ports=cluster.ports)
    command = "aws ec2 get-console-output --latest --output text --region eu-central-1 --instance-id i-0abc"
    with pytest.raises(ServerUnhealthyError) as failed:
        wait_until_healthy(
            apis, "server-0", cluster.address("server-0"), [], (), Poller(10, 5, log=lambda _: None,
            clock=time.clock, sleep=time.sleep), cluster_existed=False, console_command=command,
        )  # fmt: skip
    assert f"the quorums hold. Its boot's last words are on its console: `{command}`. Look at the node" in str(
        failed.value
    )


def test_the_provider_passes_the_console_command_and_without_one_says_nothing_of_it(pki, cluster, provider):
    command = "aws ec2 get-console-output --latest --output text --region eu-central-1 --instance-id i-0abc"
    with pytest.raises(ServerUnhealthyError) as with_command:
        provider.create({**props(pki, cluster, "server-0", ()), "console_command": command})
    assert f"Its boot's last words are on its console: `{command}`." in str(with_command.value)
    with pytest.raises(ServerUnhealthyError) as without:
        provider.create(props(pki, cluster, "server-0", ()))
    assert "the quorums hold. Look at the node" in str(without.value) and "console" not in str(without.value)


def test_wrong_consul_token_never_counts_as_healthy(pki, built):
    cluster, keys = built
    with pytest.raises(ServerUnhealthyError, match="403: ACL not found"):
        gate(pki, cluster, "server-0", existed=True, keys=keys, timeout=15, consul_token="not-the-token")


def test_a_certificate_from_another_ca_fails_at_once(pki, fake_api, cluster):
    impostor = fake_api(address="127.0.0.1", cert="impostor")
    cluster.ports = (impostor.port, *cluster.ports[1:])
    with pytest.raises(ssl.SSLCertVerificationError):
        gate(pki, cluster, "server-0")
    assert impostor.requests == []


# -- the dynamic provider -----------------------------------------------------------------------------
def props(pki, cluster: FakeCluster, name: str, keys: tuple[str, ...], machine: str = "m-1") -> dict:
    tls = operator_tls(pki)
    return {
        "node_name": name,
        "address": cluster.address(name),
        "peers": [cluster.address(n) for n in cluster.names if n != name],
        "machine_id": machine,
        "ca_pem": tls.ca_pem,
        "client_cert_pem": tls.client_cert_pem,
        "client_key_pem": tls.client_key_pem,
        "consul_token": CONSUL_TOKEN,
        "nomad_token": NOMAD_TOKEN,
        "vault_token": VAULT_ROOT,
        "vault_unseal_keys": list(keys),
    }


@pytest.fixture
def provider(monkeypatch, cluster) -> _ServerHealthProvider:
    from components.rollout import server_health

    monkeypatch.setattr(server_health, "server_apis", _on_ports(server_health.server_apis, cluster.ports))
    return _ServerHealthProvider(timeout=0.5, interval=0.02)


def _on_ports(server_apis_fn, ports):
    return lambda *args: server_apis_fn(*args, ports=ports)


def test_provider_create_is_a_first_creation_and_update_a_replacement(pki, cluster, provider):
    """create: the stack never saw the cluster (no leader anywhere passes); update: the machine of a
    server that passed before was replaced, and no leader anywhere fails closed."""
    cluster.boot("server-0")
    keys = cluster.initialise_vault(pki)
    created = provider.create(props(pki, cluster, "server-0", keys))
    assert created.id == "server-0" and "first creation" in created.outs["status"]
    assert created.outs["machine_id"] == "m-1"
    with pytest.raises(ServerUnhealthyError, match="no Consul server knows a leader"):
        provider.update("server-0", created.outs, props(pki, cluster, "server-0", keys, machine="m-2"))


def test_provider_update_waits_for_a_replaced_server_to_rejoin(pki, built, provider):
    cluster, keys = built
    cluster.replace("server-1")
    cluster.retry_join()
    threading.Timer(0.1, cluster.rejoin, args=("server-1",)).start()
    updated = provider.update("server-1", {}, props(pki, cluster, "server-1", keys, machine="m-2"))
    assert "Nomad: a healthy voter" in updated.outs["status"] and updated.outs["machine_id"] == "m-2"


# The serial console as a Ubuntu cloud image writes it: kernel and cloud-init lines, terminal escapes,
# CRLF, then the boot script's FAILED line (cloudinit/hashistack-bootstrap.sh report_failure).
FAILED_BOOT = (
    "[  OK  ] Started cloud-final.service.\r\n"
    "\x1b[0;32m  OK  \x1b[0m] Reached target cloud-init.target\r\n"
    "[  142.118301] cloud-init[912]: ==> [12:01:07] adding the HashiCorp apt repository\r\n"
    "hashistack-bootstrap: FAILED while adding the HashiCorp apt repository: curl https://apt.example/gpg"
    " failed 10 times. Check the node's network. Then re-run: sudo /usr/local/sbin/hashistack-bootstrap"
    " (full log: /var/log/hashistack-bootstrap.log)\r\n"
    "ubuntu login: "
)


def test_a_boot_that_failed_on_the_console_stops_the_gate_at_once(pki, cluster, provider, tmp_path):
    """Nothing answers (the node never started its agents): the gate reads the console log and ends
    with the node's own FAILED line, long before its deadline."""
    log = tmp_path / "server-0.log"
    log.write_bytes(FAILED_BOOT.replace("while adding", "while long ago adding").encode())  # an earlier machine's
    slow = _ServerHealthProvider(timeout=600, interval=0.01)
    # The boot's output arrives once the gate waits; a long boot: only the tail is read.
    threading.Timer(0.2, lambda: log.open("ab").write(b"\x00" * 300_000 + FAILED_BOOT.encode())).start()
    started = monotonic()
    with pytest.raises(ServerUnhealthyError) as failed:
        slow.create({**props(pki, cluster, "server-0", ()), "console_log": str(log)})
    assert monotonic() - started < 5
    assert str(failed.value).startswith(
        "server-0 failed to boot; its console says: hashistack-bootstrap: FAILED while adding the HashiCorp apt"
        " repository: curl https://apt.example/gpg failed 10 times. Check the node's network. Then re-run:"
    )
    assert "\x1b" not in str(failed.value) and "\r" not in str(failed.value)


def test_the_console_watch_reads_what_this_boot_wrote(tmp_path):
    log = tmp_path / "client-0.log"
    log.write_text(FAILED_BOOT)
    watch = log_file_watch(str(log))
    assert watch() is None, "a failure of an earlier boot or machine (the log is appended to) is not this one's"
    with log.open("ab") as console:  # garbage on a serial line, and colour inside the line
        console.write(b"\xff\xfe\r\nhashistack-bootstrap: FAILED while \x1b[1mnow\x1b[0m: x.\r\n")
    assert watch() == "hashistack-bootstrap: FAILED while now: x."
    log.write_text("hashistack-bootstrap: FAILED while after rollover: y.\n")  # virtlogd rolled it over: shorter
    assert watch() == "hashistack-bootstrap: FAILED while after rollover: y."
    late = log_file_watch(str(tmp_path / "not-yet.log"))
    (tmp_path / "not-yet.log").write_text("hashistack-bootstrap: FAILED while booting: z.\n")
    assert late() == "hashistack-bootstrap: FAILED while booting: z.", "a log that appears later is read whole"


def test_a_console_without_a_failure_or_unreadable_is_no_news(tmp_path):
    assert failure_line("hashistack-bootstrap: done\r\nubuntu login: ") is None
    assert failure_line("x\nhashistack-bootstrap: FAILED while a: b.\n[ 9.1] FAILED\n") == (
        "hashistack-bootstrap: FAILED while a: b."
    )
    assert log_file_watch("")() is None, "no console to read (the AWS gate until it reads its own)"
    assert log_file_watch(str(tmp_path / "missing.log"))() is None
    unreadable = tmp_path / "root-only.log"
    unreadable.write_text(FAILED_BOOT)
    unreadable.chmod(0)
    if os.geteuid() != 0:  # root reads it anyway
        assert log_file_watch(str(unreadable))() is None


def test_provider_diff(pki, cluster, provider):
    old = props(pki, cluster, "server-1", ())
    same = provider.diff("server-1", old, old)
    assert not same.changes, "rotated nothing: no check"
    rotated = provider.diff("server-1", old, {**old, "consul_token": "rotated"})
    assert not rotated.changes, "rotated credentials do not need the gate again"
    machine = provider.diff("server-1", old, {**old, "machine_id": "m-2"})
    assert machine.changes and machine.replaces == [], "a new machine: the same gate, updated (cluster existed)"
    moved = provider.diff("server-1", old, {**old, "address": "127.0.0.9"})
    assert moved.changes and moved.replaces == ["address"] and moved.delete_before_replace is False
    preview = provider.diff("server-1", old, {**old, "machine_id": Unknown()})
    assert preview.changes and preview.replaces == [], "a machine to be replaced (unknown id) shows as an update"


def test_gate_inputs_and_outputs_are_secret(program):
    gates = program.of_type(DYNAMIC)
    assert len(gates) == 3
    nodes = next(r.urn for r in program.registrations if r.type.endswith(":Nodes"))
    for registration in gates:
        assert registration.parent == nodes, registration.urn
        assert set(registration.inputs) == {*(f.name for f in fields(ServerHealthArgs)), "__provider"}, registration.urn
        pickled = base64.b64decode(unwrap(registration.inputs["__provider"]))
        assert b"components.rollout.server_health" in pickled and b"_ServerHealthProvider" in pickled, (
            "the check's provider"
        )
        for key in ("client_key_pem", "consul_token", "nomad_token", "vault_token", "vault_unseal_keys"):
            assert key in registration.secret_outputs, f"{registration.urn}: {key} not a secret output"
            assert is_secret(registration.inputs[key]), f"{registration.urn}: {key} sent in plain text"
