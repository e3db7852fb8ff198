"""ServerHealth: a resource whose creation waits until a (re)created server is healthy again.

It is the gate of the server chain (components/rollout/server_chain.py). A server counts as healthy when all
three of its raft members are back: Consul answers over mutual TLS and is a healthy voter; Vault is
unsealed (the gate unseals it with the Shamir keys, or waits for auto-unseal) and a healthy voter (or
the leader) of Vault's raft; Nomad is a healthy voter once its ACLs are bootstrapped.

Whether a cluster exists is never read from the server under test: a freshly replaced server knows
no leader and no token until its raft snapshot arrives, so its own answers look like a first
creation. The evidence comes from the program's state and from the peers:
  * the program's state: a gate that is *updated* (its machine was replaced) guards a cluster that
    existed before this run, and then fails closed until the server is a healthy voter everywhere;
  * the peers: a leader known to the server or to any peer means the cluster exists; Nomad's ACLs
    count as bootstrapped when any server accepts the preset management token.
Only when neither shows a cluster (a first `up`, or one retried after it failed half-way) does the
gate pass on "the agent answers": Consul and Nomad elect no leader before `bootstrap_expect`
servers run. Vault is initialised on server-0 before its gate (components/rollout/vault_init.py), so every
gate waits for Vault.

The upstream answers this relies on are listed, with their sources, in tests/upstream.py.
The check never skips TLS verification: the cluster CA and the operator's client certificate are
used throughout.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi.dynamic

from components.dynamic.agent_api import is_management_token, vault_unseal
from components.dynamic.http_api import Aborted, DeadlineExceeded, HttpsApi, Poller, Response, TlsMaterial, Unreachable
from components.dynamic.inputs import changed_keys
from components.dynamic.typed import SECRET, TypedResource
from components.rollout.node_console import log_file_watch

CONSUL_HTTPS_PORT, NOMAD_HTTPS_PORT, VAULT_HTTPS_PORT = 8501, 4646, 8200
DEFAULT_TIMEOUT_SECONDS = 20 * 60  # a first boot installs packages before Consul starts
POLL_SECONDS = 5.0
# Nomad's /v1/status/leader forwards to the leader unless the read may be stale, and answers 500
# "No cluster leader" without one; a stale read answers from the server's own raft state, "" without
# a leader (hashicorp/nomad v2.0.5 nomad/rpc.go forward, nomad/status_endpoint.go Leader).
NOMAD_LEADER_PATH = "/v1/status/leader?stale=true"
# Autopilot health answers 429 with the full body when any server is unhealthy (Consul and Nomad
# command/agent/operator_endpoint.go): the body still says how *this* server is.
AUTOPILOT_HEALTH_STATUSES = (200, 429)
# Vault reports the raft leader's state as "leader", not "voter" (hashicorp/raft-autopilot state.go).
VAULT_VOTING_STATES = ("leader", "voter")


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


def _ask(api: HttpsApi, path: str) -> Response | None:
    """The answer, or None when the API does not answer at all."""
    try:
        return api.get(path)
    except Unreachable:
        return None


def _knows_leader(answer: Response | None) -> bool:
    return answer is not None and answer.ok and isinstance(answer.body, str) and answer.body != ""


@dataclass(frozen=True)
class Product:
    """How to ask one of Consul and Nomad about its cluster."""

    name: str
    api_for: Callable[[str], HttpsApi]
    leader_path: str
    server_name: Callable[[str], str] = lambda name: name
    """Autopilot's server name -> the node name (Nomad appends the region)."""


def _voter_status(product: Product, node: HttpsApi, node_name: str) -> tuple[bool, str]:
    """Whether autopilot, asked through `node`, lists `node_name` as a healthy voter."""
    health = node.get("/v1/operator/autopilot/health")
    if health.status not in AUTOPILOT_HEALTH_STATUSES or not isinstance(health.body, dict):
        return False, f"{product.name} autopilot health answers {health.status}: {health.body}"
    servers = health.body.get("Servers") or []
    server = next((s for s in servers if product.server_name(str(s.get("Name"))) == node_name), None)
    if server is None:
        return False, f"not yet in {product.name}'s raft configuration"
    if server.get("Healthy") is True and server.get("Voter") is True:
        return True, f"{product.name}: a healthy voter"
    return False, f"{product.name} autopilot reports {server}"


def _without_leader(
    product: Product, node: HttpsApi, peers: Sequence[str], cluster_existed: bool
) -> tuple[bool, str] | None:
    """The verdict while the agent does not answer or no server knows a leader; None once one does
    (the node itself, or else any peer)."""
    own = node.get(product.leader_path)
    if not own.ok:
        return False, f"{product.name} at {node.base_url} answers {own.status}: {own.body}"
    if _knows_leader(own) or any(_knows_leader(_ask(product.api_for(p), product.leader_path)) for p in peers):
        return None
    if cluster_existed:
        return False, f"no {product.name} server knows a leader (the cluster existed before this run: waiting for it)"
    return True, f"{product.name} answers; no server has a leader yet (first creation)"


