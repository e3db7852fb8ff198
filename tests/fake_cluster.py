"""A fake cluster: every server's Consul, Nomad and Vault API, answering as the pinned versions do.

Each server has an address 127.0.0.<i+1> and each product one port on all of them, as on real
nodes. The fakes keep the cluster's state (who runs, who joined, the leader, tokens, seals) and
answer only through tests/upstream.py, where every answer names its upstream source. Tests drive
the state the way the products move through it: a first creation (nothing has a leader until
every server runs; Vault initialised on server-0, the others join when unsealed), a rolling
replacement (a leader elsewhere, the new node outside raft until it joins, 429 health while a server
is gone) and a restart (sealed servers).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import upstream
from fake_https import FakeApi, Seen, instant_poller, operator_tls
from upstream import Answer

from components.dynamic.agent_api import vault_init, vault_unseal
from components.dynamic.http_api import HttpsApi

CONSUL_TOKEN = "33333333-cccc-4ccc-8ccc-333333333333"
"""The preset management token (Consul's initial_management)."""
NOMAD_TOKEN = "44444444-dddd-4ddd-8ddd-444444444444"
"""The preset Nomad bootstrap secret."""
VAULT_ROOT = "hvs.root-of-the-fake"


@dataclass
class Raft:
    """Consul's or Nomad's raft: the leader's configuration, and which nodes have joined it."""

    servers: dict[str, dict[str, bool]] = field(default_factory=dict)
    """The leader's view: name -> {"Healthy", "Voter"} (autopilot health)."""
    joined: set[str] = field(default_factory=set)
    """Nodes that are in the cluster and know its leader (a new machine is not, until it joins)."""
    leader: str | None = None
    versions: dict[str, str] = field(default_factory=dict)
    """Node -> the version it runs (unlisted: the pinned one)."""
    version: str = ""

    def knows_leader(self, node: str) -> bool:
        return self.leader is not None and node in self.joined

    def raft_id(self, node: str) -> str:
        """Raft ids are node ids, UUIDs (Nomad refuses a transfer to anything else)."""
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self.version}/{node}"))

    def health(self, name_of: Callable[[str], str]) -> list[dict[str, Any]]:
        return [
            {
                "ID": self.raft_id(n),
                "Name": name_of(n),
                "Version": self.versions.get(n, self.version),
                "Leader": n == self.leader,
                **server,
            }
            for n, server in sorted(self.servers.items())
        ]

    def node_of(self, raft_id: str) -> str | None:
        return next((n for n in self.servers if self.raft_id(n) == raft_id), None)


@dataclass
class VaultState:
    seal_type: str = "shamir"
    initialized: bool = False
    keys: list[str] = field(default_factory=list)
    """Shamir key shares (base64) once initialised."""
    threshold: int = 0
    shares: int = 0
    members: set[str] = field(default_factory=set)
    """The raft configuration (a replaced node keeps its seat: same node id and address)."""
    has_data: set[str] = field(default_factory=set)
    """Nodes whose own storage is initialised (a new machine's is empty until it joins)."""
    challenged: set[str] = field(default_factory=set)
    """Followers holding the leader's join challenge (retry_join reached an unsealed leader)."""
    unsealed: set[str] = field(default_factory=set)
    given: dict[str, list[str]] = field(default_factory=dict)
    """Key shares given to each node since its last threshold."""
    leader: str | None = None
    """The active node."""
    versions: dict[str, str] = field(default_factory=dict)
    """Node -> the version it runs (unlisted: the pinned one)."""
    step_down_moves: bool = True
    """Whether a step-down hands the active role to another unsealed member (False: it comes straight back)."""
    non_voters: set[str] = field(default_factory=set)
    finishing: dict[str, int] = field(default_factory=dict)
    """Node -> seal-status reads left before a joined node finishes its unseal in the background."""
    finishing_reads: int = 2
    """Reads (the threshold's own answer included) that still say sealed after a join completes."""


_GO_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def _is_uuid(text: str) -> bool:
    """As hashicorp/go-uuid v1.0.3 ParseUUID reads one: 36 characters, dashes at 8, 13, 18 and 23."""
    return bool(_GO_UUID.match(text))


