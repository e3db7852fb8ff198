"""ServerHealth: a resource whose creation waits until a (re)created server is healthy again.

It is the gate of the server chain (components/platform.py). A server counts as healthy when its
Consul agent answers over mutual TLS and, if the cluster already exists (another server reports a
leader), when Consul's autopilot lists it as a healthy voter. On the very first `up` no cluster exists
yet, since it forms only once `bootstrap_expect` servers are up, so the gate waits for the agent only.

The check is re-run whenever the machine behind it is replaced (its id is an input), and never
skips TLS verification: the cluster CA and the operator's client certificate are used throughout.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi.dynamic

from components.http_api import DeadlineExceeded, HttpsApi, Poller, TlsMaterial, Unreachable

CONSUL_HTTPS_PORT = 8501
DEFAULT_TIMEOUT_SECONDS = 20 * 60  # a first boot installs packages before Consul starts
POLL_SECONDS = 5.0


class ServerUnhealthyError(Exception):
    pass


def consul_api_factory(tls: TlsMaterial, token: str, port: int = CONSUL_HTTPS_PORT) -> Callable[[str], HttpsApi]:
    """address -> Consul's API on that server, over mutual TLS with the cluster CA."""
    return lambda address: HttpsApi(f"https://{address}:{port}", tls, headers={"X-Consul-Token": token})


def wait_until_healthy(
    consul: Callable[[str], HttpsApi], node_name: str, address: str, peers: Sequence[str], poller: Poller
) -> str:
    """Blocks until `node_name` at `address` is healthy; returns what was established."""
    node = consul(address)
    announced = []

    def attempt() -> tuple[bool, str]:
        leader = node.get("/v1/status/leader")
        if not leader.ok:
            return False, f"Consul at {node.base_url} answers {leader.status} (still starting?)"
        if not announced:
            poller.log(f"{node_name}: Consul answers at {node.base_url}")
            announced.append(True)
        if not (leader.body or any(_has_leader(consul, peer) for peer in peers)):
            return True, f"{node_name}: Consul answers; the cluster is still forming (first creation)"
        health = node.get("/v1/operator/autopilot/health")
        servers = health.body.get("Servers", []) if health.ok and isinstance(health.body, dict) else []
        server = next((s for s in servers if s.get("Name") == node_name), None)
        if server and server.get("Healthy") and server.get("Voter"):
            return True, f"{node_name}: healthy voter (leader {leader.body or 'elsewhere'})"
        if not health.ok:
            return False, f"autopilot health answers {health.status}: {health.body}"
        return False, f"autopilot reports {server}" if server else "not yet a member of the raft configuration"

    try:
        return poller.until(node_name, attempt)
    except DeadlineExceeded as error:
        raise ServerUnhealthyError(
            f"{node_name} is not healthy: {error}. The next servers were left as they are, so the quorum "
            f"holds. Look at the node (`journalctl -u consul`, /var/log/hashistack-bootstrap.log, "
            f"/var/log/cloud-init-output.log), fix the cause and run `pulumi up` again; it resumes with "
            f"this server."
        ) from None


def _has_leader(consul: Callable[[str], HttpsApi], address: str) -> bool:
    try:
        answer = consul(address).get("/v1/status/leader")
    except Unreachable:
        return False
    return answer.ok and bool(answer.body)


_INPUTS = ("node_name", "address", "peers", "machine_id", "ca_pem", "client_cert_pem", "client_key_pem", "token")
_SECRET_INPUTS = ["client_key_pem", "token"]


class _ServerHealthProvider(pulumi.dynamic.ResourceProvider):
    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        consul = consul_api_factory(
            TlsMaterial(props["ca_pem"], props["client_cert_pem"], props["client_key_pem"]), props["token"]
        )
        poller = Poller(DEFAULT_TIMEOUT_SECONDS, POLL_SECONDS)
        status = wait_until_healthy(consul, props["node_name"], props["address"], props["peers"], poller)
        return pulumi.dynamic.CreateResult(
            id_=f"{props['node_name']}@{props['machine_id']}", outs={**props, "status": status}
        )

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.DiffResult:
        # Only a new machine (or a moved one) needs the gate again; rotated credentials do not.
        replaces = [k for k in ("machine_id", "address", "node_name") if olds.get(k) != news.get(k)]
        return pulumi.dynamic.DiffResult(changes=bool(replaces), replaces=replaces, delete_before_replace=False)

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        pass


@dataclass(frozen=True)
class ServerHealthArgs:
    node_name: pulumi.Input[str]
    address: pulumi.Input[str]
    peers: pulumi.Input[Sequence[pulumi.Input[str]]]
    machine_id: pulumi.Input[str]
    """The machine's id; a new id (a replaced machine) re-runs the check."""
    ca_pem: pulumi.Input[str]
    client_cert_pem: pulumi.Input[str]
    client_key_pem: pulumi.Input[str]
    token: pulumi.Input[str]
    """A Consul token with operator:read (autopilot health)."""


class ServerHealth(pulumi.dynamic.Resource, module="hashistack", name="ServerHealth"):
    status: pulumi.Output[str]
    """What the check established."""

    def __init__(self, name: str, args: ServerHealthArgs, opts: pulumi.ResourceOptions | None = None):
        props = {key: getattr(args, key) for key in _INPUTS}
        super().__init__(
            _ServerHealthProvider(),
            name,
            {**props, "status": None},
            pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=_SECRET_INPUTS)),
        )
