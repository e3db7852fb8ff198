"""`make e2e STACK=dev`: deploy a stack for real, prove it works end to end, and tear it down.

    python -m scripts.e2e --stack dev [--keep] [--pulumi-version 3.272.0] [--report e2e-report.json]

Phases, in order, each timed: `check-host` (scripts/check_host.py for the stack: on aws it checks only
the CLI and packages), `up` (scripts/pulumi.sh <stack> up --yes --skip-preview), `doctor` (the checks of
`make doctor`, scripts/doctor.py), `checks` (the functional checks below), then `destroy` unless `--keep`.
One PASS/FAIL line per check on the terminal, and `e2e-report.json` with the stack, every phase (seconds,
verdict), every check (name, ok, reason) and when the run started and finished. The exit status is 1
when anything failed; a failed run never destroys the stack, so it can be looked at, and says how to
tear it down.

The functional checks, each a small function of the stack's outputs (`Endpoints`), TLS verified against
the cluster CA with the stack's own tokens, like `make doctor`:
  * the ingress routes `hello-docker` and `hello-java` by name and they answer 200;
  * `hello-vault` answers with the greeting the program seeded in Vault (read back with the operator
    token): workload identity -> Vault -> template works;
  * the count dashboard is served, and Consul's intentions allow count-dashboard -> count-api and deny
    the reverse and an outsider;
  * Prometheus has every expected scrape job, every target up;
  * Grafana's Prometheus data source passes Grafana's own health check;
  * on the nodes, over SSH (`sshCommands`): `consul.service.consul` resolves on a client and inside a
    container there, and Vault's audit log grows by an authenticated request.
The ingress is reached over plain HTTP with the service's name in the Host header, as the `appUrls`
output says: its 443 serves Traefik's self-signed default certificate, which nothing could verify.

With `--roll` (ROLL=1) a `roll` phase runs between `checks` and `destroy`: server-1 is replaced with
`scripts/pulumi.sh <stack> up --yes --skip-preview --replace <urn>` (the URN of its machine, from
`pulumi stack export`: `libvirt:index/domain:Domain` or `aws:ec2/instance:Instance` named
`cluster-server-1`) while a background poller asks hello-docker through the ingress every 2 s. The phase
passes when the replacement succeeds, no probe failed, and the checks of `make doctor` pass again; it
reports the probes, the failed ones, and the seconds from the start of the replacement until the doctor
passed. It runs only when every earlier phase passed.

Phases come from a runner object (`RealRunner` here), so the tests drive order, timing, keep, roll and
teardown without the Pulumi CLI.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from components.access.namespaces import KV_MOUNT
from components.dynamic.http_api import HttpsApi, Response, TlsMaterial
from scripts import doctor
from scripts.doctor import Check, Failed, Ports, _check, _expect_ok, _short
from scripts.stack_files import ROOT, pulumi_json, stack_outputs

REPORT = "e2e-report.json"

REQUIRED_OUTPUTS = (
    "apiEndpoint",
    "ingressEndpoint",
    "appUrls",
    "caCertPem",
    "operatorCertPem",
    "operatorKeyPem",
    "consulManagementToken",
    "vaultOperatorToken",
)
# The demo jobs' services the ingress must route by name (jobs/hello-docker.nomad.hcl, hello-java).
ROUTED = ("hello-docker", "hello-java")
# jobs/prometheus.nomad.hcl's scrape_configs: every one must have targets, all up.
SCRAPE_JOBS = ("nomad-servers", "nomad-clients", "consul-agent", "consul-services")
# jobs/countdash.nomad.hcl: the only upstream, from which the program derives the only allow intention.
MESH_ALLOWED = ("count-dashboard", "count-api")
# Pairs Consul must deny (default deny, components/workloads/deploy.py): the reverse direction, and a service
# outside the mesh calling into it.
MESH_DENIED = (("count-api", "count-dashboard"), ("hello-docker", "count-api"))
# The Prometheus data source's uid (jobs/grafana.nomad.hcl provisioning).
GRAFANA_DATASOURCE = "prometheus"
# --roll: the server replaced, the Pulumi types of its machine (components/platforms/{libvirt,aws}/nodes.py), the
# service asked through the ingress meanwhile and how often.
ROLLED = "cluster-server-1"
MACHINE_TYPES = ("libvirt:index/domain:Domain", "aws:ec2/instance:Instance")
ROLL_SERVICE = "hello-docker"
ROLL_INTERVAL = 2.0


@dataclass(frozen=True)
class Endpoints:
    """How the checks reach the cluster: from the stack's outputs; the tests point the ports at fakes."""

    outputs: dict[str, Any]
    ports: Ports = field(default_factory=Ports)
    ingress_port: int = 80
    timeout: float = 10.0

    def _tls(self, client_cert: bool = False) -> TlsMaterial:
        ca = self.outputs["caCertPem"]
        if client_cert:  # Consul's verify_incoming wants the operator's certificate (as in make doctor)
            return TlsMaterial(ca, self.outputs["operatorCertPem"], self.outputs["operatorKeyPem"])
        return TlsMaterial(ca)

    def consul(self) -> HttpsApi:
        base = f"https://{self.outputs['apiEndpoint']}:{self.ports.consul}"
        return HttpsApi(
            base, self._tls(client_cert=True), {"X-Consul-Token": self.outputs["consulManagementToken"]}, self.timeout
        )

    def vault(self) -> HttpsApi:
        base = f"https://{self.outputs['apiEndpoint']}:{self.ports.vault}"
        return HttpsApi(base, self._tls(), {"X-Vault-Token": self.outputs["vaultOperatorToken"]}, self.timeout)

    def ingress(self, service: str) -> HttpsApi:
        """The ingress, asked for `service` by name: the Host of its `appUrls` entry. Plain HTTP (see the
        module docstring); HttpsApi sends http:// URLs without TLS, and urllib keeps a given Host."""
        url = (self.outputs.get("appUrls") or {}).get(service)
        if not url:
            raise Failed(f"appUrls has no {service}: is its job in the stack's `jobs` setting?")
        host = urllib.parse.urlsplit(url).hostname
        base = f"http://{self.outputs['ingressEndpoint']}:{self.ingress_port}"
        return HttpsApi(base, self._tls(), {"Host": host}, self.timeout)


