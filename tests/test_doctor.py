"""`make doctor` against a fake cluster that answers as the pinned Consul (mutual TLS), Nomad and Vault do
(tests/fake_cluster.py): a healthy cluster, a sealed Vault, no leader, an anonymous request wrongly
allowed, a dead job, an unreachable API and a certificate from another CA; every problem is a FAIL
line with its reason."""

from __future__ import annotations

import functools
import socket

import pytest
import upstream
from fake_cluster import CONSUL_TOKEN, NOMAD_TOKEN, VAULT_ROOT, FakeCluster

from scripts import doctor
from scripts.doctor import Ports, diagnose

JOBS = [
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


@pytest.fixture
def cluster(pki, fake_api):
    """A built fake cluster (tests/fake_cluster.py), the stack's outputs for it, and its ports."""
    fake = FakeCluster(fake_api)
    fake.build(pki)
    fake.nomad_jobs = [dict(job) for job in JOBS]
    outputs = {
        "apiEndpoint": fake.address("server-0"),  # as on libvirt
        "serverAddresses": fake.addresses,
        "caCertPem": (pki / "ca.pem").read_text(),
        "operatorCertPem": (pki / "operator.pem").read_text(),
        "operatorKeyPem": (pki / "operator.key").read_text(),
        "consulManagementToken": CONSUL_TOKEN,
        "nomadBootstrapToken": NOMAD_TOKEN,
        "vaultOperatorToken": VAULT_ROOT,
    }
    return fake, outputs, Ports(*fake.ports)


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
        "vault seal server-2",
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
    assert result["nomad peers"] == "PASS  nomad peers: 3 of 3 servers are raft peers"
    assert result["vault peers"] == "PASS  vault peers: 3 of 3 servers are raft voters"
    assert result["vault seal server-1"] == "PASS  vault seal server-1: unsealed (shamir seal)"
    assert result["nomad acl"] == "PASS  nomad acl: GET /v1/jobs without a token: 403"
    assert result["nomad jobs"] == "PASS  nomad jobs: 3 jobs running"


def test_a_sealed_vault_fails_with_the_way_out(cluster):
    cluster[0].vault.unsealed.discard("server-1")
    assert failures(cluster) == {
        "vault seal server-1": "FAIL  vault seal server-1: sealed (shamir seal, 0/3 key shares given): "
        "run `make unseal STACK=test`"
    }


def test_a_missing_leader_fails(cluster):
    """Consul answers "" without a leader; Nomad 500 "No cluster leader" (so does every forwarded read)."""
    fake = cluster[0]
    fake.consul.leader = fake.nomad.leader = None
    found = failures(cluster)
    assert {"consul leader", "consul peers", "nomad leader", "nomad peers", "nomad jobs"} <= set(found)
    assert not any(name.startswith("vault") for name in found)
    assert "no Consul leader (is a quorum of servers up?)" in found["consul leader"]
    assert "no Nomad leader (is a quorum of servers up?)" in found["nomad leader"]


def test_an_anonymous_request_wrongly_allowed_fails(cluster):
    nomad = cluster[0].apis["server-0"]["nomad"]
    real = nomad.routes[("GET", "/v1/jobs")]
    nomad.on("GET", "/v1/jobs", lambda seen: real(seen) if "X-Nomad-Token" in seen.headers else upstream.nomad_jobs([]))
    assert failures(cluster) == {
        "nomad acl": "FAIL  nomad acl: GET /v1/jobs without a token answered 200: Nomad's ACLs are not enforced"
    }


def test_a_dead_job_fails_and_is_named(cluster):
    jobs = cluster[0].nomad_jobs
    jobs.append({"ID": "api", "Namespace": "apps", "Type": "service", "Status": "dead"})
    jobs.append(
        {
            "ID": "report",
            "Namespace": "apps",
            "Type": "batch",
            "Status": "dead",
            "JobSummary": {"Summary": {"report": {"Failed": 2, "Lost": 0}}},
        }
    )
    jobs.append({"ID": "old", "Namespace": "default", "Type": "service", "Status": "dead", "Stop": True})
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
    assert len(result) == 16 and not any(check.ok for check in result)
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
    fake, outputs, ports = cluster
    monkeypatch.setattr(doctor, "stack_outputs", lambda stack: outputs)
    monkeypatch.setattr(doctor, "diagnose", functools.partial(diagnose, ports=ports, timeout=5))
    assert doctor.main(["--stack", "test"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "doctor: 16 checks, 0 failed"
    fake.vault.unsealed.discard("server-2")
    assert doctor.main(["--stack", "test"]) == 1
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 17 and printed[-1] == "doctor: 16 checks, 1 failed"
    assert next(line for line in printed if line.startswith("FAIL")).startswith("FAIL  vault seal server-2: sealed")
