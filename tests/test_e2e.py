"""`make e2e` (scripts/e2e.py) without a cluster: each functional check against local fakes, with a pass
and a fail case; the phases' order, timing, report, keep, roll and teardown through a fake runner; the
roll itself (poller, replacement, doctor) with fake parts.

Consul and Vault are tests/fake_https.py FakeApi servers (TLS from the test PKI; Consul requires the
operator's client certificate, as its verify_incoming does). The ingress is `FakeIngress` below: plain
HTTP on the loopback, routing by the Host header, as Traefik's `web` entrypoint does for `appUrls`.

The answers, and where each shape was read (not in tests/upstream.py: these APIs are no part of the
bootstrap's contract, and only this file relies on them):
  * Consul GET /v1/connect/intentions/check?source=&destination= -> 200 {"Allowed": bool}:
    hashicorp/consul agent/intentions_endpoint.go IntentionCheck (stored version at 1c3e9af3, "GET
    /v1/connect/intentions/check": required `source` and `destination`, RPC Intention.Check, returns
    &reply) and agent/structs/intention.go `IntentionQueryCheckResponse struct { Allowed bool }` (stored
    version 028aa78e). Not at the pinned v1.21.2 tag, which is not readable here.
  * Vault GET /v1/kv/data/<path> (KV v2) -> {"data": {"data": {...}, "metadata": {...}}}: the
    versioned KV plugin's pathDataRead (hashicorp/vault-plugin-secrets-kv path_data.go: Data "data"
    and "metadata"), inside Vault's response envelope whose `data` is the plugin's Data.
  * Prometheus GET /api/v1/targets -> {"status": "success", "data": {"activeTargets": [{"labels":
    {"job": …}, "scrapePool", "scrapeUrl", "lastError", "health": "up"|"down"|"unknown", …}],
    "droppedTargets": […]}}: prometheus/prometheus web/api/v1/api.go (stored version d0dc365f) Target
    and TargetDiscovery; the envelope {"status": "success", "data": …} is the same file's response.
  * Grafana GET /api/datasources/uid/:uid/health -> 200 {"status": "OK", "message": …} or 400
    {"status": "ERROR", "message": …}: grafana/grafana pkg/api/api.go (route registered with
    `authorize(ac.EvalPermission(datasources.ActionQuery))`, which a Viewer has) and pkg/api/datasources.go
    checkDatasourceHealth (`resp.Status != backend.HealthStatusOk` -> http.StatusBadRequest).
  * Traefik's ipallowlist refusal -> 403 with the text "Forbidden": traefik/traefik
    pkg/middlewares/ipallowlist/ip_allowlist.go reject() (http.StatusText(http.StatusForbidden)).
  * Traefik without a matching router -> 404 "404 page not found": derived (Go's net/http NotFound,
    which Traefik's entrypoint falls back to); only the status matters to the check.
"""

from __future__ import annotations

import http.server
import json
import re
import threading
from pathlib import Path
from typing import Any, ClassVar

import pytest
from fake_https import FakeTime

from scripts import e2e
from scripts.doctor import Check, Ports
from scripts.e2e import Endpoints, functional_checks

ROOT = Path(__file__).resolve().parent.parent
DOMAIN = "hashistack.test"
CONSUL_TOKEN = "e2e-consul-management"
VAULT_TOKEN = "hvs.e2e-operator"
GREETING = "a-random-greeting-0123456789"
SERVICES = ("count-dashboard", "grafana", "hello-docker", "hello-java", "hello-vault", "prometheus", "traefik")
TEXT = "text/plain; charset=utf-8"