def _host(endpoints: Endpoints, service: str) -> str:
    return endpoints.ingress(service).headers["Host"]


def _ingress_body(service: str, path: str, answer: Response) -> Any:
    """The body of a 2xx answer through the ingress; anything else fails with its likely cause."""
    if answer.status == 404 and path == "/":
        raise Failed(f"the ingress has no route for {service} (404): is it registered in Consul and healthy?")
    if answer.status == 403 and isinstance(answer.body, dict):  # the service's own JSON refusal
        raise Failed(f"{service} refused the request (403): {_short(answer.body.get('message', answer.body))}")
    if answer.status == 403:  # Traefik's ipallowlist answers a bare "Forbidden"
        raise Failed(
            f"the ingress refused {service} (403, Traefik's admin-only middleware): run from the libvirt "
            "host or a source in apiAllowedCidrs"
        )
    if answer.status in (502, 503, 504):
        raise Failed(f"the ingress routes {service} but its backend did not answer ({answer.status})")
    return _expect_ok(answer, f"{service} {path} through the ingress")


def _through_ingress(endpoints: Endpoints, service: str, path: str) -> Any:
    return _ingress_body(service, path, endpoints.ingress(service).get(path))


def routed(endpoints: Endpoints, service: str) -> Callable[[], str]:
    def probe() -> str:
        _through_ingress(endpoints, service, "/")
        return f"{_host(endpoints, service)} answered 200 through the ingress"

    return probe


