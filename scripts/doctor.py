"""`make doctor STACK=dev`: is the deployed cluster healthy? One line per check, PASS or FAIL with the
reason; exits 1 when any check fails.

Reads the stack's outputs (`pulumi stack output --json --show-secrets`, through scripts/pulumi.sh) and
asks the cluster's APIs, TLS always verified against the cluster CA (Consul with the operator's client
certificate): Consul and Nomad have a leader and every server as a raft peer; every Vault server is
initialised and unsealed, Vault has an active node and every server as a raft voter; an anonymous request
is refused by each API while the stack's own tokens are accepted; and every Nomad job is running.
"""

from __future__ import annotations

import argparse
import ssl
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from components.dynamic.http_api import HttpsApi, Response, TlsMaterial, Unreachable
from scripts.stack_files import stack_outputs

REQUIRED_OUTPUTS = (
    "apiEndpoint",
    "serverAddresses",
    "caCertPem",
    "operatorCertPem",
    "operatorKeyPem",
    "consulManagementToken",
    "nomadBootstrapToken",
    "vaultOperatorToken",
)


@dataclass(frozen=True)
class Ports:
    """The APIs' ports; the tests serve every API of one kind on one port of 127.0.0.x."""

    consul: int = 8501
    nomad: int = 4646
    vault: int = 8200


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    reason: str

    def line(self) -> str:
        return f"{'PASS' if self.ok else 'FAIL'}  {self.name}: {self.reason}"


class Failed(Exception):
    """A check's verdict with its reason."""


def _check(name: str, probe: Callable[[], str]) -> Check:
    """Runs one probe; its answer is the PASS reason, a Failed or an unreachable API the FAIL reason."""
    try:
        return Check(name, True, probe())
    except Failed as failure:
        return Check(name, False, str(failure))
    except Unreachable as error:
        return Check(name, False, f"no answer: {error}")
    except ssl.SSLError as error:
        return Check(name, False, f"TLS failed ({error.__class__.__name__}: {error}): is this the cluster's CA?")


def _expect_ok(answer: Response, what: str) -> Any:
    if not answer.ok:
        raise Failed(f"{what} answered {answer.status}: {_short(answer.body)}")
    return answer.body


def _short(body: Any, limit: int = 160) -> str:
    text = body if isinstance(body, str) else repr(body)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _leader(api: HttpsApi, product: str) -> Callable[[], str]:
    def probe() -> str:
        answer = api.get("/v1/status/leader")
        # Consul answers "" without a leader; Nomad forwards to it and answers 500 "No cluster
        # leader" (tests/upstream.py consul_leader, nomad_no_leader).
        nomad_without = answer.status == 500 and "No cluster leader" in str(answer.body)
        if nomad_without or (answer.ok and not answer.body):
            raise Failed(f"no {product} leader (is a quorum of servers up?)")
        return f"leader {_expect_ok(answer, f'{product} /v1/status/leader')}"

    return probe


def _peers(api: HttpsApi, product: str, servers: int) -> Callable[[], str]:
    def probe() -> str:
        peers = _expect_ok(api.get("/v1/status/peers"), f"{product} /v1/status/peers") or []
        if len(peers) != servers:
            raise Failed(f"{len(peers)} raft peers, expected {servers}: {', '.join(peers) or 'none'}")
        return f"{len(peers)} of {servers} servers are raft peers"

    return probe


def _refuses_anonymous(api: HttpsApi, product: str, path: str) -> Callable[[], str]:
    def probe() -> str:
        answer = api.get(path)
        if answer.status == 403:
            return f"GET {path} without a token: 403"
        if answer.ok:
            raise Failed(f"GET {path} without a token answered {answer.status}: {product}'s ACLs are not enforced")
        raise Failed(f"GET {path} without a token answered {answer.status}, expected 403: {_short(answer.body)}")

    return probe


def _accepts_token(api: HttpsApi, path: str, headers: dict[str, str], what: str) -> Callable[[], str]:
    def probe() -> str:
        answer = api.get(path, headers=headers)
        if answer.status == 403:
            raise Failed(f"the stack's {what} is refused (403): was it revoked or the cluster rebuilt?")
        _expect_ok(answer, f"GET {path}")
        return f"the stack's {what} is accepted"

    return probe


def _vault_seal(api: HttpsApi, stack: str) -> Callable[[], str]:
    def probe() -> str:
        status = _expect_ok(api.get("/v1/sys/seal-status"), "/v1/sys/seal-status")
        if not status.get("initialized"):
            raise Failed("not initialised: run `make up` (its Vault init step) or see docs/operations.md")
        if status.get("sealed"):
            progress = f"{status.get('progress', 0)}/{status.get('t', '?')} key shares given"
            way_out = (
                f"run `make unseal STACK={stack}`"
                if status.get("type") == "shamir"
                else "auto-unseal failed: check the node's Vault log and its access to the KMS key"
            )
            raise Failed(f"sealed ({status.get('type', 'unknown')} seal, {progress}): {way_out}")
        return f"unsealed ({status.get('type', 'unknown')} seal)"

    return probe


