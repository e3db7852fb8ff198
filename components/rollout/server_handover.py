"""ServerHandover: before a server's machine is taken down, the rest of the cluster must be able to lose
it, and it must lead nothing.

The server chain (components/rollout/server_chain.py) makes one per server, before that server's
machine, which depends on it. Its input `machine_spec` is a digest of everything whose change
replaces the machine (the platform says what: user-data, image, size), so it is updated exactly
when the machine is about to be replaced, and the engine runs that update before it touches the
machine. The update:

1. checks that every *other* server of the cluster as it stood (the peers of its previous run) is a
   healthy voter of Consul and of Nomad (autopilot health) and an initialised, unsealed member of
   Vault's cluster (sys/health), and that none runs a newer version than this `up` installs (raft data
   cannot go back). Anything else stops the `up` here, before the machine, naming the server and
   what is wrong: taking this server down then would leave the cluster without a quorum;
2. hands leadership over where this server holds it: Consul's and Nomad's raft leadership go to
   another server (preferably one this `up` replaced already, so it runs the new version), and
   Vault's active node steps down. Vault's HA guide says to upgrade the standbys first and the
   active node last; the program cannot see which node is active when it plans the order, so the
   node is stepped down when its turn comes. That only ever moves leadership off a node that runs
   the old version, never from a newer node to an older one, which the guide forbids.

The first server's handover has no Vault token: Vault's root token comes from its initialisation,
which needs the first server's machine, which waits for this resource. The chain's end
(VaultStandbyFirst) therefore steps Vault's active node off the first server at the end of every
`up` that changed a server, so the next roll begins on a standby; if it is active anyway (a failover
between two `up`s) its handover stops with the command that moves it.

Its creation (a new server, the stack's first `up`, or `pulumi up --replace` of this resource) checks
the same when any peer answers, and passes when none does (no cluster yet). The upstream answers
this relies on are in tests/upstream.py, each with its source.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi.dynamic

from components.dynamic.http_api import DeadlineExceeded, HttpsApi, Poller, Response, Unreachable
from components.dynamic.inputs import changed_keys, is_known
from components.dynamic.typed import TypedResource
from components.rollout.server_health import AUTOPILOT_HEALTH_STATUSES, ServerApis, ServerCredentials
from components.rollout.server_health import apis_from as server_apis_from
from components.rollout.versions import VERSION_KEYS, newer_than, reported_version

HANDOVER_SECONDS = 2 * 60
"""How long a leadership transfer or a step-down may take to show (seconds upstream: one election)."""
POLL_SECONDS = 2.0
OPERATIONS = "docs/operations.md#a-server-that-is-not-healthy-stops-the-roll"
# Vault's sys/health with every state answered 200, so that the body tells (sys/health's own
# status codes: 200 active, 429 standby, 503 sealed, 501 not initialised: tests/upstream.py).
VAULT_HEALTH_PATH = "/v1/sys/health?standbyok=true&perfstandbyok=true&sealedcode=200&uninitcode=200"


class HandoverRefusedError(Exception):
    pass


@dataclass(frozen=True)
class RaftProduct:
    """Consul or Nomad: where autopilot reports, and how leadership is handed over."""

    name: str
    key: str
    """Its version setting."""
    api_for: Callable[[str], HttpsApi]
    transfer: tuple[str, str]
    """(method, path): `<method> <path>?id=<raft server id>` hands leadership to that server."""
    node_name: Callable[[str], str] = lambda name: name
    """Autopilot's server name -> the node name (Nomad appends the region)."""


def raft_products(apis: ServerApis) -> tuple[RaftProduct, RaftProduct]:
    # Consul registers transfer-leader for POST only, and its id is optional; Nomad takes PUT or POST
    # and refuses a request without an id (tests/upstream.py, consul_/nomad_leadership_transferred).
    return (
        RaftProduct("Consul", "consul", apis.consul, ("POST", "/v1/operator/raft/transfer-leader")),
        RaftProduct(
            "Nomad",
            "nomad",
            apis.nomad,
            ("PUT", "/v1/operator/raft/transfer-leadership"),
            lambda name: name.split(".")[0],
        ),
    )


def _first_answer(apis: Sequence[HttpsApi], path: str, accept: Sequence[int]) -> Response | None:
    """The first of the servers' answers to `path` with an accepted status and a body, else None."""
    for api in apis:
        try:
            answer = api.get(path)
        except Unreachable:
            continue
        if answer.status in accept and isinstance(answer.body, dict):
            return answer
    return None


Autopilot = dict[str, dict[str, Any]]
"""Node name -> autopilot's view of that server (ID, Version, Leader, Healthy, Voter, ...)."""