class FakeCluster:
    def __init__(self, fake_api: Callable[..., FakeApi], servers: int = 3, seal_type: str = "shamir"):
        self.names = [f"server-{i}" for i in range(servers)]
        self.addresses = {name: f"127.0.0.{i + 1}" for i, name in enumerate(self.names)}
        self.consul, self.nomad = Raft(version=upstream.PINNED["consul"]), Raft(version=upstream.PINNED["nomad"])
        self.vault = VaultState(seal_type=seal_type)
        self.consul_tokens: dict[str, dict[str, Any]] = {}
        self.consul_policies: dict[str, dict[str, Any]] = {}
        self.nomad_management: str | None = None
        self.nomad_reset_index = 7
        self.nomad_version = upstream.PINNED["nomad"]
        self.nomad_jobs: list[dict[str, Any]] = []
        self.consul_unknown_token = upstream.consul_unknown_token
        self.apis: dict[str, dict[str, FakeApi]] = {}
        ports = {"consul": 0, "nomad": 0, "vault": 0}
        for name in self.names:
            apis = {}
            for product, client_cert in (("consul", True), ("nomad", False), ("vault", False)):
                api = fake_api(address=self.addresses[name], port=ports[product], client_cert=client_cert)
                api.contract_only = True
                ports[product] = api.port
                apis[product] = api
            self.apis[name] = apis
            self._route_consul(name, apis["consul"])
            self._route_nomad(name, apis["nomad"])
            self._route_vault(name, apis["vault"])
        self.ports = (ports["consul"], ports["nomad"], ports["vault"])
        self.set_running(*self.names, running=False)  # nothing answers before the machines boot

    # -- driving the state ------------------------------------------------------------------------
    def set_running(self, *names: str, running: bool = True) -> None:
        """The agents on these servers answer, or are stopped (no answer at all)."""
        for name in names:
            for api in self.apis[name].values():
                api.down = not running
            if not running:
                self.vault.unsealed.discard(name)
                self.vault.given.pop(name, None)
                self.vault.challenged.discard(name)

    def boot(self, *names: str) -> None:
        """The machines have booted: their agents answer, outside any cluster yet."""
        self.set_running(*names)

    def running(self, name: str) -> bool:
        return not self.apis[name]["vault"].down

    def form(self, *names: str, leader: str | None = None) -> None:
        """Consul and Nomad servers join and elect a leader (bootstrap_expect reached). Consul's
        leader writes the initial management token."""
        for state in (self.consul, self.nomad):
            state.joined |= set(names)
            state.servers |= {n: {"Healthy": True, "Voter": True} for n in names}
            state.leader = state.leader or leader or names[0]
        self.consul_tokens.setdefault(CONSUL_TOKEN, {"AccessorID": "acc-management", "Policies": ["global-management"]})

    def replace(self, name: str) -> None:
        """A new machine for `name`: stopped, then booting with empty data dirs, outside every raft
        until it joins. Its old self stays in the configurations as a failed server (Consul and
        Nomad drop it when the new one joins at the same address; Vault keeps the seat, same id)."""
        self.set_running(name, running=False)
        for state in (self.consul, self.nomad):
            state.joined.discard(name)
            if name in state.servers:
                state.servers[name] = {"Healthy": False, "Voter": True}
            if state.leader == name:
                state.leader = next((n for n in sorted(state.joined)), None)
        self.vault.has_data.discard(name)
        if self.vault.leader == name:
            self.vault.leader = next((n for n in sorted(self.vault.unsealed)), None)
        self.set_running(name)

    def rejoin(self, name: str, *, healthy: bool = True, voter: bool = True, products: str = "consul nomad") -> None:
        """The node has joined Consul's and Nomad's raft (or those named) as a healthy voter, or not yet."""
        for state in (getattr(self, product) for product in products.split()):
            state.joined.add(name)
            state.servers[name] = {"Healthy": healthy, "Voter": voter}

    def vault_promote(self, name: str) -> None:
        """Autopilot promotes a joined Vault node once it has been stable (10 s upstream)."""
        self.vault.non_voters.discard(name)

    def seal_all(self) -> None:
        """Every Vault sealed (Shamir), nothing else changed."""
        self.vault.unsealed.clear()
        self.vault.given.clear()

    def restart_all(self) -> None:
        """Every server restarts: Shamir Vaults come back sealed; raft membership is kept."""
        names = [n for n in self.names if self.running(n)]
        self.set_running(*names, running=False)
        self.set_running(*names)
        if self.vault.seal_type != "shamir":
            self.vault.unsealed |= self.vault.has_data

    def retry_join(self) -> None:
        """Vault's retry_join on every running follower with empty storage: with an unsealed leader
        it holds the leader's challenge (every 2 s upstream; here when called). With awskms it then
        joins and unseals by itself; with Shamir it waits for the key shares."""
        if self.vault.leader not in self.vault.unsealed:
            return
        for name in self.names:
            if self.running(name) and name not in self.vault.has_data:
                if self.vault.seal_type == "shamir":
                    self.vault.challenged.add(name)
                else:
                    self._vault_joined(name)
                    self.vault.unsealed.add(name)

    def _vault_joined(self, name: str) -> None:
        if name not in self.vault.members:
            self.vault.non_voters.add(name)  # a new server is a non-voter until autopilot promotes it
        self.vault.members.add(name)
        self.vault.has_data.add(name)

    def address(self, name: str) -> str:
        return self.addresses[name]

    def api(self, pki: Path, product: str, node: str = "server-0", **kwargs: Any) -> HttpsApi:
        """A client of `product`'s API on `node`, with the operator's TLS (a client certificate for Consul)."""
        port = dict(zip(("consul", "nomad", "vault"), self.ports, strict=True))[product]
        tls = operator_tls(pki, with_client_cert=product == "consul")
        return HttpsApi(f"https://{self.address(node)}:{port}", tls, **kwargs)

    def initialise_vault(self, pki: Path) -> tuple[str, ...]:
        """VaultInit on server-0, as the server chain does, through the project's own step; the keys."""
        auto_unseal = self.vault.seal_type != "shamir"
        return vault_init(self.api(pki, "vault"), auto_unseal, 5, 3, instant_poller()).unseal_keys

    def build(self, pki: Path) -> tuple[str, ...]:
        """The cluster an earlier run built: every server a healthy voter everywhere, Vault unsealed,
        Nomad's ACLs bootstrapped with the preset token. Returns the unseal keys."""
        self.boot(*self.names)
        keys = self.initialise_vault(pki)
        vault_unseal(self.api(pki, "vault"), keys, instant_poller())
        self.retry_join()
        for name in self.names[1:]:
            vault_unseal(self.api(pki, "vault", name), keys, instant_poller())
            self.vault_promote(name)
        self.form(*self.names)
        self.nomad_management = NOMAD_TOKEN
        return keys

    # -- Consul -----------------------------------------------------------------------------------
    def _route_consul(self, node: str, api: FakeApi) -> None:
        state = self.consul

        def leader(_seen: Seen) -> Answer:
            return upstream.consul_leader(f"{self.address(state.leader)}:8300" if state.knows_leader(node) else "")

        def forwarded(answer: Callable[[Seen], Answer]) -> Callable[[Seen], Answer]:
            return lambda seen: answer(seen) if state.knows_leader(node) else upstream.consul_no_leader()

        def management(answer: Callable[[Seen], Answer]) -> Callable[[Seen], Answer]:
            def check(seen: Seen) -> Answer:
                token = self.consul_tokens.get(seen.headers.get("X-Consul-Token", ""))
                if token is None:
                    return upstream.consul_acl_not_found()
                if "global-management" not in token["Policies"]:
                    return upstream.consul_permission_denied("acl:write", token["AccessorID"])
                return answer(seen)

            return check

        def token_self(seen: Seen) -> Answer:
            secret = seen.headers.get("X-Consul-Token", "")
            token = self.consul_tokens.get(secret)
            if token is None:
                return self.consul_unknown_token()
            return upstream.consul_token(secret, token["AccessorID"], token["Policies"])

        def policy_by_name(seen: Seen) -> Answer:
            policy = self.consul_policies.get(seen.path.rsplit("/", 1)[1])
            return upstream.consul_policy(policy) if policy else upstream.consul_policy_missing()

        def write_policy(seen: Seen) -> Answer:
            existing = seen.path.rsplit("/", 1)[1]
            policy = {**seen.body, "ID": existing if existing != "policy" else f"pol-{seen.body['Name']}"}
            self.consul_policies[policy["Name"]] = policy
            api.on("GET", f"/v1/acl/policy/name/{policy['Name']}", forwarded(management(policy_by_name)))
            api.on("PUT", f"/v1/acl/policy/{policy['ID']}", forwarded(management(write_policy)))
            return upstream.consul_written(policy)

        def write_token(seen: Seen) -> Answer:
            accessor = seen.body.get("AccessorID") or str(uuid.uuid4())
            self.consul_tokens[seen.body["SecretID"]] = {
                "AccessorID": accessor,
                "Description": seen.body.get("Description", ""),
                "Policies": [p["Name"] for p in seen.body["Policies"]],
            }
            api.on("PUT", f"/v1/acl/token/{accessor}", forwarded(management(write_token)))
            return upstream.consul_written({**seen.body, "AccessorID": accessor})

        def autopilot_health(_seen: Seen) -> Answer:
            return upstream.consul_autopilot_health(state.health(lambda n: n))

        def peers(_seen: Seen) -> Answer:
            return upstream.consul_peers([f"{self.address(n)}:8300" for n in sorted(state.servers)])

        api.on("GET", "/v1/status/leader", leader)
        api.on("GET", "/v1/status/peers", forwarded(peers))
        api.on("GET", "/v1/acl/token/self", forwarded(token_self))
        api.on("GET", "/v1/acl/tokens", forwarded(lambda _s: upstream.consul_tokens_denied()))
        for name in ("agent", "nomad-agent", "vault-service", "anonymous-dns"):
            api.on("GET", f"/v1/acl/policy/name/{name}", forwarded(management(policy_by_name)))
        api.on("PUT", "/v1/acl/policy", forwarded(management(write_policy)))
        api.on("PUT", "/v1/acl/token", forwarded(management(write_token)))
        api.on("GET", "/v1/operator/autopilot/health", forwarded(management(autopilot_health)))
        api.on(
            "POST", "/v1/operator/raft/transfer-leader", forwarded(management(lambda seen: self._transfer(state, seen)))
        )
        api.on("DELETE", "/v1/operator/raft/peer", forwarded(management(lambda seen: self._remove_peer(state, seen))))

    def _remove_peer(self, state: Raft, seen: Seen) -> Answer:
        """Consul's and Nomad's raft peer removal by id."""
        node = state.node_of(seen.query.get("id", ""))
        if node is None:  # Consul's answer to an unknown id is not in the contract (not read)
            return upstream.nomad_peer_unknown_id(seen.query.get("id", "")) if state is self.nomad else (404, "unread")
        state.servers.pop(node)
        state.joined.discard(node)
        return upstream.nomad_peer_removed() if state is self.nomad else upstream.consul_peer_removed()

    def _transfer(self, state: Raft, seen: Seen) -> Answer:
        """Consul's transfer-leader (the id optional) and Nomad's transfer-leadership (the id required)."""
        nomad = state is self.nomad
        wanted = seen.query.get("id")
        if nomad and not wanted:
            return upstream.nomad_transfer_needs_id()
        if nomad and not _is_uuid(wanted):
            return upstream.nomad_transfer_id_not_uuid(wanted)
        target = state.node_of(wanted) if wanted else next((n for n in sorted(state.joined) if n != state.leader), None)
        if target is None:
            return upstream.nomad_transfer_unknown_id(wanted or "")
        previous, state.leader = state.leader, target
        if nomad:
            return upstream.nomad_leadership_transferred(
                state.raft_id(previous),
                f"{self.address(previous)}:4647",
                state.raft_id(target),
                f"{self.address(target)}:4647",
            )
        return upstream.consul_leadership_transferred()

    # -- Nomad ------------------------------------------------------------------------------------
    def _route_nomad(self, node: str, api: FakeApi) -> None:
        state = self.nomad

        def leader_address() -> str:
            return f"{self.address(state.leader)}:4647" if state.knows_leader(node) else ""

        def leader(seen: Seen) -> Answer:
            if "stale" in seen.query or state.knows_leader(node):
                return upstream.nomad_leader(leader_address())
            return upstream.nomad_no_leader()

        def forwarded(answer: Callable[[Seen], Answer]) -> Callable[[Seen], Answer]:
            return lambda seen: answer(seen) if state.knows_leader(node) else upstream.nomad_no_leader()

        def authenticated(answer: Callable[[Seen], Answer]) -> Callable[[Seen], Answer]:
            """The leader resolves the token against its state (the request was forwarded)."""

            def check(seen: Seen) -> Answer:
                if self.nomad_management and seen.headers.get("X-Nomad-Token") == self.nomad_management:
                    return answer(seen)
                return upstream.nomad_permission_denied()

            return check

        def token_self(seen: Seen) -> Answer:
            secret = seen.headers.get("X-Nomad-Token")
            if not secret:
                return upstream.nomad_anonymous_token()
            if secret == self.nomad_management:
                return upstream.nomad_token(secret, "acc-nomad-management")
            if self.nomad_version == "1.10.0":
                return upstream.nomad_unknown_token_v1_10_0()
            return upstream.nomad_unknown_token()

        def bootstrap(seen: Seen) -> Answer:
            if self.nomad_management is not None:
                return upstream.nomad_acl_already_bootstrapped(self.nomad_reset_index)
            self.nomad_management = seen.body["BootstrapSecret"]
            return upstream.nomad_acl_bootstrapped(self.nomad_management, "acc-nomad-management")

        def autopilot_health(_seen: Seen) -> Answer:
            return upstream.nomad_autopilot_health(state.health(lambda n: f"{n}.global"))

        def jobs(seen: Seen) -> Answer:
            if seen.headers.get("X-Nomad-Token") != self.nomad_management or not self.nomad_management:
                return upstream.nomad_jobs_denied()
            return upstream.nomad_jobs(self.nomad_jobs)

        api.on("GET", "/v1/status/leader", leader)
        api.on("GET", "/v1/status/peers", forwarded(lambda _s: upstream.nomad_peers(self._nomad_peers())))
        api.on("GET", "/v1/acl/token/self", forwarded(token_self))
        api.on("POST", "/v1/acl/bootstrap", forwarded(bootstrap))
        api.on("GET", "/v1/operator/autopilot/health", forwarded(authenticated(autopilot_health)))
        api.on(
            "PUT",
            "/v1/operator/raft/transfer-leadership",
            forwarded(authenticated(lambda seen: self._transfer(state, seen))),
        )
        api.on(
            "DELETE", "/v1/operator/raft/peer", forwarded(authenticated(lambda seen: self._remove_peer(state, seen)))
        )
        api.on("GET", "/v1/jobs", forwarded(jobs))

    def _nomad_peers(self) -> list[str]:
        return [f"{self.address(n)}:4647" for n in sorted(self.nomad.servers)]

    # -- Vault ------------------------------------------------------------------------------------
    def _route_vault(self, node: str, api: FakeApi) -> None:
        state = self.vault

        def seal_status_of() -> Answer:
            initialized = node in state.has_data or node in state.challenged
            if node in state.finishing:  # the join completed; the unseal finishes in the background
                state.finishing[node] -= 1
                if state.finishing[node] <= 0:
                    del state.finishing[node]
                    state.unsealed.add(node)
            threshold, shares = (state.threshold, state.shares) if initialized else (0, 0)
            return upstream.vault_seal_status(
                initialized=initialized,
                sealed=node not in state.unsealed,
                threshold=threshold,
                shares=shares,
                progress=len(state.given.get(node, [])),
                seal_type=state.seal_type,
            )

        def init_status(_seen: Seen) -> Answer:
            return upstream.vault_init_status(node in state.has_data or node in state.challenged)

        def init(seen: Seen) -> Answer:
            if state.initialized:
                return upstream.vault_already_initialised()
            auto = state.seal_type != "shamir"
            kind = "recovery" if auto else "secret"
            state.shares, state.threshold = seen.body[f"{kind}_shares"], seen.body[f"{kind}_threshold"]
            answer = upstream.vault_initialised(VAULT_ROOT, state.shares, auto)
            state.initialized, state.leader = True, node
            self._vault_joined(node)
            state.non_voters.discard(node)
            state.keys = [] if auto else answer.body["keys_base64"]
            if auto:
                state.unsealed.add(node)
            return answer

        def unseal(seen: Seen) -> Answer:
            if node in state.unsealed:
                return seal_status_of()
            if node not in state.has_data and node not in state.challenged:
                return upstream.vault_not_initialised()
            key = seen.body["key"]
            if key not in state.keys:
                return upstream.vault_invalid_key()
            given = state.given.setdefault(node, [])
            if key not in given:  # a share given twice counts once
                given.append(key)
            if len(given) >= state.threshold:
                state.given[node] = []
                if node in state.challenged:  # the join completes, then the unseal, in the background
                    state.challenged.discard(node)
                    self._vault_joined(node)
                    state.finishing[node] = state.finishing_reads
                else:
                    state.unsealed.add(node)
                if state.leader is None:
                    state.leader = node
            return seal_status_of()

        def unsealed_with_root(answer: Callable[[Seen], Answer]) -> Callable[[Seen], Answer]:
            def check(seen: Seen) -> Answer:
                if node not in state.unsealed:
                    return upstream.vault_sealed()
                if seen.headers.get("X-Vault-Token") != VAULT_ROOT:
                    return upstream.vault_permission_denied()
                return answer(seen)

            return check

        def autopilot_state(_seen: Seen) -> Answer:
            if state.leader is None:
                return upstream.vault_autopilot_not_ready()
            servers = {
                n: {"status": "non-voter" if n in state.non_voters else "voter", "healthy": n in state.unsealed}
                for n in sorted(state.members)
            }
            return upstream.vault_autopilot_state(state.leader, servers)

        def sys_leader(_seen: Seen) -> Answer:
            if node not in state.unsealed:
                return upstream.vault_sealed()
            address = f"https://{self.address(state.leader)}:8200" if state.leader else ""
            return upstream.vault_leader(address, is_self=state.leader == node)

        def raft_configuration(_seen: Seen) -> Answer:
            return upstream.vault_raft_configuration({n: n not in state.non_voters for n in sorted(state.members)})

        def health(seen: Seen) -> Answer:
            return upstream.vault_health(
                seen.query,
                initialized=node in state.has_data or node in state.challenged,
                sealed=node not in state.unsealed,
                standby=state.leader != node,
                version=state.versions.get(node, upstream.PINNED["vault"]),
            )

        def step_down(_seen: Seen) -> Answer:
            others = sorted(n for n in state.unsealed & state.members if n != node)
            if state.leader == node and others and state.step_down_moves:
                state.leader = others[0]
            return upstream.vault_stepped_down()

        def remove_peer(seen: Seen) -> Answer:
            state.members.discard(seen.body["server_id"])
            return upstream.vault_peer_removed()

        api.on("GET", "/v1/sys/health", health)
        api.on("POST", "/v1/sys/storage/raft/remove-peer", unsealed_with_root(remove_peer))
        api.on("PUT", "/v1/sys/step-down", unsealed_with_root(step_down))
        api.on("GET", "/v1/sys/init", init_status)
        api.on("PUT", "/v1/sys/init", init)
        api.on("GET", "/v1/sys/seal-status", lambda _seen: seal_status_of())
        api.on("PUT", "/v1/sys/unseal", unseal)
        api.on("GET", "/v1/sys/storage/raft/autopilot/state", unsealed_with_root(autopilot_state))
        api.on("GET", "/v1/sys/storage/raft/configuration", unsealed_with_root(raft_configuration))
        api.on("GET", "/v1/sys/leader", sys_leader)
        api.on("GET", "/v1/sys/policies/acl", unsealed_with_root(lambda _s: upstream.vault_token_lookup(["root"])))
        api.on(
            "GET", "/v1/auth/token/lookup-self", unsealed_with_root(lambda _s: upstream.vault_token_lookup(["root"]))
        )