def _vault_leader(api: HttpsApi) -> Callable[[], str]:
    def probe() -> str:
        leader = _expect_ok(api.get("/v1/sys/leader"), "/v1/sys/leader")
        if not leader.get("leader_address"):
            raise Failed("no active Vault node (are a quorum of servers unsealed?)")
        return f"active node {leader['leader_address']}"

    return probe


def _vault_voters(api: HttpsApi, token: str, servers: int) -> Callable[[], str]:
    def probe() -> str:
        answer = api.get("/v1/sys/storage/raft/configuration", headers={"X-Vault-Token": token})
        body = _expect_ok(answer, "/v1/sys/storage/raft/configuration")
        members = (body.get("data") or {}).get("config", {}).get("servers") or []
        voters = [m.get("node_id", "?") for m in members if m.get("voter")]
        if len(voters) != servers:
            raise Failed(f"{len(voters)} raft voters, expected {servers}: {', '.join(voters) or 'none'}")
        return f"{len(voters)} of {servers} servers are raft voters"

    return probe


def _nomad_jobs(api: HttpsApi, token: str) -> Callable[[], str]:
    def probe() -> str:
        jobs = _expect_ok(
            api.get("/v1/jobs?namespace=*", headers={"X-Nomad-Token": token}), "Nomad /v1/jobs?namespace=*"
        )
        states = [(f"{job.get('Namespace', 'default')}/{job['ID']}", _job_state(job)) for job in jobs]
        stuck = [f"{name} ({state})" for name, state in states if state]
        if stuck:
            raise Failed(f"{len(stuck)} of {len(jobs)} jobs not running: {', '.join(stuck)}")
        return f"{len(jobs)} jobs running" if jobs else "no job registered"

    return probe


def _job_state(job: dict[str, Any]) -> str:
    """What is wrong with a job, or '' when it runs (or, for a batch job, finished without failures)."""
    status = job.get("Status")
    if job.get("Stop"):
        return f"stopped, {status}"
    if status == "running":
        return ""
    summary = (job.get("JobSummary") or {}).get("Summary") or {}
    failed = sum(group.get("Failed", 0) + group.get("Lost", 0) for group in summary.values())
    if job.get("Type") in ("batch", "sysbatch") and status == "dead" and not failed:
        return ""
    return f"{status}, {failed} allocations failed or lost" if failed else str(status)


def diagnose(outputs: dict[str, Any], stack: str, ports: Ports = Ports(), timeout: float = 10.0) -> list[Check]:
    missing = [name for name in REQUIRED_OUTPUTS if not outputs.get(name)]
    if missing:
        raise SystemExit(f"stack {stack} lacks the outputs {', '.join(missing)}: is it deployed (`make up`)?")
    ca = outputs["caCertPem"]
    endpoint, servers = outputs["apiEndpoint"], dict(outputs["serverAddresses"])
    operator = TlsMaterial(ca, outputs["operatorCertPem"], outputs["operatorKeyPem"])
    consul = HttpsApi(f"https://{endpoint}:{ports.consul}", operator, timeout=timeout)
    nomad = HttpsApi(f"https://{endpoint}:{ports.nomad}", TlsMaterial(ca), timeout=timeout)
    vault = HttpsApi(f"https://{endpoint}:{ports.vault}", TlsMaterial(ca), timeout=timeout)

    checks = [
        _check("consul leader", _leader(consul, "Consul")),
        _check("consul peers", _peers(consul, "Consul", len(servers))),
        _check("nomad leader", _leader(nomad, "Nomad")),
        _check("nomad peers", _peers(nomad, "Nomad", len(servers))),
    ]
    for server, address in servers.items():
        api = HttpsApi(f"https://{address}:{ports.vault}", TlsMaterial(ca), timeout=timeout)
        checks.append(_check(f"vault seal {server}", _vault_seal(api, stack)))
    checks += [
        _check("vault leader", _vault_leader(vault)),
        _check("vault peers", _vault_voters(vault, outputs["vaultOperatorToken"], len(servers))),
        _check("consul acl", _refuses_anonymous(consul, "Consul", "/v1/acl/tokens")),
        _check("nomad acl", _refuses_anonymous(nomad, "Nomad", "/v1/jobs")),
        _check("vault acl", _refuses_anonymous(vault, "Vault", "/v1/sys/policies/acl")),
        _check(
            "consul token",
            _accepts_token(
                consul,
                "/v1/acl/token/self",
                {"X-Consul-Token": outputs["consulManagementToken"]},
                "Consul management token",
            ),
        ),
        _check(
            "nomad token",
            _accepts_token(
                nomad, "/v1/acl/token/self", {"X-Nomad-Token": outputs["nomadBootstrapToken"]}, "Nomad management token"
            ),
        ),
        _check(
            "vault token",
            _accepts_token(
                vault,
                "/v1/auth/token/lookup-self",
                {"X-Vault-Token": outputs["vaultOperatorToken"]},
                "Vault operator token",
            ),
        ),
        _check("nomad jobs", _nomad_jobs(nomad, outputs["nomadBootstrapToken"])),
    ]
    return checks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stack", default="dev")
    args = parser.parse_args(argv)
    checks = diagnose(stack_outputs(args.stack), args.stack)
    print("\n".join(check.line() for check in checks))
    failed = sum(not check.ok for check in checks)
    print(f"doctor: {len(checks)} checks, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