def autopilot(product: RaftProduct, addresses: Sequence[str]) -> Autopilot | None:
    """Autopilot's view of every server, asked through the first server that answers (it forwards
    to the leader); None when none answers."""
    answer = _first_answer(
        [product.api_for(a) for a in addresses], "/v1/operator/autopilot/health", AUTOPILOT_HEALTH_STATUSES
    )
    if answer is None:
        return None
    return {product.node_name(str(s.get("Name"))): s for s in answer.body.get("Servers") or []}


def _healthy_voter(server: Mapping[str, Any] | None) -> bool:
    return server is not None and server.get("Healthy") is True and server.get("Voter") is True


def raft_problems(product: RaftProduct, servers: Autopilot | None, peers: Iterable[str]) -> list[str]:
    """What keeps Consul's or Nomad's raft from losing a server: peers that are not healthy voters."""
    if servers is None:
        return [f"no {product.name} server answers autopilot health"]
    problems = []
    for peer in peers:
        server = servers.get(peer)
        if server is None:
            problems.append(f"{peer}: not in {product.name}'s raft configuration")
        elif not _healthy_voter(server):
            problems.append(
                f"{peer}: {product.name} autopilot reports Healthy={server.get('Healthy')}, Voter={server.get('Voter')}"
            )
    return problems


def vault_health(api: HttpsApi) -> dict[str, Any] | None:
    """Vault's sys/health body on one server, None when it does not answer."""
    try:
        answer = api.get(VAULT_HEALTH_PATH)
    except Unreachable:
        return None
    return answer.body if isinstance(answer.body, dict) else None


def vault_problem(health: dict[str, Any] | None) -> str | None:
    """Why a server's Vault is not a member the cluster can count on, or None."""
    if health is None:
        return "Vault does not answer"
    if health.get("removed_from_cluster") is True:
        return "Vault was removed from the raft cluster"
    if not health.get("initialized"):
        return "Vault is not initialised (not joined)"
    if health.get("sealed"):
        return "Vault is sealed (`make unseal`)"
    return None


def version_problems(reports: Mapping[str, Mapping[str, Any]], key: str, wanted: str) -> list[str]:
    """Servers (name -> their report) that run a newer version than this `up` installs: raft data
    cannot go back."""
    problems = []
    for peer, report in sorted(reports.items()):
        running = reported_version(dict(report))
        if running and newer_than(running, wanted):
            problems.append(
                f"{key}: {wanted} is older than {running}, which {peer} runs; raft data cannot go back to an "
                f"older version: set {key} to {running} or newer"
            )
    return problems


def transfer_target(servers: Autopilot, peers: Sequence[str], prefer: str) -> str | None:
    """The peer to hand leadership to: `prefer` (replaced already, so on the new version) when it is
    a healthy voter, else the first healthy voter of the others."""
    candidates = [prefer, *sorted(peers)] if prefer in peers else sorted(peers)
    return next((peer for peer in candidates if _healthy_voter(servers.get(peer)) and servers[peer].get("ID")), None)


def transfer_leadership(
    product: RaftProduct,
    servers: Autopilot,
    node_name: str,
    address: str,
    peers: Mapping[str, str],
    prefer: str,
    poller: Poller,
) -> str:
    """Hands `product`'s raft leadership from `node_name` to another server when it holds it."""
    if servers.get(node_name, {}).get("Leader") is not True:
        return f"{product.name}: not the leader"
    target = transfer_target(servers, list(peers), prefer)
    if target is None:  # raft_problems has refused already when no peer is a healthy voter
        raise HandoverRefusedError(f"{node_name} leads {product.name} and no other server can take over")
    method, path = product.transfer
    request = f"{method} {path}?id={servers[target]['ID']}"
    answer = product.api_for(address).request(method, f"{path}?id={servers[target]['ID']}")
    if not answer.ok:
        raise HandoverRefusedError(
            f"{node_name} leads {product.name} and would not hand leadership to {target}: {request} answers "
            f"{answer.status}: {answer.body}. Nothing was taken down; see {OPERATIONS}."
        )

    def moved() -> tuple[bool, str]:
        now = autopilot(product, [*peers.values(), address]) or {}
        leader = next((name for name, s in now.items() if s.get("Leader") is True), None)
        return leader not in (None, node_name), f"{product.name} leader: {leader or 'none yet'}"

    _wait(poller, f"{node_name} {product.name} hand-over to {target}", moved)
    return f"{product.name}: leadership handed to {target}"


def _wait(poller: Poller, what: str, done: Callable[[], tuple[bool, str]]) -> None:
    try:
        poller.until(what, done)
    except DeadlineExceeded as error:
        raise HandoverRefusedError(f"{error}. The machine was not taken down; see {OPERATIONS}.") from None