def vault_greeting(endpoints: Endpoints) -> Callable[[], str]:
    """The greeting hello-vault serves is the one in Vault. The values are secret: never in a reason."""

    def probe() -> str:
        namespace = endpoints.outputs.get("appsNamespace") or "apps"
        path = f"/v1/{KV_MOUNT}/data/{namespace}/hello-vault/config"
        secret = _expect_ok(endpoints.vault().get(path), f"Vault GET {path}")
        greeting = ((secret or {}).get("data") or {}).get("data", {}).get("greeting")
        if not greeting:
            raise Failed(f"Vault has no greeting at {path}: the program seeds it (components/workloads/deploy.py)")
        served = _through_ingress(endpoints, "hello-vault", "/")
        text = served if isinstance(served, str) else json.dumps(served)
        if text.strip() != greeting:
            raise Failed(
                f"hello-vault answered {len(text.strip())} characters, not the {len(greeting)}-character "
                "greeting in Vault: is its template rendering (workload identity, Vault role, policy)?"
            )
        return f"hello-vault serves the greeting read back from Vault {path}"

    return probe


def intentions(endpoints: Endpoints) -> Callable[[], str]:
    """Consul's GET /v1/connect/intentions/check answers {"Allowed": bool} for one source and destination."""

    def allowed(source: str, destination: str) -> bool:
        query = urllib.parse.urlencode({"source": source, "destination": destination})
        answer = endpoints.consul().get(f"/v1/connect/intentions/check?{query}")
        body = _expect_ok(answer, f"Consul intention check {source} -> {destination}")
        if not isinstance(body, dict) or "Allowed" not in body:
            raise Failed(f"Consul's intention check answered {_short(body)}, expected {{'Allowed': …}}")
        return bool(body["Allowed"])

    def probe() -> str:
        wrong = [] if allowed(*MESH_ALLOWED) else [f"{' -> '.join(MESH_ALLOWED)} denied"]
        wrong += [
            f"{source} -> {destination} allowed" for source, destination in MESH_DENIED if allowed(source, destination)
        ]
        if wrong:
            raise Failed(f"intentions wrong: {', '.join(wrong)}")
        denied = ", ".join(f"{s} -> {d}" for s, d in MESH_DENIED)
        return f"{' -> '.join(MESH_ALLOWED)} allowed; {denied} denied"

    return probe


def prometheus_targets(endpoints: Endpoints) -> Callable[[], str]:
    """GET /api/v1/targets: {"status": "success", "data": {"activeTargets": [{"labels": {"job": …},
    "health": "up"|"down"|"unknown", "lastError": …, "scrapeUrl": …}], "droppedTargets": […]}}."""

    def probe() -> str:
        body = _through_ingress(endpoints, "prometheus", "/api/v1/targets?state=active")
        if not isinstance(body, dict) or body.get("status") != "success":
            raise Failed(f"Prometheus /api/v1/targets answered {_short(body)}")
        targets = (body.get("data") or {}).get("activeTargets") or []
        by_job: dict[str, list[dict[str, Any]]] = {}
        for target in targets:
            by_job.setdefault((target.get("labels") or {}).get("job", target.get("scrapePool", "?")), []).append(target)
        missing = [job for job in SCRAPE_JOBS if job not in by_job]
        down = [
            f"{job} {target.get('scrapeUrl', '?')} {target.get('health')}"
            + (f" ({_short(target['lastError'], 80)})" if target.get("lastError") else "")
            for job in SCRAPE_JOBS
            for target in by_job.get(job, [])
            if target.get("health") != "up"
        ]
        if missing or down:
            problems = ([f"no targets for {', '.join(missing)}"] if missing else []) + down
            raise Failed("; ".join(problems))
        counts = ", ".join(f"{job} {len(by_job[job])}" for job in SCRAPE_JOBS)
        return f"every target up ({counts})"

    return probe


def grafana_datasource(endpoints: Endpoints) -> Callable[[], str]:
    """GET /api/datasources/uid/<uid>/health as the anonymous viewer: 200 {"status": "OK", "message": …},
    or 400 {"status": "ERROR", "message": …} when the data source fails its check."""

    def probe() -> str:
        path = f"/api/datasources/uid/{GRAFANA_DATASOURCE}/health"
        answer = endpoints.ingress("grafana").get(path)
        if answer.status == 400 and isinstance(answer.body, dict) and answer.body.get("status"):
            raise Failed(f"data source {GRAFANA_DATASOURCE}: {answer.body['status']}: {answer.body.get('message', '')}")
        body = _ingress_body("grafana", path, answer)
        if not isinstance(body, dict) or body.get("status") != "OK":
            raise Failed(f"Grafana {path} answered {_short(body)}")
        return f"data source {GRAFANA_DATASOURCE}: {body.get('message') or 'OK'}"

    return probe