def consul_healthy(
    apis: ServerApis, node_name: str, address: str, peers: Sequence[str], cluster_existed: bool
) -> Callable[[], tuple[bool, str]]:
    """Consul answers and, once a cluster exists (a leader anywhere, or an earlier run), this
    server is a healthy voter. Consul answers /v1/status/leader locally: 200 "" without a leader."""
    product = Product("Consul", apis.consul, "/v1/status/leader")
    node = apis.consul(address)

    def attempt() -> tuple[bool, str]:
        return _without_leader(product, node, peers, cluster_existed) or _voter_status(product, node, node_name)

    return attempt


def _nomad_acl_bootstrapped(apis: ServerApis, address: str, peers: Sequence[str]) -> bool | None:
    """True when any server accepts the preset management token; False when a peer that knows a
    leader refuses it (the leader's ACL state lacks it); None when nothing can tell yet.

    The node under test is asked only for a yes: until it has joined it cannot forward the read to
    the leader (500 "No cluster leader", hashicorp/nomad v2.0.5 nomad/acl_endpoint.go WhoAmI), and
    its own state knows no token.
    """
    answers = {candidate: _ask(apis.nomad(candidate), "/v1/acl/token/self") for candidate in (*peers, address)}
    if any(a is not None and a.ok and is_management_token(a.body) for a in answers.values()):
        return True
    for peer in peers:
        refused = answers[peer] is not None and answers[peer].status in (403, 404)
        if refused and _knows_leader(_ask(apis.nomad(peer), NOMAD_LEADER_PATH)):
            return False
    return None


def nomad_healthy(
    apis: ServerApis, node_name: str, address: str, peers: Sequence[str], cluster_existed: bool
) -> Callable[[], tuple[bool, str]]:
    """Once Nomad's cluster exists with its ACLs bootstrapped, this server is a healthy voter.

    The preset management token is the only one the gate holds, and autopilot health needs
    operator:read: before the bootstrap step has run (first creation, or an earlier first `up`
    that stopped before it) Nomad answering is all that can be checked.
    """
    product = Product("Nomad", apis.nomad, NOMAD_LEADER_PATH, lambda name: name.split(".")[0])
    node = apis.nomad(address)

    def attempt() -> tuple[bool, str]:
        verdict = _without_leader(product, node, peers, cluster_existed)
        if verdict:
            return verdict
        bootstrapped = _nomad_acl_bootstrapped(apis, address, peers)
        if bootstrapped is None:
            return False, "no Nomad server accepts or refuses the preset management token yet"
        if not bootstrapped:
            return (
                True,
                "Nomad answers; the servers with a leader do not know the preset token: ACLs not bootstrapped yet",
            )
        return _voter_status(product, node, node_name)

    return attempt


def vault_healthy(apis: ServerApis, node_name: str, address: str) -> Callable[[], tuple[bool, str]]:
    """Vault on this server is unsealed (the caller unseals it) and a healthy raft voter or leader.

    The autopilot state keys servers by node id, which is the server's name (cloudinit vault.hcl).
    """
    node = apis.vault(address)

    def attempt() -> tuple[bool, str]:
        state = node.get("/v1/sys/storage/raft/autopilot/state")
        # Only a 200 carries "data"; Vault's errors are {"errors": [...]}.
        data = state.body.get("data") if isinstance(state.body, dict) else None
        if not isinstance(data, dict):
            return False, f"Vault autopilot state answers {state.status}: {state.body}"
        server = (data.get("servers") or {}).get(node_name)
        if server is None:
            return False, "not yet in Vault's raft configuration"
        if server.get("healthy") is True and server.get("status") in VAULT_VOTING_STATES:
            return True, f"Vault: unsealed, a healthy {server['status']}"
        return False, f"Vault autopilot reports {server}"

    return attempt


def wait_until_healthy(
    apis: ServerApis,
    node_name: str,
    address: str,
    peers: Sequence[str],
    unseal_keys: Sequence[str],
    poller: Poller,
    *,
    cluster_existed: bool,
    console_command: str = "",
) -> str:
    """Blocks until every agent of `node_name` is back: Consul, then Vault (unsealed here with the
    Shamir keys, or by itself with auto-unseal), then Nomad. Returns what was established.

    `cluster_existed`: the gate guards a server replaced in a cluster that an earlier run built.
    `console_command`: how the operator reads the server's console (AWS), named when the wait times out.
    """
    try:
        done = [poller.until(f"{node_name} Consul", consul_healthy(apis, node_name, address, peers, cluster_existed))]
        done.append(vault_unseal(apis.vault(address), tuple(unseal_keys), poller, f"{node_name} Vault"))
        done.append(poller.until(f"{node_name} Vault", vault_healthy(apis, node_name, address)))
        done.append(poller.until(f"{node_name} Nomad", nomad_healthy(apis, node_name, address, peers, cluster_existed)))
    except Aborted as failed:
        raise ServerUnhealthyError(
            f"{node_name} failed to boot; its console says: {failed}. The next servers were left as they "
            f"are, so the quorums hold. Fix the cause and run `pulumi up` again; it resumes with this server."
        ) from None
    except DeadlineExceeded as error:
        console = f" Its boot's last words are on its console: `{console_command}`." if console_command else ""
        raise ServerUnhealthyError(
            f"{node_name} is not healthy: {error}. The next servers were left as they are, so the quorums "
            f"hold.{console} Look at the node (`journalctl -u consul -u vault -u nomad`, "
            f"/var/log/hashistack-bootstrap.log, /var/log/cloud-init-output.log), fix the cause and run "
            f"`pulumi up` again; it resumes with this server."
        ) from None
    return f"{node_name}: " + "; ".join(done)