def vault_step_down(node_name: str, api: HttpsApi, has_token: bool, poller: Poller) -> str:
    """Steps Vault's active node on this server down (a standby takes over); a standby or a sealed
    Vault is left alone. `api` carries the root token, if any."""
    health = vault_health(api)
    if health is None or health.get("sealed") or health.get("standby") is not False:
        return "Vault: not the active node"
    if not has_token:
        raise HandoverRefusedError(
            f"{node_name} is Vault's active node, and its machine goes first in the roll: step it down first "
            f"(`vault operator step-down` against {api.base_url} with the root token from `make outputs`), "
            f"then run `pulumi up` again. Nothing was taken down; see {OPERATIONS}."
        )
    answer = api.request("PUT", "/v1/sys/step-down")
    if not answer.ok:
        raise HandoverRefusedError(
            f"{node_name}'s Vault would not step down: PUT /v1/sys/step-down answers {answer.status}: "
            f"{answer.body}. Nothing was taken down; see {OPERATIONS}."
        )

    def standby() -> tuple[bool, str]:
        return (vault_health(api) or {}).get("standby") is True, "still active"

    _wait(poller, f"{node_name} Vault step-down", standby)
    return "Vault: stepped down to a standby"


def hand_over(
    apis: ServerApis,
    node_name: str,
    address: str,
    peers: Mapping[str, str],
    wanted: Mapping[str, str],
    vault_token: str,
    prefer: str,
    poller: Poller,
) -> str:
    """Refuses unless the cluster can lose `node_name`, then moves its leadership elsewhere."""
    products = raft_products(apis)
    views = {p.key: autopilot(p, [*peers.values(), address]) for p in products}
    vault = {peer: vault_health(apis.vault(a)) for peer, a in peers.items()}
    problems = [problem for p in products for problem in raft_problems(p, views[p.key], peers)]
    problems += [f"{peer}: {p}" for peer, health in vault.items() if (p := vault_problem(health))]
    if problems:
        raise HandoverRefusedError(
            f"{node_name} was not taken down: the rest of the cluster could not lose it. "
            + "; ".join(problems)
            + f". Bring those servers back first ({OPERATIONS}), then run `pulumi up` again; nothing was changed."
        )
    reports = {p.key: {peer: views[p.key].get(peer, {}) for peer in peers} for p in products}  # type: ignore[union-attr]
    reports["vault"] = {peer: health or {} for peer, health in vault.items()}
    downgrades = [
        d for key, setting in VERSION_KEYS.items() for d in version_problems(reports[key], setting, wanted[key])
    ]
    if downgrades:
        raise HandoverRefusedError(f"{node_name} was not taken down: " + "; ".join(downgrades) + ".")
    done = [transfer_leadership(p, views[p.key] or {}, node_name, address, peers, prefer, poller) for p in products]
    done.append(vault_step_down(node_name, apis.vault(address), bool(vault_token), poller))
    return f"{node_name}: the others are healthy voters; " + "; ".join(done)


def remove_departed(apis: ServerApis, node_name: str, peers: Mapping[str, str]) -> str:
    """Removes a server that has left the plan from Consul's, Nomad's and Vault's raft
    configurations (asked through the servers that remain). A product without it already, or no
    cluster at all (`pulumi destroy`), passes."""
    addresses = list(peers.values())
    if not _anyone_answers(apis, addresses):
        return f"{node_name}: no cluster answers, nothing to remove"
    done = []
    for product in raft_products(apis):
        by_hand = f"(`{product.key} operator raft remove-peer` by hand)"
        servers = autopilot(product, addresses)
        seat = (servers or {}).get(node_name)
        if servers is None:
            done.append(f"{product.name}: not removed, no server answers autopilot health {by_hand}")
        elif seat is None or not seat.get("ID"):
            done.append(f"{product.name}: not a member")
        elif _first_ok([product.api_for(a) for a in addresses], "DELETE", f"/v1/operator/raft/peer?id={seat['ID']}"):
            done.append(f"{product.name}: removed")
        else:
            done.append(f"{product.name}: removal refused {by_hand}")
    body = {"server_id": node_name}
    answer = _first_ok([apis.vault(a) for a in addresses], "POST", "/v1/sys/storage/raft/remove-peer", body)
    done.append("Vault: removed" if answer else "Vault: removal refused (`vault operator raft remove-peer` by hand)")
    return f"{node_name} left the cluster: " + "; ".join(done)


def _first_ok(apis: Sequence[HttpsApi], method: str, path: str, body: Any = None) -> Response | None:
    """The first accepting answer of the servers (each API carries its product's token), else None."""
    for api in apis:
        try:
            answer = api.request(method, path, body=body)
        except Unreachable:
            continue
        if answer.ok:
            return answer
    return None


def _anyone_answers(apis: ServerApis, addresses: Sequence[str]) -> bool:
    for address in addresses:
        try:
            apis.consul(address).get("/v1/status/leader")
        except Unreachable:
            continue
        return True
    return False


