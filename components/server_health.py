"""ServerHealth: a resource whose creation waits until a (re)created server is healthy again.

It is the gate of the server chain (components/platform.py). A server counts as healthy when all
three of its raft members are back: Consul answers over mutual TLS and, once its cluster exists, is a
healthy voter; Vault is unsealed (the gate unseals it with the Shamir keys, or waits for auto-unseal)
and a healthy voter of Vault's raft; Nomad, once its cluster exists with ACLs bootstrapped, is a
healthy voter. On the very first `up` Consul's and Nomad's clusters form only once
`bootstrap_expect` servers run, so their gates then wait for the agents to answer; Vault is
initialised on server-0 before its gate (components/platform.py), so every gate waits for Vault.

The check is re-run whenever the machine behind it is replaced (its id is an input), and never
skips TLS verification: the cluster CA and the operator's client certificate are used throughout.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi.dynamic

from components.bootstrap_steps import vault_unseal
from components.http_api import DeadlineExceeded, HttpsApi, Poller, TlsMaterial, Unreachable

CONSUL_HTTPS_PORT, NOMAD_HTTPS_PORT, VAULT_HTTPS_PORT = 8501, 4646, 8200
DEFAULT_TIMEOUT_SECONDS = 20 * 60  # a first boot installs packages before Consul starts
POLL_SECONDS = 5.0


class ServerUnhealthyError(Exception):
    pass


@dataclass(frozen=True)
class ServerApis:
    """address -> each agent's API on that server, TLS verified against the cluster CA."""

    consul: Callable[[str], HttpsApi]
    nomad: Callable[[str], HttpsApi]
    vault: Callable[[str], HttpsApi]


def server_apis(
    tls: TlsMaterial,
    consul_token: str,
    nomad_token: str,
    vault_token: str,
    ports: tuple[int, int, int] = (CONSUL_HTTPS_PORT, NOMAD_HTTPS_PORT, VAULT_HTTPS_PORT),
) -> ServerApis:
    consul_port, nomad_port, vault_port = ports
    ca_only = TlsMaterial(tls.ca_pem)  # Nomad and Vault do not ask for client certificates
    return ServerApis(
        consul=lambda a: HttpsApi(f"https://{a}:{consul_port}", tls, headers={"X-Consul-Token": consul_token}),
        nomad=lambda a: HttpsApi(f"https://{a}:{nomad_port}", ca_only, headers={"X-Nomad-Token": nomad_token}),
        vault=lambda a: HttpsApi(f"https://{a}:{vault_port}", ca_only, headers={"X-Vault-Token": vault_token}),
    )


def _has_leader(api: HttpsApi) -> bool:
    try:
        answer = api.get("/v1/status/leader")
    except Unreachable:
        return False
    return answer.ok and bool(answer.body)


def _autopilot_voter(
    product: str,
    api_for: Callable[[str], HttpsApi],
    node_name: str,
    address: str,
    peers: Sequence[str],
    server_name: Callable[[str], str] = lambda name: name,
    not_formed: Callable[[HttpsApi], str | None] = lambda _node: None,
) -> Callable[[], tuple[bool, str]]:
    """Consul and Nomad alike: the agent answers and, once its cluster exists (a leader anywhere,
    and whatever `not_formed` requires), autopilot lists this server as a healthy voter."""
    node = api_for(address)

    def attempt() -> tuple[bool, str]:
        leader = node.get("/v1/status/leader")
        if not leader.ok:
            return False, f"{product} at {node.base_url} answers {leader.status} (still starting?)"
        if not (leader.body or any(_has_leader(api_for(peer)) for peer in peers)):
            return True, f"{product} answers; its cluster is still forming (first creation)"
        reason = not_formed(node)
        if reason:
            return True, reason
        health = node.get("/v1/operator/autopilot/health")
        servers = health.body.get("Servers", []) if health.ok and isinstance(health.body, dict) else []
        server = next((s for s in servers if server_name(str(s.get("Name", ""))) == node_name), None)
        if server and server.get("Healthy") and server.get("Voter"):
            return True, f"{product}: a healthy voter"
        if not health.ok:
            return False, f"{product} autopilot health answers {health.status}: {health.body}"
        return (
            False,
            f"{product} autopilot reports {server}" if server else f"not yet in {product}'s raft configuration",
        )

    return attempt


