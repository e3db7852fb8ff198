"""The server health gate against local HTTPS servers that answer like Consul, over mutual TLS."""

from __future__ import annotations

import ssl

import pytest
from fake_https import FakeTime, operator_tls

from components.http_api import Poller
from components.server_health import ServerUnhealthyError, consul_api_factory, wait_until_healthy

TOKEN = "33333333-cccc-4ccc-8ccc-333333333333"
HEALTHY = {"Servers": [{"Name": "server-0", "Healthy": True, "Voter": True}]}


def consul_like(api, leader: str = "", autopilot: dict | None = None):
    """Consul's answers: the leader (public) and autopilot health (operator:read, so the token)."""
    state = {"leader": leader, "autopilot": autopilot or {"Servers": []}}
    api.on("GET", "/v1/status/leader", lambda _seen: (200, state["leader"]))

    def health(seen):
        if seen.headers.get("X-Consul-Token") != TOKEN:
            return 403, "ACL not found"
        return 200, state["autopilot"]

    api.on("GET", "/v1/operator/autopilot/health", health)
    return state


def wait(pki, port, peers=(), timeout=60.0, token=TOKEN, time=None, logs=None):
    time = time or FakeTime()
    poller = Poller(timeout, 5, log=(logs if logs is not None else []).append, clock=time.clock, sleep=time.sleep)
    consul = consul_api_factory(operator_tls(pki), token, port=port)
    return wait_until_healthy(consul, "server-0", "127.0.0.1", list(peers), poller)


def test_first_creation_waits_for_the_agent_only(pki, fake_api):
    api = fake_api()
    consul_like(api)
    assert "still forming" in wait(pki, api.port)
    first = api.requests[0]
    assert first.path == "/v1/status/leader" and first.client_cert, "the operator certificate must be presented"


def test_not_yet_ready_is_retried(pki, fake_api):
    api = fake_api()
    answers = iter([(500, "rpc error: No cluster leader")] * 3 + [(200, "")] * 10)
    api.on("GET", "/v1/status/leader", lambda _seen: next(answers))
    logs: list[str] = []
    assert "still forming" in wait(pki, api.port, logs=logs)
    assert sum("waiting" in line for line in logs) == 3


def test_replaced_server_waits_until_it_is_a_healthy_voter(pki, fake_api):
    api = fake_api()
    state = consul_like(api, leader="10.42.0.11:8300")
    states = iter([{"Servers": [{"Name": "server-0", "Healthy": False, "Voter": False}]}, HEALTHY])
    time = FakeTime()
    time.on_sleep = lambda: state.update(autopilot=next(states))
    assert wait(pki, api.port, time=time).startswith("server-0: healthy voter")
    assert any(seen.headers.get("X-Consul-Token") == TOKEN for seen in api.seen("GET", "/v1/operator/autopilot/health"))


def test_a_peer_with_a_leader_means_the_cluster_exists(pki, fake_api):
    node = fake_api(address="127.0.0.1")
    peer = fake_api(address="127.0.0.2", port=node.port)  # one port for every server, as Consul has
    consul_like(node, autopilot=HEALTHY)
    consul_like(peer, leader="10.42.0.11:8300")
    assert "healthy voter" in wait(pki, node.port, peers=["127.0.0.2"])
    assert node.seen("GET", "/v1/operator/autopilot/health"), "a formed cluster needs the autopilot check"


def test_timeout_names_the_node_and_the_way_out(pki, fake_api):
    api = fake_api()
    consul_like(api, leader="10.42.0.11:8300")  # a cluster exists, but this node never becomes a voter
    with pytest.raises(ServerUnhealthyError) as raised:
        wait(pki, api.port, timeout=30)
    message = str(raised.value)
    assert "gave up after 30 s" in message and "not yet a member of the raft configuration" in message
    assert "journalctl -u consul" in message and "quorum holds" in message


def test_nothing_listening_times_out(pki):
    with pytest.raises(ServerUnhealthyError, match="no answer"):
        wait(pki, 1, timeout=10)


def test_wrong_token_never_counts_as_healthy(pki, fake_api):
    api = fake_api()
    consul_like(api, leader="10.42.0.11:8300", autopilot=HEALTHY)
    with pytest.raises(ServerUnhealthyError, match="403"):
        wait(pki, api.port, timeout=15, token="not-the-token")


def test_a_certificate_from_another_ca_fails_at_once(pki, fake_api):
    impostor = fake_api(cert="impostor")
    consul_like(impostor)
    with pytest.raises(ssl.SSLCertVerificationError):
        wait(pki, impostor.port)
    assert impostor.requests == []