def downgrade_failures(olds: Mapping[str, Any], news: Mapping[str, Any]) -> list[pulumi.dynamic.CheckFailure]:
    """A version older than the one this handover let the server be upgraded to: refused in every
    preview, from the state alone (no call leaves the program)."""
    before, after = olds.get("versions") or {}, news.get("versions") or {}
    failures = []
    for product, key in VERSION_KEYS.items():
        old, new = before.get(product), after.get(product)
        if is_known(new) and isinstance(old, str) and isinstance(new, str) and newer_than(old, new):
            failures.append(
                pulumi.dynamic.CheckFailure(
                    "versions",
                    f"{key}: {new} is older than {old}, which the stack's servers were upgraded to; raft data "
                    f"cannot go back to an older version: set {key} to {old} or newer",
                )
            )
    return failures


MACHINE_KEYS = ("machine_spec", "address")
"""The inputs whose change means the server's machine is about to be replaced."""


class _ServerHandoverProvider(pulumi.dynamic.ResourceProvider):
    def __init__(self, timeout: float = HANDOVER_SECONDS, interval: float = POLL_SECONDS):
        self._timeout, self._interval = timeout, interval

    def _apis(self, props: Mapping[str, Any]) -> ServerApis:
        return server_apis_from(props)

    def _hand_over(self, props: Mapping[str, Any], peers: Mapping[str, str]) -> str:
        return hand_over(
            self._apis(props),
            props["node_name"],
            props["address"],
            peers,
            props["versions"],
            props["vault_token"] or "",
            props["prefer"],
            Poller(self._timeout, self._interval),
        )

    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.CheckResult:
        return pulumi.dynamic.CheckResult(news, downgrade_failures(olds, news))

    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        # A server this stack never had (or `--replace` of this handover): a cluster that answers
        # must be able to lose it; none answering means there is no cluster to keep yet.
        peers = props["peers"]
        if _anyone_answers(self._apis(props), [*peers.values(), props["address"]]):
            status = self._hand_over(props, peers)
        else:
            status = f"{props['node_name']}: no cluster answers yet, nothing to hand over"
        return pulumi.dynamic.CreateResult(id_=props["node_name"], outs={**props, "status": status})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.DiffResult:
        # A machine about to be replaced needs the check; a changed plan of peers is only recorded
        # (the next check must not wait for servers that have left); rotated credentials are neither.
        replaces = changed_keys(olds, news, ("node_name",))
        changes = replaces or changed_keys(olds, news, (*MACHINE_KEYS, "peers"))
        return pulumi.dynamic.DiffResult(changes=bool(changes), replaces=replaces, delete_before_replace=False)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.UpdateResult:
        if not changed_keys(olds, news, MACHINE_KEYS):
            return pulumi.dynamic.UpdateResult(outs={**news, "status": f"{news['node_name']}: peers recorded"})
        # The cluster as it stood: the peers of the previous run (a 3 -> 5 change adds servers that do
        # not exist yet; a 5 -> 3 one keeps the leaving servers, which still count for the quorums:
        # the engine deletes them after every update).
        peers = {name: address for name, address in (olds.get("peers") or {}).items() if name != news["node_name"]}
        return pulumi.dynamic.UpdateResult(outs={**news, "status": self._hand_over(news, peers)})

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        # The server left the plan (serverCount 5 -> 3): its machine is gone (it depended on this
        # resource, so it was deleted first). Its seats in the three raft configurations go now, in
        # this `up`, so that the next replacement counts only live voters.
        # It never fails: on `pulumi destroy` the remaining servers go too, and a removal that
        # cannot be made (no leader any more) must not hold the destroy up; it says what to run.
        status = remove_departed(self._apis(props), props["node_name"], props["peers"])
        (pulumi.log.warn if "by hand" in status else pulumi.log.info)(status)


@dataclass(frozen=True)
class ServerHandoverArgs(ServerCredentials):
    """vault_token is "" for the first server (see the module's doc)."""

    node_name: pulumi.Input[str]
    address: pulumi.Input[str]
    """Where the program reaches the server."""
    peers: pulumi.Input[Mapping[str, pulumi.Input[str]]]
    """The other servers of the plan: name -> address."""
    prefer: pulumi.Input[str]
    """The server leadership should go to: the one before in the chain (replaced already), or ""."""
    machine_spec: pulumi.Input[str]
    """A digest of what replaces the server's machine when it changes."""
    versions: pulumi.Input[Mapping[str, str]]
    """consul, nomad, vault -> the version this `up` installs."""


class ServerHandover(TypedResource, module="hashistack", name="ServerHandover"):
    status: pulumi.Output[str]
    """What the check found and what was handed over."""

    def __init__(self, name: str, args: ServerHandoverArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(_ServerHandoverProvider(), name, args, opts, outputs=("status",))