class FakeIngress:
    """Traefik's `web` entrypoint as the checks see it: plain HTTP, routes chosen by the Host header."""

    def __init__(self):
        self.routes: dict[tuple[str, str], tuple[int, Any]] = {}
        """(host, path with its query) -> (status, body): a str body is sent as text, anything else as JSON."""
        self.requests: list[tuple[str, str]] = []
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                host = self.headers.get("Host", "")
                fake.requests.append((host, self.path))
                status, body = fake.routes.get((host, self.path), (404, "404 page not found\n"))
                text = isinstance(body, str)
                payload = (body if text else json.dumps(body)).encode()
                self.send_response(status)
                self.send_header("Content-Type", TEXT if text else "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *_):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()

    def on(self, service: str, path: str, status: int, body: Any) -> None:
        self.routes[(f"{service}.{DOMAIN}", path)] = (status, body)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def target(job: str, health: str = "up", error: str = "") -> dict[str, Any]:
    return {
        "discoveredLabels": {"__address__": "10.0.0.5:4646"},
        "labels": {"job": job, "instance": "10.0.0.5:4646"},
        "scrapePool": job,
        "scrapeUrl": f"https://10.0.0.5:4646/v1/metrics?job={job}",
        "lastError": error,
        "health": health,
    }


def targets(*active: dict[str, Any]) -> dict[str, Any]:
    return {"status": "success", "data": {"activeTargets": list(active), "droppedTargets": []}}


class Cluster:
    """Healthy answers for every check; a test breaks one."""

    def __init__(self, pki: Path, fake_api):
        self.consul = fake_api()  # client certificate required, like Consul's verify_incoming
        self.vault = fake_api(client_cert=False)
        self.ingress = FakeIngress()
        self.allowed = {("count-dashboard", "count-api")}
        self.consul.on("GET", "/v1/connect/intentions/check", self._intention)
        self.vault.on("GET", "/v1/kv/data/apps/hello-vault/config", self._secret)
        for service in ("hello-docker", "hello-java", "count-dashboard"):
            self.ingress.on(service, "/", 200, f"<html>{service}</html>")
        self.ingress.on("hello-vault", "/", 200, GREETING + "\n")  # http-echo ends its text with a newline
        self.ingress.on("prometheus", "/api/v1/targets?state=active", 200, targets(*map(target, e2e.SCRAPE_JOBS)))
        self.ingress.on("grafana", "/api/datasources/uid/prometheus/health", 200, {"status": "OK", "message": "Successfully queried the Prometheus API."})  # fmt: skip
        self.outputs = {
            "apiEndpoint": "127.0.0.1",
            "ingressEndpoint": "127.0.0.1",
            "appUrls": {name: f"http://{name}.{DOMAIN}" for name in SERVICES},
            "appsNamespace": "apps",
            "caCertPem": (pki / "ca.pem").read_text(),
            "operatorCertPem": (pki / "operator.pem").read_text(),
            "operatorKeyPem": (pki / "operator.key").read_text(),
            "consulManagementToken": CONSUL_TOKEN,
            "vaultOperatorToken": VAULT_TOKEN,
        }

    def _intention(self, seen):
        if seen.headers.get("X-Consul-Token") != CONSUL_TOKEN:
            return 403, "Permission denied: token with AccessorID '00000000-0000-0000-0000-000000000002' lacks permission 'intention:read'"  # fmt: skip
        return 200, {"Allowed": (seen.query["source"], seen.query["destination"]) in self.allowed}

    def _secret(self, seen):
        if seen.headers.get("X-Vault-Token") != VAULT_TOKEN:
            return 403, {"errors": ["permission denied"]}
        metadata = {"version": 1, "created_time": "2026-11-29T10:00:00Z", "deletion_time": "", "destroyed": False}
        return 200, {"request_id": "r", "data": {"data": {"greeting": GREETING}, "metadata": metadata}}

    def endpoints(self, **outputs) -> Endpoints:
        ports = Ports(consul=self.consul.port, vault=self.vault.port)
        return Endpoints({**self.outputs, **outputs}, ports, ingress_port=self.ingress.port, timeout=5)

    def results(self, **outputs) -> dict[str, Check]:
        return {check.name: check for check in functional_checks(self.endpoints(**outputs))}

    def failures(self, **outputs) -> dict[str, str]:
        return {name: check.line() for name, check in self.results(**outputs).items() if not check.ok}


@pytest.fixture
def cluster(pki, fake_api):
    fake = Cluster(pki, fake_api)
    yield fake
    fake.ingress.close()


def test_a_working_deployment_passes_every_functional_check(cluster):
    results = cluster.results()
    assert {name: check.line() for name, check in results.items() if not check.ok} == {}
    assert list(results) == [
        "ingress hello-docker",
        "ingress hello-java",
        "vault greeting",
        "countdash dashboard",
        "countdash intentions",
        "prometheus targets",
        "grafana datasource",
    ]
    assert results["ingress hello-java"].line() == (
        "PASS  ingress hello-java: hello-java.hashistack.test answered 200 through the ingress"
    )
    assert results["countdash intentions"].reason == (
        "count-dashboard -> count-api allowed; count-api -> count-dashboard, hello-docker -> count-api denied"
    )
    assert results["prometheus targets"].reason == (
        "every target up (nomad-servers 1, nomad-clients 1, consul-agent 1, consul-services 1)"
    )
    assert results["grafana datasource"].reason == "data source prometheus: Successfully queried the Prometheus API."
    # Routed by name through the one ingress address; the cluster APIs with the stack's tokens over mTLS.
    assert ("hello-docker.hashistack.test", "/") in cluster.ingress.requests
    assert all(seen.client_cert for seen in cluster.consul.requests)
    assert {seen.query["source"] for seen in cluster.consul.requests} == {
        "count-dashboard",
        "count-api",
        "hello-docker",
    }


def test_a_service_the_ingress_does_not_route_fails(cluster):
    del cluster.ingress.routes[("hello-java.hashistack.test", "/")]
    assert cluster.failures() == {
        "ingress hello-java": "FAIL  ingress hello-java: the ingress has no route for hello-java (404): "
        "is it registered in Consul and healthy?"
    }


def test_a_service_missing_from_app_urls_fails_with_the_setting_to_look_at(cluster):
    urls = {k: v for k, v in cluster.outputs["appUrls"].items() if k != "hello-docker"}
    assert cluster.failures(appUrls=urls) == {
        "ingress hello-docker": "FAIL  ingress hello-docker: appUrls has no hello-docker: "
        "is its job in the stack's `jobs` setting?"
    }


def test_hello_vault_serving_another_text_fails_without_printing_the_secret(cluster):
    cluster.ingress.on("hello-vault", "/", 200, "<no value>\n")  # a template that rendered nothing
    failures = cluster.failures()
    assert set(failures) == {"vault greeting"}
    assert "not the 28-character greeting in Vault" in failures["vault greeting"]
    assert GREETING not in json.dumps(failures)


def test_a_greeting_vault_does_not_give_the_operator_fails(cluster):
    failures = cluster.failures(vaultOperatorToken="hvs.revoked")
    assert set(failures) == {"vault greeting"}
    assert "Vault GET /v1/kv/data/apps/hello-vault/config answered 403" in failures["vault greeting"]


def test_a_vault_certificate_from_another_ca_fails_the_check(cluster, fake_api):
    impostor = fake_api(cert="impostor", client_cert=False)
    endpoints = cluster.endpoints()
    endpoints = Endpoints(endpoints.outputs, Ports(cluster.consul.port, 0, impostor.port), cluster.ingress.port, 5)
    check = {c.name: c for c in functional_checks(endpoints)}["vault greeting"]
    assert not check.ok and "TLS failed" in check.reason and not impostor.requests


@pytest.mark.parametrize(
    ("allowed", "wrong"),
    [
        (set(), "count-dashboard -> count-api denied"),
        ({("count-dashboard", "count-api"), ("count-api", "count-dashboard")}, "count-api -> count-dashboard allowed"),
        ({("count-dashboard", "count-api"), ("hello-docker", "count-api")}, "hello-docker -> count-api allowed"),
    ],
)
def test_intentions_other_than_exactly_dashboard_to_api_fail(cluster, allowed, wrong):
    cluster.allowed = allowed
    assert cluster.failures() == {"countdash intentions": f"FAIL  countdash intentions: intentions wrong: {wrong}"}


def test_a_consul_token_without_intention_read_fails_the_intention_check(cluster):
    failures = cluster.failures(consulManagementToken="not-the-token")
    assert set(failures) == {"countdash intentions"}
    assert "answered 403: Permission denied" in failures["countdash intentions"]


def test_a_down_or_missing_scrape_job_fails_and_is_named(cluster):
    active = [target(job) for job in e2e.SCRAPE_JOBS if job != "consul-services"]
    active[1] = target("nomad-clients", "down", 'Get "https://10.0.0.5:4646/v1/metrics": connection refused')
    cluster.ingress.on("prometheus", "/api/v1/targets?state=active", 200, targets(*active))
    assert cluster.failures() == {
        "prometheus targets": "FAIL  prometheus targets: no targets for consul-services; nomad-clients "
        "https://10.0.0.5:4646/v1/metrics?job=nomad-clients down "
        '(Get "https://10.0.0.5:4646/v1/metrics": connection refused)'
    }


def test_a_runner_outside_the_admin_ranges_is_told_where_to_run_from(cluster):
    cluster.ingress.on("prometheus", "/api/v1/targets?state=active", 403, "Forbidden")
    assert cluster.failures() == {
        "prometheus targets": "FAIL  prometheus targets: the ingress refused prometheus (403, Traefik's "
        "admin-only middleware): run from the libvirt host or a source in apiAllowedCidrs"
    }


def test_an_unhealthy_grafana_data_source_fails_with_grafanas_message(cluster):
    failed = {"status": "ERROR", "message": 'Post "http://10.0.0.7:9090/api/v1/query": dial tcp: connection refused'}
    cluster.ingress.on("grafana", "/api/datasources/uid/prometheus/health", 400, failed)
    assert cluster.failures() == {
        "grafana datasource": "FAIL  grafana datasource: data source prometheus: ERROR: "
        'Post "http://10.0.0.7:9090/api/v1/query": dial tcp: connection refused'
    }


def test_a_failing_check_is_asked_again_until_it_passes_or_the_wait_ends(cluster):
    """Right after `up` a target may still be "unknown" (no scrape yet)."""
    path = "/api/v1/targets?state=active"
    cluster.ingress.on("prometheus", path, 200, targets(target("nomad-servers", "unknown")))
    time = FakeTime()

    def first_scrape_done() -> None:
        if time.now >= 10:
            cluster.ingress.on("prometheus", path, 200, targets(*map(target, e2e.SCRAPE_JOBS)))

    time.on_sleep = first_scrape_done
    checks = functional_checks(cluster.endpoints(), wait=60, interval=5, clock=time.clock, sleep=time.sleep)
    assert all(check.ok for check in checks) and time.now == 10

    cluster.ingress.on("prometheus", path, 200, targets(target("nomad-servers", "unknown")))
    time, asked = FakeTime(), len(cluster.ingress.requests)
    checks = functional_checks(cluster.endpoints(), wait=30, interval=5, clock=time.clock, sleep=time.sleep)
    assert [c.name for c in checks if not c.ok] == ["prometheus targets"] and time.now == 30
    assert len(cluster.ingress.requests) - asked == 5 + 7, "7 attempts of the failing check, 1 of each other"


class FakeNodes:
    """A shell on the nodes as ssh gives it: resolvectl and docker on a client, the audit log on a
    server, whose line count grows with each audited request to the fake Vault."""

    def __init__(self, cluster):
        self.calls: list[tuple[str, str]] = []
        self.resolves, self.audit_lines, self.audits = True, 40, True
        cluster.vault.on("GET", "/v1/sys/audit", lambda _seen: (200, AUDIT_DEVICES))
        cluster.vault.on("GET", "/v1/auth/token/lookup-self", self._lookup)

    def _lookup(self, seen):
        if self.audits:
            self.audit_lines += 2  # request and response (Vault's file audit device writes both)
        return 200, {"data": {"policies": ["admin", "default"]}}

    def __call__(self, node: str, command: str) -> tuple[int, str]:
        self.calls.append((node, command))
        if command.startswith("resolvectl"):
            return (
                (0, "consul.service.consul: 192.168.142.10 -- link: ens3\n")
                if self.resolves
                else (1, "resolve call failed")
            )
        if "docker run" in command:
            return (
                (0, "Server:\t\t192.168.142.20\nName:\tconsul.service.consul\nAddress: 192.168.142.10\n")
                if self.resolves
                else (1, "nslookup: can't resolve")
            )
        if command.startswith("sudo wc -l"):
            return 0, f"{self.audit_lines}\n"
        return 127, f"unexpected command {command}"


# GET /v1/sys/audit: the logical response's data, {"<path>/": {"path", "type", "description", "options",
# "local"}} (hashicorp/vault vault/logical_system.go handleAuditTable, the stored file id 1641078666),
# in Vault's JSON envelope under "data".
AUDIT_DEVICES = {
    "request_id": "r",
    "data": {
        "file/": {
            "path": "file/",
            "type": "file",
            "description": "Every request and response, HMAC'd, on each server",
            "options": {"file_path": "/var/log/vault/audit.log"},
            "local": False,
        }
    },
}


def test_consul_dns_and_the_vault_audit_log_pass_on_a_working_cluster(cluster):
    nodes = FakeNodes(cluster)
    outputs = {"sshCommands": {"server-0": "ssh ubuntu@192.168.142.10", "client-0": "ssh ubuntu@192.168.142.20"}}
    checks = {c.name: c for c in e2e.node_checks(cluster.endpoints(**outputs), nodes)}
    assert [c.line() for c in checks.values()] == [
        "PASS  consul dns on a node: consul.service.consul resolves on client-0: consul.service.consul: 192.168.142.10 -- link: ens3",
        "PASS  consul dns in a container: consul.service.consul resolves inside a container on client-0",
        "PASS  vault audit log: file audit device on; /var/log/vault/audit.log on server-0 grew by 2 line(s) for one request",
    ]
    assert ("client-0", "sudo docker run --rm busybox:1.36.1 nslookup consul.service.consul") in nodes.calls


def test_dns_that_does_not_resolve_and_an_audit_log_that_does_not_grow_fail(cluster):
    nodes = FakeNodes(cluster)
    nodes.resolves, nodes.audits = False, False
    outputs = {"sshCommands": {"server-0": "ssh ubuntu@192.168.142.10", "client-0": "ssh ubuntu@192.168.142.20"}}
    checks = {c.name: c for c in e2e.node_checks(cluster.endpoints(**outputs), nodes)}
    assert not any(c.ok for c in checks.values())
    assert checks["consul dns on a node"].reason == (
        "resolvectl query consul.service.consul on client-0 exited 1: resolve call failed"
    )
    assert checks["vault audit log"].reason == (
        "/var/log/vault/audit.log on server-0 did not grow (40 lines before a request, 40 after)"
    )


def test_on_aws_dns_is_asked_on_a_server_and_the_container_lookup_says_why_not(cluster):
    nodes = FakeNodes(cluster)
    checks = {
        c.name: c for c in e2e.node_checks(cluster.endpoints(sshCommands={"server-0": "ssh ubuntu@203.0.113.5"}), nodes)
    }
    assert checks["consul dns on a node"].ok and nodes.calls[0][0] == "server-0"
    assert checks["consul dns in a container"].reason == "not asked: no client has an ssh address (aws)"


def test_the_real_shell_runs_ssh_in_batch_mode_on_the_node_s_address(monkeypatch):
    seen = []
    monkeypatch.setattr(
        e2e.subprocess,
        "run",
        lambda argv, **_: seen.append(argv) or type("Done", (), {"returncode": 0, "stdout": "ok", "stderr": ""})(),
    )
    shell = e2e.ssh_shell({"sshCommands": {"server-0": "ssh ubuntu@192.168.142.10"}})
    assert shell("server-0", "true") == (0, "ok")
    assert seen == [
        [
            "ssh",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=accept-new",
            "-o",
            "ConnectTimeout=10",
            "ubuntu@192.168.142.10",
            "true",
        ]
    ]
    with pytest.raises(e2e.Failed, match="no ssh command for client-9"):
        shell("client-9", "true")


def test_missing_outputs_stop_with_a_clear_message(cluster):
    with pytest.raises(SystemExit, match="lacks the outputs ingressEndpoint: is it deployed"):
        functional_checks(cluster.endpoints(ingressEndpoint=None))


# -- the phases ---------------------------------------------------------------------------------------


class FakeRunner:
    """Phases that record their order and advance a fake clock by a known number of seconds each."""

    SECONDS: ClassVar[dict[str, float]] = {
        "check-host": 2.0,
        "up": 600.0,
        "doctor": 3.0,
        "checks": 40.0,
        "roll": 900.0,
        "destroy": 120.0,
    }

    def __init__(self, fail: str | None = None, stop: str | None = None):
        self.calls: list[str] = []
        self.now = 0.0
        self.fail, self.stop = fail, stop

    def clock(self) -> float:
        return self.now

    def _phase(self, name: str) -> list[Check]:
        self.calls.append(name)
        self.now += self.SECONDS[name]
        if name == self.stop:
            raise SystemExit("`pulumi stack output --json --show-secrets` failed:\nno stack named 'test'")
        return [Check(f"{name} a", True, "fine"), Check(f"{name} b", name != self.fail, "broken" if name == self.fail else "fine")]  # fmt: skip

    def check_host(self, stack):
        return self._phase("check-host")

    def up(self, stack):
        return self._phase("up")

    def doctor(self, stack):
        return self._phase("doctor")

    def checks(self, stack):
        return self._phase("checks")

    def roll(self, stack):
        return self._phase("roll")

    def destroy(self, stack):
        return self._phase("destroy")


def run(tmp_path, runner: FakeRunner, keep: bool = False, roll: bool = False) -> tuple[int, list[str], dict]:
    printed: list[str] = []
    stamps = iter(["2026-11-29T10:00:00+00:00", "2026-11-29T10:12:45+00:00"])
    report = tmp_path / "e2e-report.json"
    code = e2e.run(
        runner, "test", keep, report, roll=roll, clock=runner.clock, now=lambda: next(stamps), out=printed.append
    )
    return code, printed, json.loads(report.read_text())


def test_a_passing_run_goes_through_every_phase_in_order_then_destroys(tmp_path):
    runner = FakeRunner()
    code, printed, report = run(tmp_path, runner)
    assert code == 0
    assert runner.calls == ["check-host", "up", "doctor", "checks", "destroy"]
    assert report["stack"] == "test" and report["ok"] is True
    assert (report["started"], report["finished"]) == ("2026-11-29T10:00:00+00:00", "2026-11-29T10:12:45+00:00")
    assert report["phases"] == [
        {"name": "check-host", "seconds": 2.0, "verdict": "PASS"},
        {"name": "up", "seconds": 600.0, "verdict": "PASS"},
        {"name": "doctor", "seconds": 3.0, "verdict": "PASS"},
        {"name": "checks", "seconds": 40.0, "verdict": "PASS"},
        {"name": "destroy", "seconds": 120.0, "verdict": "PASS"},
    ]
    assert report["checks"][2] == {"phase": "up", "name": "up a", "ok": True, "reason": "fine"}
    assert len(report["checks"]) == 10
    assert "PASS  checks b: fine" in printed and "<== up: PASS in 600.0 s" in printed
    assert printed[-1] == f"e2e: 10 checks, 0 failed; report in {tmp_path / 'e2e-report.json'}"
    assert not any("make destroy" in line for line in printed)


def test_keep_leaves_a_passing_stack_up_and_says_how_to_tear_it_down(tmp_path):
    runner = FakeRunner()
    code, printed, report = run(tmp_path, runner, keep=True)
    assert code == 0 and "destroy" not in runner.calls
    assert [p["name"] for p in report["phases"]] == ["check-host", "up", "doctor", "checks"]
    assert printed[-1] == "e2e: stack test kept (--keep); tear it down with `make destroy STACK=test`"


@pytest.mark.parametrize("keep", [False, True])
def test_a_failed_check_keeps_the_stack_for_inspection_and_exits_non_zero(tmp_path, keep):
    runner = FakeRunner(fail="checks")
    code, printed, report = run(tmp_path, runner, keep=keep)
    assert code == 1 and runner.calls == ["check-host", "up", "doctor", "checks"]
    assert report["ok"] is False and report["phases"][-1] == {"name": "checks", "seconds": 40.0, "verdict": "FAIL"}
    assert {"phase": "checks", "name": "checks b", "ok": False, "reason": "broken"} in report["checks"]
    assert "FAIL  checks b: broken" in printed
    assert printed[-1] == "e2e: stack test kept for inspection; tear it down with `make destroy STACK=test`"


def test_a_doctor_failure_still_runs_the_functional_checks_and_keeps_the_stack(tmp_path):
    runner = FakeRunner(fail="doctor")
    code, _printed, report = run(tmp_path, runner)
    assert code == 1 and runner.calls == ["check-host", "up", "doctor", "checks"]
    assert [p["verdict"] for p in report["phases"]] == ["PASS", "PASS", "FAIL", "PASS"]


def test_a_host_that_cannot_run_the_stack_stops_before_anything_is_deployed(tmp_path):
    runner = FakeRunner(fail="check-host")
    code, printed, report = run(tmp_path, runner)
    assert code == 1 and runner.calls == ["check-host"]
    assert [p["name"] for p in report["phases"]] == ["check-host"]
    assert not any("make destroy" in line for line in printed), "nothing was deployed"


def test_a_failed_up_stops_and_says_how_to_tear_down_what_was_made(tmp_path):
    runner = FakeRunner(fail="up")
    code, printed, _report = run(tmp_path, runner)
    assert code == 1 and runner.calls == ["check-host", "up"]
    assert printed[-1].endswith("tear it down with `make destroy STACK=test`")


def test_unreadable_outputs_are_a_failed_phase_with_pulumis_message_not_a_crash(tmp_path):
    runner = FakeRunner(stop="doctor")
    code, _printed, report = run(tmp_path, runner)
    assert code == 1
    failed = [c for c in report["checks"] if not c["ok"]]
    assert failed == [
        {
            "phase": "doctor",
            "name": "doctor",
            "ok": False,
            "reason": "`pulumi stack output --json --show-secrets` failed:\nno stack named 'test'",
        }
    ]


def test_a_failed_destroy_fails_the_run_and_says_how_to_retry(tmp_path):
    code, printed, _report = run(tmp_path, FakeRunner(fail="destroy"))
    assert code == 1 and printed[-1].endswith("tear it down with `make destroy STACK=test`")


def test_main_writes_the_report_and_returns_the_exit_status(tmp_path, capsys):
    report = tmp_path / "r.json"
    assert e2e.main(["--stack", "test", "--report", str(report)], runner=FakeRunner()) == 0
    assert json.loads(report.read_text())["ok"] is True
    assert e2e.main(["--stack", "test", "--report", str(report)], runner=FakeRunner(fail="checks")) == 1
    assert capsys.readouterr().out.splitlines()[-1].startswith("e2e: stack test kept for inspection")


def test_roll_runs_between_the_checks_and_destroy(tmp_path):
    runner = FakeRunner()
    code, _printed, report = run(tmp_path, runner, roll=True)
    assert code == 0 and runner.calls == ["check-host", "up", "doctor", "checks", "roll", "destroy"]
    assert report["phases"][4] == {"name": "roll", "seconds": 900.0, "verdict": "PASS"}
    without = FakeRunner()
    run(tmp_path, without)
    assert "roll" not in without.calls, "only with --roll"


def test_a_failed_roll_keeps_the_stack_and_fails_the_run(tmp_path):
    runner = FakeRunner(fail="roll")
    code, printed, report = run(tmp_path, runner, roll=True)
    assert code == 1 and runner.calls == ["check-host", "up", "doctor", "checks", "roll"]
    assert report["phases"][-1]["verdict"] == "FAIL"
    assert printed[-1] == "e2e: stack test kept for inspection; tear it down with `make destroy STACK=test`"


def test_a_stack_that_failed_its_checks_is_not_rolled(tmp_path):
    runner = FakeRunner(fail="checks")
    assert run(tmp_path, runner, roll=True)[0] == 1 and "roll" not in runner.calls


def test_main_passes_roll_and_keep_to_the_run(tmp_path):
    runner = FakeRunner()
    report = tmp_path / "r.json"
    assert e2e.main(["--stack", "test", "--roll", "--keep", "--report", str(report)], runner=runner) == 0
    assert runner.calls == ["check-host", "up", "doctor", "checks", "roll"]


class FakeRoll:
    """The three parts of a roll: the replacement (waits until the poller has asked `probes_during`
    times, so the poller really runs beside it), the probe (fails the attempts in `down`) and the
    doctor (failing until the fake clock reaches `recovers_at`)."""

    def __init__(self, probes_during: int = 3, down: frozenset[int] = frozenset(), replaced: bool = True):
        self.time = FakeTime()
        self.asked = 0
        self.enough = threading.Event()
        self.probes_during, self.down, self.replaced = probes_during, down, replaced
        self.recovers_at = 0.0
        self.doctor_asked: list[float] = []
        self.events: list[str] = []

    def replace(self) -> Check:
        self.events.append("replace start")
        assert self.enough.wait(5), "the poller did not ask while the server was replaced"
        self.time.now += 300.0  # `pulumi up --replace` took 300 s of the fake clock
        self.events.append("replace end")
        return Check("roll replace cluster-server-1", self.replaced, "exit 0" if self.replaced else "exited 255")

    def probe(self) -> Check:
        self.asked += 1
        if self.asked >= self.probes_during:
            self.enough.set()
        ok = self.asked not in self.down
        return Check("hello-docker", ok, "answered 200" if ok else "no answer: connection refused")

    def doctor(self) -> list[Check]:
        self.doctor_asked.append(self.time.now)
        return [Check("consul peers", self.time.now >= self.recovers_at, "3 peers")]

    def __call__(self, recover_wait: float = 600.0) -> list[Check]:
        return e2e.roll_server(
            self.replace,
            self.probe,
            self.doctor,
            interval=0.001,
            recover_wait=recover_wait,
            recover_interval=5.0,
            clock=self.time.clock,
            sleep=self.time.sleep,
        )


def test_a_roll_without_a_failed_probe_passes_and_says_when_the_doctor_passed_again():
    roll = FakeRoll(probes_during=4)
    roll.recovers_at = 315.0
    replaced, availability, recovery = roll()
    assert replaced.ok and availability.ok and recovery.ok
    assert roll.events == ["replace start", "replace end"] and roll.doctor_asked == [300.0, 305.0, 310.0, 315.0]
    asked = int(availability.reason.split()[0])
    assert asked == roll.asked >= 4, "every probe counted, including those after the replacement"
    assert availability.reason == f"{asked} probes every 0.001 s, 0 failed"
    assert recovery.line() == "PASS  roll doctor: every check passes 315 s after the replacement started"
    time_now, count = roll.time.now, roll.asked
    threading.Event().wait(0.02)
    assert roll.asked == count and roll.time.now == time_now, "the poller stopped with the phase"


def test_a_failed_probe_during_the_roll_fails_it_and_is_counted():
    roll = FakeRoll(probes_during=5, down=frozenset({2, 3}))
    replaced, availability, recovery = roll()
    assert replaced.ok and recovery.ok and not availability.ok
    assert availability.reason == (f"{roll.asked} probes every 0.001 s, 2 failed (no answer: connection refused)"), (
        "the same reason shown once"
    )


def test_a_probe_that_crashes_counts_as_failed_and_the_poller_goes_on():
    roll = FakeRoll(probes_during=3)
    probe = roll.probe

    def crashing() -> Check:
        if roll.asked == 0:
            roll.asked += 1
            raise TimeoutError("timed out")
        return probe()

    roll.probe = crashing
    _replaced, availability, _recovery = roll()
    assert not availability.ok and roll.asked >= 3
    assert availability.reason.endswith("1 failed (TimeoutError: timed out)")


def test_a_failed_replacement_fails_the_roll_without_asking_the_doctor():
    roll = FakeRoll(replaced=False)
    replaced, availability, recovery = roll()
    assert not replaced.ok and availability.ok and roll.doctor_asked == []
    assert recovery == Check("roll doctor", False, "not asked: the replacement failed")


def test_a_doctor_that_does_not_pass_again_fails_the_roll_after_the_wait():
    roll = FakeRoll()
    roll.recovers_at = float("inf")
    *_, recovery = roll(recover_wait=20.0)
    assert roll.doctor_asked == [300.0, 305.0, 310.0, 315.0, 320.0]
    assert recovery.line() == "FAIL  roll doctor: still failing 20 s after the replacement: consul peers (3 peers)"


def export(*resources: tuple[str, str]) -> dict:
    prefix = "urn:pulumi:dev::hashistack::"
    return {
        "version": 3,
        "deployment": {"resources": [{"urn": f"{prefix}{t}::{n}", "type": t.rsplit("$", 1)[-1]} for t, n in resources]},
    }


LIBVIRT_SERVER_1 = "hashistack:libvirt:Nodes$libvirt:index/domain:Domain"
AWS_SERVER_1 = "hashistack:aws:Nodes$aws:ec2/instance:Instance"


def test_the_machine_of_server_1_is_found_by_type_and_name():
    state = export(
        ("hashistack:libvirt:Nodes$libvirt:index/volume:Volume", "cluster-server-1-disk"),
        (LIBVIRT_SERVER_1, "cluster-server-0"),
        (LIBVIRT_SERVER_1, "cluster-server-1"),
        (LIBVIRT_SERVER_1, "cluster-server-10"),
    )
    assert e2e.machine_urn(state) == f"urn:pulumi:dev::hashistack::{LIBVIRT_SERVER_1}::cluster-server-1"
    aws = export(
        ("hashistack:aws:Network$aws:ec2/networkInterface:NetworkInterface", "cluster-server-1"),
        ("hashistack:aws:Network$aws:ec2/eip:Eip", "cluster-server-1"),
        (AWS_SERVER_1, "cluster-server-1"),
    )
    assert e2e.machine_urn(aws) == f"urn:pulumi:dev::hashistack::{AWS_SERVER_1}::cluster-server-1"
    with pytest.raises(e2e.Failed, match=r"has 0 .* named cluster-server-1, expected 1: is the stack deployed"):
        e2e.machine_urn({"deployment": {}})


def test_the_real_roll_replaces_server_1_with_pulumi_up_and_reads_the_outputs_again(monkeypatch):
    ran, loaded = [], []
    monkeypatch.setattr(e2e, "pulumi_json", lambda stack, *command: export((LIBVIRT_SERVER_1, "cluster-server-1")))
    monkeypatch.setattr(e2e, "stack_outputs", lambda stack: loaded.append(stack) or {"apiEndpoint": "a"})
    monkeypatch.setattr(e2e.subprocess, "run", lambda argv, cwd: ran.append(argv) or type("R", (), {"returncode": 0})())
    monkeypatch.setattr(e2e.doctor, "diagnose", lambda outputs, stack: [Check("doctor", True, str(outputs))])

    def roll_server(replace, probe, doctor_checks):
        return [replace(), *doctor_checks()]

    monkeypatch.setattr(e2e, "roll_server", roll_server)
    checks = e2e.RealRunner().roll("dev")
    assert ran == [
        [
            str(ROOT / "scripts" / "pulumi.sh"),
            "dev",
            "up",
            "--yes",
            "--skip-preview",
            "--replace",
            f"urn:pulumi:dev::hashistack::{LIBVIRT_SERVER_1}::cluster-server-1",
        ]
    ]
    assert checks == [
        Check("roll replace cluster-server-1", True, "exit 0"),
        Check("doctor", True, "{'apiEndpoint': 'a'}"),
    ]
    assert loaded == ["dev", "dev"], "the outputs are read again after the replacement"


def test_the_real_runner_runs_the_commands_of_the_makefile(monkeypatch):
    ran = []
    monkeypatch.setattr(e2e.subprocess, "run", lambda argv, cwd: ran.append(argv) or type("R", (), {"returncode": 3})())
    runner = e2e.RealRunner("3.272.0")
    assert runner.check_host("dev") == [
        Check(
            "check-host",
            False,
            f"`{e2e.sys.executable} -m scripts.check_host --stack dev --pulumi-version 3.272.0` exited 3",
        )
    ]
    runner.up("dev")
    runner.destroy("dev")
    assert [argv[1:] for argv in ran[1:]] == [
        ["dev", "up", "--yes", "--skip-preview"],
        ["dev", "destroy", "--yes", "--skip-preview"],
    ]
    assert ran[1][0] == str(ROOT / "scripts" / "pulumi.sh")


def test_the_makefile_target_runs_the_script_with_keep_and_roll():
    makefile = (ROOT / "Makefile").read_text()
    target = re.search(r"^e2e: (.*)\n\t(.*)$", makefile, re.M)
    assert target, "the Makefile has an e2e target"
    assert target.group(1).startswith("prereqs $(VENV)/.installed ## ")
    assert target.group(2) == (
        "$(VENV)/bin/python -m scripts.e2e --stack $(STACK) --pulumi-version $(PULUMI_VERSION)"
        " $(if $(KEEP),--keep) $(if $(ROLL),--roll)"
    )
    assert re.search(r"^\.PHONY:.*\be2e\b", makefile, re.M)