def functional_checks(
    endpoints: Endpoints,
    wait: float = 0.0,
    interval: float = 5.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> list[Check]:
    """Every functional check; one that fails is asked again every `interval` s for up to `wait` s, since
    right after `up` a scrape or a route can still be on its way (Prometheus reports "unknown" until its
    first scrape; Traefik polls the Consul catalog)."""
    missing = [name for name in REQUIRED_OUTPUTS if not endpoints.outputs.get(name)]
    if missing:
        raise SystemExit(f"the stack lacks the outputs {', '.join(missing)}: is it deployed (`make up`)?")
    probes = [(f"ingress {name}", routed(endpoints, name)) for name in ROUTED]
    probes += [
        ("vault greeting", vault_greeting(endpoints)),
        ("countdash dashboard", routed(endpoints, "count-dashboard")),
        ("countdash intentions", intentions(endpoints)),
        ("prometheus targets", prometheus_targets(endpoints)),
        ("grafana datasource", grafana_datasource(endpoints)),
    ]
    deadline = clock() + wait
    checks = []
    for name, probe in probes:
        check = _check(name, probe)
        while not check.ok and clock() < deadline:
            sleep(interval)
            check = _check(name, probe)
        checks.append(check)
    return checks


# -- on the nodes, over SSH ----------------------------------------------------------------------------
# A pinned busybox (an exact version tag, as the job rules ask of jobs) for the in-container lookup.
PROBE_IMAGE = "busybox:1.36.1"
CONSUL_NAME = "consul.service.consul"
# Where each Vault server writes its audit device (components/access/grants.py VAULT_AUDIT_FILE).
AUDIT_FILE = "/var/log/vault/audit.log"

# (node, command) -> (exit status, standard output); the real one is ssh, the tests' a fake.
Shell = Callable[[str, str], tuple[int, str]]


def ssh_shell(outputs: dict[str, Any], timeout: float = 60.0) -> Shell:
    """Runs a command on a node as its `sshCommands` output says (`ssh ubuntu@<address>`): batch
    mode, so a missing key fails at once instead of asking for a password."""
    commands = outputs.get("sshCommands") or {}

    def run(node: str, command: str) -> tuple[int, str]:
        if node not in commands:
            raise Failed(f"no ssh command for {node} in the stack's outputs (sshCommands)")
        destination = commands[node].split()[-1]
        argv = ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=accept-new", "-o", "ConnectTimeout=10"]
        try:
            done = subprocess.run([*argv, destination, command], capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise Failed(f"ssh {destination} did not finish in {timeout:g} s") from None
        return done.returncode, done.stdout + done.stderr

    return run


def _client(outputs: dict[str, Any]) -> str | None:
    """A client with an SSH address (libvirt's client-0); AWS's autoscaled clients have none."""
    return next((node for node in sorted(outputs.get("sshCommands") or {}) if node.startswith("client")), None)


def consul_dns(shell: Shell, node: str) -> Callable[[], str]:
    """`*.service.consul` resolves on the node: systemd-resolved forwards the domain to Consul DNS
    (cloudinit/resolved-consul.conf.j2)."""

    def probe() -> str:
        status, out = shell(node, f"resolvectl query {CONSUL_NAME}")
        if status != 0:
            raise Failed(f"resolvectl query {CONSUL_NAME} on {node} exited {status}: {_short(out)}")
        return f"{CONSUL_NAME} resolves on {node}: {_short(out.splitlines()[0] if out else '')}"

    return probe


def container_dns(shell: Shell, node: str) -> Callable[[], str]:
    """And inside a container on a client: Docker's DNS is the node's address, where resolved also
    listens (DNSStubListenerExtra), so containers resolve `*.consul` too (README, What a node gets)."""

    def probe() -> str:
        status, out = shell(node, f"sudo docker run --rm {PROBE_IMAGE} nslookup {CONSUL_NAME}")
        if status != 0 or "Address" not in out.split(CONSUL_NAME, 1)[-1]:
            raise Failed(f"nslookup {CONSUL_NAME} in a container on {node} exited {status}: {_short(out)}")
        return f"{CONSUL_NAME} resolves inside a container on {node}"

    return probe


def vault_audit(endpoints: Endpoints, shell: Shell, server: str = "server-0") -> Callable[[], str]:
    """The file audit device is enabled (GET /v1/sys/audit, which the operator's admin policy may read),
    and an authenticated request lands in the server's audit log: its line count grows."""

    def count() -> int:
        status, out = shell(server, f"sudo wc -l < {AUDIT_FILE}")
        if status != 0 or not out.strip().isdigit():
            raise Failed(f"cannot read {AUDIT_FILE} on {server}: {_short(out)}")
        return int(out.strip())

    def probe() -> str:
        vault = endpoints.vault()
        devices = _expect_ok(vault.get("/v1/sys/audit"), "Vault's audit devices")
        file_devices = [
            d for d in (devices.get("data") or devices).values() if isinstance(d, dict) and d.get("type") == "file"
        ]
        if not file_devices:
            raise Failed(f"no file audit device enabled: {_short(devices)}")
        before = count()
        _expect_ok(vault.get("/v1/auth/token/lookup-self"), "a token lookup")
        after = count()
        if after <= before:
            raise Failed(f"{AUDIT_FILE} on {server} did not grow ({before} lines before a request, {after} after)")
        return f"file audit device on; {AUDIT_FILE} on {server} grew by {after - before} line(s) for one request"

    return probe


def node_checks(endpoints: Endpoints, shell: Shell) -> list[Check]:
    """The checks that need a shell on the nodes: DNS on a client (or a server where no client has an
    SSH address) and in a container, and Vault's audit log."""
    client = _client(endpoints.outputs)
    checks = [_check("consul dns on a node", consul_dns(shell, client or "server-0"))]
    if client:
        checks.append(_check("consul dns in a container", container_dns(shell, client)))
    else:
        checks.append(Check("consul dns in a container", True, "not asked: no client has an ssh address (aws)"))
    checks.append(_check("vault audit log", vault_audit(endpoints, shell)))
    return checks


# -- rolling a server ---------------------------------------------------------------------------------


def machine_urn(export: dict[str, Any], name: str = ROLLED) -> str:
    """The URN of `name`'s machine in a `pulumi stack export` document ({"deployment": {"resources":
    [{"urn", "type", …}]}}); a URN ends with `::<name>`. Several resources share the name (on AWS the
    server's network interface and Elastic IP): the type picks the machine."""
    resources = ((export or {}).get("deployment") or {}).get("resources") or []
    found = [
        r["urn"]
        for r in resources
        if r.get("type") in MACHINE_TYPES and str(r.get("urn", "")).rsplit("::", 1)[-1] == name
    ]
    if len(found) != 1:
        kinds = " or ".join(MACHINE_TYPES)
        raise Failed(f"the state has {len(found)} {kinds} named {name}, expected 1: is the stack deployed?")
    return found[0]


class Poller:
    """Asks `probe` every `interval` s in a thread of its own, from start() to stop(); counts the answers
    and keeps the first few failures' reasons."""

    def __init__(self, probe: Callable[[], Check], interval: float = ROLL_INTERVAL):
        self.probe, self.interval = probe, interval
        self.asked = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="e2e-roll-poller", daemon=True)

    def _run(self) -> None:
        start = time.monotonic()
        while not self._stop.is_set():
            try:
                check = self.probe()
            except Exception as error:  # a probe that crashed is a failed probe, not a dead poller
                check = Check("probe", False, f"{error.__class__.__name__}: {error}")
            self.asked += 1
            if not check.ok:
                self.failures.append(check.reason)
            # A steady pace: a slow answer does not push the later probes back.
            self._stop.wait(max(0.0, start + self.asked * self.interval - time.monotonic()))

    def start(self) -> Poller:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def failed(self) -> int:
        return len(self.failures)


def roll_server(
    replace: Callable[[], Check],
    probe: Callable[[], Check],
    doctor_checks: Callable[[], list[Check]],
    interval: float = ROLL_INTERVAL,
    recover_wait: float = 600.0,
    recover_interval: float = 5.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> list[Check]:
    """Replaces a server (`replace`) while `probe` is asked every `interval` s, then asks the doctor
    every `recover_interval` s for up to `recover_wait` s until all its checks pass; the poller keeps
    running until then. Three checks: the replacement, the availability (no failed probe), the recovery
    (seconds from the start of the replacement until the doctor passed)."""
    poller = Poller(probe, interval).start()
    begin = clock()
    try:
        replaced = replace()
        recovered: float | None = None
        failing: list[Check] = []
        if replaced.ok:
            deadline = clock() + recover_wait
            while True:
                failing = [check for check in doctor_checks() if not check.ok]
                if not failing:
                    recovered = round(clock() - begin, 1)
                    break
                if clock() >= deadline:
                    break
                sleep(recover_interval)
    finally:
        poller.stop()
    shown = "; ".join(dict.fromkeys(poller.failures[:3]))
    availability = Check(
        f"roll {ROLL_SERVICE} availability",
        poller.asked > 0 and poller.failed == 0,
        f"{poller.asked} probes every {interval:g} s, {poller.failed} failed" + (f" ({shown})" if shown else ""),
    )
    if not replaced.ok:
        recovery = Check("roll doctor", False, "not asked: the replacement failed")
    elif recovered is None:
        names = ", ".join(f"{c.name} ({_short(c.reason, 80)})" for c in failing)
        recovery = Check("roll doctor", False, f"still failing {recover_wait:g} s after the replacement: {names}")
    else:
        recovery = Check("roll doctor", True, f"every check passes {recovered:g} s after the replacement started")
    return [replaced, availability, recovery]


# -- the phases ---------------------------------------------------------------------------------------


class Runner(Protocol):
    """What the phases do; each returns the checks it made (a command is one check: its exit status)."""

    def check_host(self, stack: str) -> list[Check]: ...
    def up(self, stack: str) -> list[Check]: ...
    def doctor(self, stack: str) -> list[Check]: ...
    def checks(self, stack: str) -> list[Check]: ...
    def roll(self, stack: str) -> list[Check]: ...
    def destroy(self, stack: str) -> list[Check]: ...


def _command(name: str, argv: Sequence[str]) -> list[Check]:
    """Runs a command with the terminal attached (pulumi's progress stays visible): one check."""
    code = subprocess.run(list(argv), cwd=ROOT).returncode
    return [Check(name, code == 0, "exit 0" if code == 0 else f"`{' '.join(argv)}` exited {code}")]


@dataclass
class RealRunner:
    pulumi_version: str | None = None
    wait: float = 300.0
    """How long a functional check may take to pass after `up`."""
    _outputs: dict[str, Any] | None = field(default=None, repr=False)

    def check_host(self, stack: str) -> list[Check]:
        version = ["--pulumi-version", self.pulumi_version] if self.pulumi_version else []
        return _command("check-host", [sys.executable, "-m", "scripts.check_host", "--stack", stack, *version])

    def up(self, stack: str) -> list[Check]:
        return _command("up", [str(ROOT / "scripts" / "pulumi.sh"), stack, "up", "--yes", "--skip-preview"])

    def outputs(self, stack: str) -> dict[str, Any]:
        if self._outputs is None:
            self._outputs = stack_outputs(stack)
        return self._outputs

    def doctor(self, stack: str) -> list[Check]:
        return doctor.diagnose(self.outputs(stack), stack)

    def checks(self, stack: str) -> list[Check]:
        endpoints = Endpoints(self.outputs(stack))
        return [
            *functional_checks(endpoints, wait=self.wait),
            *node_checks(endpoints, ssh_shell(self.outputs(stack))),
        ]

    def roll(self, stack: str) -> list[Check]:
        """Replaces server-1's machine; the Endpoints and the doctor read the outputs again afterwards
        (a replaced machine may have new addresses)."""
        urn = machine_urn(pulumi_json(stack, "stack", "export"))
        endpoints = Endpoints(self.outputs(stack), timeout=5.0)
        pulumi = [str(ROOT / "scripts" / "pulumi.sh"), stack, "up", "--yes", "--skip-preview", "--replace", urn]

        def replace() -> Check:
            [check] = _command(f"roll replace {ROLLED}", pulumi)
            self._outputs = None
            return check

        return roll_server(
            replace,
            lambda: _check(f"{ROLL_SERVICE} through the ingress", routed(endpoints, ROLL_SERVICE)),
            lambda: doctor.diagnose(self.outputs(stack), stack),
        )

    def destroy(self, stack: str) -> list[Check]:
        return _command("destroy", [str(ROOT / "scripts" / "pulumi.sh"), stack, "destroy", "--yes", "--skip-preview"])


@dataclass(frozen=True)
class Phase:
    name: str
    seconds: float
    ok: bool
    checks: list[Check]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def run(
    runner: Runner,
    stack: str,
    keep: bool = False,
    report: Path = Path(REPORT),
    roll: bool = False,
    clock: Callable[[], float] = time.monotonic,
    now: Callable[[], str] = _now,
    out: Callable[[str], None] = print,
) -> int:
    """The phases in order; stops at the first failed phase before `checks`, runs `roll` (when asked)
    and `destroy` (unless `keep`) only when everything before passed. Writes the report; returns the exit
    status."""
    started, phases = now(), []

    def phase(name: str, step: Callable[[str], list[Check]]) -> bool:
        out(f"==> {name}")
        begin = clock()
        try:
            checks = step(stack)
        except SystemExit as stop:  # outputs missing or `pulumi stack output` failed: the reason is its text
            checks = [Check(name, False, str(stop.code))]
        seconds = round(clock() - begin, 1)
        ok = all(check.ok for check in checks)
        for check in checks:
            out(check.line())
        out(f"<== {name}: {'PASS' if ok else 'FAIL'} in {seconds} s")
        phases.append(Phase(name, seconds, ok, checks))
        return ok

    ok = phase("check-host", runner.check_host) and phase("up", runner.up)
    if ok:
        # The functional checks run even when the doctor found a problem: both lists help find the cause.
        ok = phase("doctor", runner.doctor) & phase("checks", runner.checks)
    if ok and roll:
        ok = phase("roll", runner.roll)
    if ok and not keep:
        ok = phase("destroy", runner.destroy)
    failed = [check for p in phases for check in p.checks if not check.ok]
    document = {
        "stack": stack,
        "started": started,
        "finished": now(),
        "ok": ok,
        "phases": [{"name": p.name, "seconds": p.seconds, "verdict": "PASS" if p.ok else "FAIL"} for p in phases],
        "checks": [{"phase": p.name, "name": c.name, "ok": c.ok, "reason": c.reason} for p in phases for c in p.checks],
    }
    report.write_text(json.dumps(document, indent=2) + "\n")
    out(f"e2e: {sum(len(p.checks) for p in phases)} checks, {len(failed)} failed; report in {report}")
    deployed = any(p.name == "up" for p in phases) and not any(p.name == "destroy" and p.ok for p in phases)
    if deployed:
        why = "kept (--keep)" if ok else "kept for inspection"
        out(f"e2e: stack {stack} {why}; tear it down with `make destroy STACK={stack}`")
    return 0 if ok else 1


def main(argv: list[str] | None = None, runner: Runner | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stack", default="dev")
    parser.add_argument("--keep", action="store_true", help="leave the stack up after a passing run")
    parser.add_argument(
        "--roll", action="store_true", help="after the checks, replace server-1 while the ingress is asked every 2 s"
    )
    parser.add_argument("--pulumi-version", help="passed to check-host (the Makefile's PULUMI_VERSION)")
    parser.add_argument("--report", type=Path, default=Path(REPORT))
    args = parser.parse_args(argv)
    return run(
        runner or RealRunner(args.pulumi_version), args.stack, keep=args.keep, report=args.report, roll=args.roll
    )


if __name__ == "__main__":
    sys.exit(main())
