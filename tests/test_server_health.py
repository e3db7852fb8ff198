"""The server health gate against local HTTPS servers answering like Consul, Vault and Nomad."""

from __future__ import annotations

import ssl

import pytest
from fake_https import FakeTime, operator_tls
from test_bootstrap_steps import FakeVault

from components.http_api import Poller
from components.server_health import ServerUnhealthyError, server_apis, wait_until_healthy

CONSUL_TOKEN = "33333333-cccc-4ccc-8ccc-333333333333"
NOMAD_TOKEN = "44444444-dddd-4ddd-8ddd-444444444444"
VAULT_TOKEN = "hvs.root"
KEYS = ("k0", "k1", "k2", "k3", "k4")
VOTER = {"Name": "server-0", "Healthy": True, "Voter": True}


class FakeServer:
    """One server's three APIs, each on its own port of one loopback address; state in dicts."""

    def __init__(self, fake_api, address: str = "127.0.0.1", ports: tuple[int, int, int] | None = None):
        consul_port, nomad_port, vault_port = ports or (0, 0, 0)
        self.consul_api = fake_api(address=address, port=consul_port)
        self.nomad_api = fake_api(address=address, port=nomad_port, client_cert=False)
        self.vault_api = fake_api(address=address, port=vault_port, client_cert=False)
        self.ports = (self.consul_api.port, self.nomad_api.port, self.vault_api.port)
        self.consul = {"leader": "", "servers": []}
        self.nomad = {"leader": "", "acl": False, "servers": []}
        self.vault = FakeVault(self.vault_api, initialized=True)
        self.vault_servers: dict = {}

        def authorised(header: str, token: str, answer):
            return lambda seen: answer() if seen.headers.get(header) == token else (403, "Permission denied")

        self.consul_api.on("GET", "/v1/status/leader", lambda _s: (200, self.consul["leader"]))
        self.consul_api.on(
            "GET",
            "/v1/operator/autopilot/health",
            authorised("X-Consul-Token", CONSUL_TOKEN, lambda: (200, {"Servers": self.consul["servers"]})),
        )
        self.nomad_api.on("GET", "/v1/status/leader", lambda _s: (200, self.nomad["leader"]))
        self.nomad_api.on(
            "GET",
            "/v1/acl/token/self",
            lambda s: (
                (200, {"Type": "management"})
                if self.nomad["acl"] and s.headers.get("X-Nomad-Token") == NOMAD_TOKEN
                else (403, "ACL token not found")
            ),
        )
        self.nomad_api.on(
            "GET",
            "/v1/operator/autopilot/health",
            authorised("X-Nomad-Token", NOMAD_TOKEN, lambda: (200, {"Servers": self.nomad["servers"]})),
        )
        self.vault_api.on(
            "GET",
            "/v1/sys/storage/raft/autopilot/state",
            authorised("X-Vault-Token", VAULT_TOKEN, lambda: (200, {"data": {"servers": self.vault_servers}})),
        )

    def voter_in_vault(self) -> None:
        self.vault_servers = {"server-0": {"status": "voter", "healthy": True}}


def gate(pki, server: FakeServer, peers=(), keys=KEYS, timeout=60.0, consul_token=CONSUL_TOKEN, time=None, logs=None):
    time = time or FakeTime()
    poller = Poller(timeout, 5, log=(logs if logs is not None else []).append, clock=time.clock, sleep=time.sleep)
    apis = server_apis(operator_tls(pki), consul_token, NOMAD_TOKEN, VAULT_TOKEN, ports=server.ports)
    return wait_until_healthy(apis, "server-0", "127.0.0.1", list(peers), keys, poller)


@pytest.fixture
def server(fake_api):
    return FakeServer(fake_api)


