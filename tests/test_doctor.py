"""`make doctor` against local HTTPS servers that answer like Consul (mutual TLS), Nomad and Vault: a
healthy cluster, a sealed Vault, a missing leader, an anonymous request wrongly allowed, a dead job, an
unreachable API and a certificate from another CA; every problem is a FAIL line with its reason."""

from __future__ import annotations

import functools
import socket
from dataclasses import dataclass, field
from typing import Any

import pytest

from scripts import doctor
from scripts.doctor import Ports, diagnose

CONSUL_TOKEN, NOMAD_TOKEN, VAULT_TOKEN = "consul-management", "nomad-management", "hvs.operator"
SERVERS = {"server-0": "127.0.0.1", "server-1": "127.0.0.2"}


@dataclass
class Cluster:
    """What the fake APIs answer; a test changes a field to break one thing."""

    consul_leader: str = "127.0.0.1:8300"
    nomad_leader: tuple[int, Any] = (200, "127.0.0.1:4647")
    sealed: set[str] = field(default_factory=set)
    anonymous_nomad_jobs: tuple[int, Any] = (403, "Permission denied")
    jobs: list[dict[str, Any]] = field(
        default_factory=lambda: [
            {"ID": "traefik", "Namespace": "default", "Type": "system", "Status": "running"},
            {"ID": "web", "Namespace": "apps", "Type": "service", "Status": "running"},
            {
                "ID": "migrate",
                "Namespace": "apps",
                "Type": "batch",
                "Status": "dead",
                "JobSummary": {"Summary": {"migrate": {"Complete": 1, "Failed": 0, "Lost": 0}}},
            },
        ]
    )


def _token(seen, header: str, token: str, answer: tuple[int, Any]) -> tuple[int, Any]:
    return answer if seen.headers.get(header) == token else (403, "ACL token not found")


@pytest.fixture
def cluster(pki, fake_api):
    """The fake cluster's state, its outputs and ports: Consul and Nomad on 127.0.0.1, Vault on both servers."""
    state = Cluster()
    consul = fake_api(address="127.0.0.1")  # requires the operator's client certificate
    nomad = fake_api(address="127.0.0.1", client_cert=False)
    vaults = {name: None for name in SERVERS}
    vaults["server-0"] = fake_api(address=SERVERS["server-0"], client_cert=False)
    vaults["server-1"] = fake_api(address=SERVERS["server-1"], port=vaults["server-0"].port, client_cert=False)

    consul.on("GET", "/v1/status/leader", lambda _seen: (200, state.consul_leader))
    consul.on("GET", "/v1/status/peers", lambda _seen: (200, [f"{a}:8300" for a in SERVERS.values()]))
    consul.on("GET", "/v1/acl/tokens", lambda seen: _token(seen, "X-Consul-Token", CONSUL_TOKEN, (200, [])))
    consul.on("GET", "/v1/acl/token/self", lambda seen: _token(seen, "X-Consul-Token", CONSUL_TOKEN, (200, {})))

    nomad.on("GET", "/v1/status/leader", lambda _seen: state.nomad_leader)
    nomad.on("GET", "/v1/status/peers", lambda _seen: (200, [f"{a}:4647" for a in SERVERS.values()]))
    nomad.on(
        "GET",
        "/v1/jobs",
        lambda seen: state.anonymous_nomad_jobs if "X-Nomad-Token" not in seen.headers else (403, "Permission denied"),
    )
    nomad.on("GET", "/v1/jobs?namespace=*", lambda seen: _token(seen, "X-Nomad-Token", NOMAD_TOKEN, (200, state.jobs)))
    nomad.on("GET", "/v1/acl/token/self", lambda seen: _token(seen, "X-Nomad-Token", NOMAD_TOKEN, (200, {})))

    for name, vault in vaults.items():
        vault.on(
            "GET",
            "/v1/sys/seal-status",
            lambda _seen, name=name: (
                200,
                {"type": "shamir", "initialized": True, "sealed": name in state.sealed, "t": 3, "progress": 0},
            ),
        )
    active = vaults["server-0"]  # apiEndpoint is server-0's address, as on libvirt
    active.on("GET", "/v1/sys/leader", (200, {"ha_enabled": True, "leader_address": "https://127.0.0.1:8200"}))
    raft = {"data": {"config": {"servers": [{"node_id": n, "voter": True} for n in SERVERS]}}}
    active.on(
        "GET", "/v1/sys/storage/raft/configuration", lambda s: _token(s, "X-Vault-Token", VAULT_TOKEN, (200, raft))
    )
    active.on("GET", "/v1/sys/policies/acl", lambda seen: _token(seen, "X-Vault-Token", VAULT_TOKEN, (200, {})))
    active.on("GET", "/v1/auth/token/lookup-self", lambda seen: _token(seen, "X-Vault-Token", VAULT_TOKEN, (200, {})))

    outputs = {
        "apiEndpoint": "127.0.0.1",
        "serverAddresses": SERVERS,
        "caCertPem": (pki / "ca.pem").read_text(),
        "operatorCertPem": (pki / "operator.pem").read_text(),
        "operatorKeyPem": (pki / "operator.key").read_text(),
        "consulManagementToken": CONSUL_TOKEN,
        "nomadBootstrapToken": NOMAD_TOKEN,
        "vaultOperatorToken": VAULT_TOKEN,
    }
    ports = Ports(consul=consul.port, nomad=nomad.port, vault=vaults["server-0"].port)
    return state, outputs, ports