# A different server: a new gate. A new machine for the same server: the same gate, updated.
_IDENTITY = ("node_name", "address")


class _ServerHealthProvider(pulumi.dynamic.ResourceProvider):
    def __init__(self, timeout: float = DEFAULT_TIMEOUT_SECONDS, interval: float = POLL_SECONDS):
        self._timeout, self._interval = timeout, interval

    def _wait(self, props: dict[str, Any], cluster_existed: bool) -> dict[str, Any]:
        apis = apis_from(props)
        status = wait_until_healthy(
            apis,
            props["node_name"],
            props["address"],
            props["peers"],
            props["vault_unseal_keys"] or (),
            # A boot that reported FAILED on the console ends the wait at once (libvirt: the domain's
            # serial log on this host; "" where there is none to read).
            Poller(self._timeout, self._interval, abort=log_file_watch(props.get("console_log") or "")),
            cluster_existed=cluster_existed,
            console_command=props.get("console_command") or "",
        )
        return {**props, "status": status}

    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        # A new gate: this stack never saw the server healthy before, so its cluster may be forming.
        return pulumi.dynamic.CreateResult(id_=props["node_name"], outs=self._wait(props, cluster_existed=False))

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.DiffResult:
        # Only a new machine (or a moved one) needs the gate again; rotated credentials do not.
        replaces = changed_keys(olds, news, _IDENTITY)
        machine = changed_keys(olds, news, ("machine_id",))
        return pulumi.dynamic.DiffResult(
            changes=bool(replaces or machine), replaces=replaces, delete_before_replace=False
        )

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.UpdateResult:
        # The machine of a server that passed this gate before was replaced: the cluster exists.
        return pulumi.dynamic.UpdateResult(outs=self._wait(news, cluster_existed=True))

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        pass


@dataclass(frozen=True)
class ServerCredentials:
    """How the program talks to every server's Consul, Nomad and Vault (`apis_from` reads them back)."""

    ca_pem: pulumi.Input[str]
    client_cert_pem: pulumi.Input[str]
    client_key_pem: pulumi.Input[str] = field(metadata=SECRET)
    consul_token: pulumi.Input[str] = field(metadata=SECRET)
    """Consul's management token (operator:read for autopilot, operator:write for a leader transfer)."""
    nomad_token: pulumi.Input[str] = field(metadata=SECRET)
    """Nomad's preset management token; accepted once Nomad's ACLs are bootstrapped (a transfer needs
    management, not only operator:write)."""
    vault_token: pulumi.Input[str] = field(metadata=SECRET)
    """Vault's root token (raft autopilot state, sudo on sys/step-down); "" where there is none yet."""


def apis_from(props: Mapping[str, Any]) -> ServerApis:
    """The servers' APIs from a resource's ServerCredentials props."""
    tls = TlsMaterial(props["ca_pem"], props["client_cert_pem"], props["client_key_pem"])
    return server_apis(tls, props["consul_token"], props["nomad_token"], props["vault_token"] or "")


@dataclass(frozen=True)
class ServerHealthArgs(ServerCredentials):
    node_name: pulumi.Input[str]
    address: pulumi.Input[str]
    peers: pulumi.Input[Sequence[pulumi.Input[str]]]
    machine_id: pulumi.Input[str]
    """The machine's id; a new id (a replaced machine) re-runs the check, as for an existing cluster."""
    vault_unseal_keys: pulumi.Input[Sequence[str]] = field(metadata=SECRET)
    """Shamir unseal keys; empty with auto-unseal."""
    console_log: pulumi.Input[str] = ""
    """The server's serial console log on this host, read for the boot script's FAILED line; "" for none."""
    console_command: pulumi.Input[str] = ""
    """The command that shows the server's console where the program cannot read it (AWS)."""


class ServerHealth(TypedResource, module="hashistack", name="ServerHealth"):
    status: pulumi.Output[str]
    """What the check established."""
    machine_id: pulumi.Output[str]
    """The machine that passed, known once it has: what the bootstrap steps re-run after."""

    def __init__(self, name: str, args: ServerHealthArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(_ServerHealthProvider(), name, args, opts, outputs=("status",))