def test_first_creation_unseals_vault_and_waits_for_it_only(pki, server):
    time = FakeTime()
    time.on_sleep = server.voter_in_vault  # Vault's autopilot lists the node once it has joined
    status = gate(pki, server, time=time)
    assert "Consul answers; its cluster is still forming" in status
    assert "Vault: unsealed, a healthy voter" in status
    assert "Nomad answers; its cluster is still forming" in status
    assert server.vault.given == ["k0", "k1", "k2"], "the gate unseals its server (Shamir)"
    assert server.consul_api.requests[0].client_cert, "Consul is asked with the operator certificate"


def test_replaced_server_waits_until_it_is_a_voter_everywhere(pki, server):
    server.consul.update(leader="10.42.0.11:8300")
    server.nomad.update(leader="10.42.0.11:4647", acl=True)
    progress = iter(
        [
            lambda: server.consul.update(servers=[{**VOTER, "Healthy": False, "Voter": False}]),
            lambda: server.consul.update(servers=[VOTER]),
            lambda: setattr(server, "vault_servers", {"server-0": {"status": "non-voter", "healthy": True}}),
            server.voter_in_vault,
            lambda: server.nomad.update(servers=[{**VOTER, "Name": "server-0.global", "Voter": False}]),
            lambda: server.nomad.update(servers=[{**VOTER, "Name": "server-0.global"}]),
        ]
        + [lambda: None] * 50
    )
    time = FakeTime()
    time.on_sleep = lambda: next(progress)()
    logs: list[str] = []
    status = gate(pki, server, time=time, logs=logs)
    assert "Consul: a healthy voter" in status and "Vault: unsealed" in status and "Nomad: a healthy voter" in status
    assert any("non-voter" in line for line in logs), "a Vault non-voter is not enough"
    assert any("Voter': False" in line for line in logs), "a Nomad non-voter is not enough"


def test_nomad_before_its_acl_bootstrap_counts_as_first_creation(pki, server):
    server.voter_in_vault()
    server.nomad.update(leader="10.42.0.11:4647", acl=False)
    assert "ACLs are not bootstrapped yet" in gate(pki, server)
    assert not server.nomad_api.seen("GET", "/v1/operator/autopilot/health")


def test_a_peer_with_a_leader_means_the_consul_cluster_exists(pki, fake_api, server):
    peer = FakeServer(fake_api, address="127.0.0.2", ports=server.ports)  # one port per API, as the agents have
    peer.consul.update(leader="10.42.0.11:8300")
    server.consul.update(servers=[VOTER])
    server.voter_in_vault()
    assert "Consul: a healthy voter" in gate(pki, server, peers=["127.0.0.2"])
    assert server.consul_api.seen("GET", "/v1/operator/autopilot/health")


def test_a_server_that_never_joins_vault_stops_the_chain(pki, server):
    with pytest.raises(ServerUnhealthyError) as raised:
        gate(pki, server, timeout=30)
    message = str(raised.value)
    assert "server-0 Vault: gave up after 30 s: not yet in Vault's raft configuration" in message
    assert "quorums hold" in message and "journalctl -u consul -u vault -u nomad" in message


def test_auto_unseal_is_waited_for_without_keys(pki, server):
    server.vault.auto_unseal = True
    server.voter_in_vault()
    gate(pki, server, keys=())
    assert server.vault.given == [] and not server.vault.sealed


def test_nothing_listening_times_out(pki, server):
    server.consul_api.close()
    with pytest.raises(ServerUnhealthyError, match="no answer"):
        gate(pki, server, timeout=10)


def test_wrong_consul_token_never_counts_as_healthy(pki, server):
    server.consul.update(leader="10.42.0.11:8300", servers=[VOTER])
    with pytest.raises(ServerUnhealthyError, match="403"):
        gate(pki, server, timeout=15, consul_token="not-the-token")


def test_a_certificate_from_another_ca_fails_at_once(pki, fake_api):
    impostor = fake_api(cert="impostor")
    server = FakeServer(fake_api)
    server.ports = (impostor.port, *server.ports[1:])
    with pytest.raises(ssl.SSLCertVerificationError):
        gate(pki, server)
    assert impostor.requests == []