def lines(cluster) -> dict[str, str]:
    _state, outputs, ports = cluster
    return {check.name: check.line() for check in diagnose(outputs, "test", ports, timeout=5)}


def failures(cluster) -> dict[str, str]:
    return {name: line for name, line in lines(cluster).items() if line.startswith("FAIL")}


def test_a_healthy_cluster_passes_every_check(cluster):
    result = lines(cluster)
    assert failures(cluster) == {}
    assert set(result) == {
        "consul leader",
        "consul peers",
        "nomad leader",
        "nomad peers",
        "vault seal server-0",
        "vault seal server-1",
        "vault leader",
        "vault peers",
        "consul acl",
        "nomad acl",
        "vault acl",
        "consul token",
        "nomad token",
        "vault token",
        "nomad jobs",
    }
    assert result["consul leader"] == "PASS  consul leader: leader 127.0.0.1:8300"
    assert result["nomad peers"] == "PASS  nomad peers: 2 of 2 servers are raft peers"
    assert result["vault seal server-1"] == "PASS  vault seal server-1: unsealed (shamir seal)"
    assert result["nomad acl"] == "PASS  nomad acl: GET /v1/jobs without a token: 403"
    assert result["nomad jobs"] == "PASS  nomad jobs: 3 jobs running"


def test_a_sealed_vault_fails_with_the_way_out(cluster):
    cluster[0].sealed.add("server-1")
    assert failures(cluster) == {
        "vault seal server-1": "FAIL  vault seal server-1: sealed (shamir seal, 0/3 key shares given): "
        "run `make unseal STACK=test`"
    }


def test_a_missing_leader_fails(cluster):
    state = cluster[0]
    state.consul_leader = ""
    state.nomad_leader = (500, "No cluster leader")
    found = failures(cluster)
    assert set(found) == {"consul leader", "nomad leader"}
    assert "no Consul leader" in found["consul leader"]
    assert "answered 500: No cluster leader" in found["nomad leader"]


def test_an_anonymous_request_wrongly_allowed_fails(cluster):
    cluster[0].anonymous_nomad_jobs = (200, [])
    assert failures(cluster) == {
        "nomad acl": "FAIL  nomad acl: GET /v1/jobs without a token answered 200: Nomad's ACLs are not enforced"
    }


def test_a_dead_job_fails_and_is_named(cluster):
    state = cluster[0]
    state.jobs.append({"ID": "api", "Namespace": "apps", "Type": "service", "Status": "dead"})
    state.jobs.append(
        {
            "ID": "report",
            "Namespace": "apps",
            "Type": "batch",
            "Status": "dead",
            "JobSummary": {"Summary": {"report": {"Failed": 2, "Lost": 0}}},
        }
    )
    state.jobs.append({"ID": "old", "Namespace": "default", "Type": "service", "Status": "dead", "Stop": True})
    assert failures(cluster) == {
        "nomad jobs": "FAIL  nomad jobs: 3 of 6 jobs not running: apps/api (dead), "
        "apps/report (dead, 2 allocations failed or lost), default/old (stopped, dead)"
    }


def test_a_refused_stack_token_fails(cluster):
    _state, outputs, ports = cluster
    result = diagnose({**outputs, "nomadBootstrapToken": "revoked"}, "test", ports, timeout=5)
    found = {check.name: check.reason for check in result if not check.ok}
    assert set(found) == {"nomad token", "nomad jobs"}
    assert "refused (403)" in found["nomad token"]


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_an_unreachable_api_fails_every_check_with_a_reason_and_no_crash(cluster):
    _state, outputs, _ports = cluster
    port = closed_port()
    result = diagnose(outputs, "test", Ports(port, port, port), timeout=2)
    assert len(result) == 15 and not any(check.ok for check in result)
    for check in result:
        assert check.reason.startswith("no answer: https://127.0.0.") and "refused" in check.reason, check.line()


def test_a_certificate_from_another_ca_fails_and_is_never_skipped(cluster, pki, fake_api):
    _state, outputs, ports = cluster
    impostor = fake_api(address="127.0.0.1", cert="impostor", client_cert=False)
    result = diagnose(outputs, "test", Ports(ports.consul, impostor.port, ports.vault), timeout=5)
    nomad = {check.name: check for check in result if check.name.startswith("nomad")}
    assert nomad and not any(check.ok for check in nomad.values())
    assert all("TLS failed" in check.reason for check in nomad.values()), [c.line() for c in nomad.values()]
    assert not impostor.requests, "no request may reach a server the cluster CA did not certify"


def test_missing_outputs_stop_with_a_clear_message(cluster):
    _state, outputs, ports = cluster
    with pytest.raises(SystemExit, match="lacks the outputs vaultOperatorToken: is it deployed"):
        diagnose({**outputs, "vaultOperatorToken": None}, "test", ports)


def test_main_prints_one_line_per_check_and_exits_non_zero_on_a_failure(cluster, monkeypatch, capsys):
    state, outputs, ports = cluster
    monkeypatch.setattr(doctor, "stack_outputs", lambda stack: outputs)
    monkeypatch.setattr(doctor, "diagnose", functools.partial(diagnose, ports=ports, timeout=5))
    assert doctor.main(["--stack", "test"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "doctor: 15 checks, 0 failed"
    state.sealed.add("server-0")
    assert doctor.main(["--stack", "test"]) == 1
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 16 and printed[-1] == "doctor: 15 checks, 1 failed"
    assert next(line for line in printed if line.startswith("FAIL")).startswith("FAIL  vault seal server-0: sealed")