def consul_healthy(apis: ServerApis, node_name: str, address: str, peers: Sequence[str]) -> Callable:
    """Consul answers and, once a cluster exists (a leader anywhere), this server is a healthy voter."""
    return _autopilot_voter("Consul", apis.consul, node_name, address, peers)


def nomad_healthy(apis: ServerApis, node_name: str, address: str, peers: Sequence[str]) -> Callable:
    """Once Nomad's cluster exists with its ACLs bootstrapped, this server is a healthy voter.

    On the first creation there is no leader until every server runs, and no ACL bootstrap until
    after the chain: then Nomad answering is enough.
    """

    def acl_not_bootstrapped(node: HttpsApi) -> str | None:
        if node.get("/v1/acl/token/self").ok:
            return None
        return "Nomad answers; its ACLs are not bootstrapped yet (first creation)"

    # Nomad names its servers `<node>.<region>`.
    return _autopilot_voter(
        "Nomad", apis.nomad, node_name, address, peers, lambda name: name.split(".")[0], acl_not_bootstrapped
    )


def vault_healthy(apis: ServerApis, node_name: str, address: str) -> Callable:
    """Vault on this server is unsealed (the caller unseals it) and a healthy raft voter."""
    node = apis.vault(address)

    def attempt() -> tuple[bool, str]:
        state = node.get("/v1/sys/storage/raft/autopilot/state")
        if not state.ok or not isinstance(state.body, dict):
            return False, f"Vault autopilot state answers {state.status}: {state.body}"
        servers = (state.body.get("data") or state.body).get("servers") or {}
        server = servers.get(node_name)
        if server and server.get("healthy") and server.get("status") == "voter":
            return True, "Vault: unsealed, a healthy voter"
        return False, f"Vault autopilot reports {server}" if server else "not yet in Vault's raft configuration"

    return attempt


def wait_until_healthy(
    apis: ServerApis,
    node_name: str,
    address: str,
    peers: Sequence[str],
    unseal_keys: Sequence[str],
    poller: Poller,
) -> str:
    """Blocks until every agent of `node_name` is back: Consul, then Vault (unsealed here with the
    Shamir keys, or by itself with auto-unseal), then Nomad. Returns what was established."""
    try:
        done = [poller.until(f"{node_name} Consul", consul_healthy(apis, node_name, address, peers))]
        done.append(vault_unseal(apis.vault(address), tuple(unseal_keys), poller))
        done.append(poller.until(f"{node_name} Vault", vault_healthy(apis, node_name, address)))
        done.append(poller.until(f"{node_name} Nomad", nomad_healthy(apis, node_name, address, peers)))
    except DeadlineExceeded as error:
        raise ServerUnhealthyError(
            f"{node_name} is not healthy: {error}. The next servers were left as they are, so the quorums "
            f"hold. Look at the node (`journalctl -u consul -u vault -u nomad`, "
            f"/var/log/hashistack-bootstrap.log, /var/log/cloud-init-output.log), fix the cause and run "
            f"`pulumi up` again; it resumes with this server."
        ) from None
    return f"{node_name}: " + "; ".join(done)


_INPUTS = (
    "node_name",
    "address",
    "peers",
    "machine_id",
    "ca_pem",
    "client_cert_pem",
    "client_key_pem",
    "consul_token",
    "nomad_token",
    "vault_token",
    "vault_unseal_keys",
)
_SECRET_INPUTS = ["client_key_pem", "consul_token", "nomad_token", "vault_token", "vault_unseal_keys"]


class _ServerHealthProvider(pulumi.dynamic.ResourceProvider):
    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        apis = server_apis(
            TlsMaterial(props["ca_pem"], props["client_cert_pem"], props["client_key_pem"]),
            props["consul_token"],
            props["nomad_token"],
            props["vault_token"],
        )
        poller = Poller(DEFAULT_TIMEOUT_SECONDS, POLL_SECONDS)
        status = wait_until_healthy(
            apis, props["node_name"], props["address"], props["peers"], props["vault_unseal_keys"] or (), poller
        )
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
    consul_token: pulumi.Input[str]
    """A Consul token with operator:read (autopilot health): the management token."""
    nomad_token: pulumi.Input[str]
    """Nomad's (preset) management token; accepted once Nomad's ACLs are bootstrapped."""
    vault_token: pulumi.Input[str]
    """Vault's root token (raft autopilot state)."""
    vault_unseal_keys: pulumi.Input[Sequence[str]]
    """Shamir unseal keys; empty with auto-unseal."""


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
