"""The contract: what the pinned Consul, Nomad and Vault answer, each answer with where it was read.

The fakes in tests/fake_cluster.py answer only through the functions here, so every canned answer
the bootstrap, gate, `make unseal` and `make doctor` tests rely on names its upstream source
(repository, tag or commit, file, function). Pinned versions: Pulumi.yaml's consulVersion,
nomadVersion and vaultVersion (tests/test_upstream_contract.py keeps PINNED equal to them).

How each was read:
  * Nomad: the git mirror of hashicorp/nomad at the newest tag of the pinned line it holds, v2.0.5
    (`git show v2.0.5:<path>`; 2.0.7 is newer than the mirror). Every Nomad source was re-read there
    when the pin moved from 1.10.3.
  * Consul and Vault: too large to clone here; single stored file versions of hashicorp/consul and
    hashicorp/vault at the commits named, which are near, not at, the pinned tags. Each source says
    which commit and how it relates to the pinned release, and "derived" where a detail follows from
    reading (e.g. Go's net/http rules) rather than from a line that says it.

Re-checking for a new version: for every Answer source in SOURCES, open the named file at the new
tag, compare the status and the body, update the text here, then run the suite: the fakes, and
so the tests of the code that depends on each answer, follow.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

PINNED = {"consul": "2.0.4", "nomad": "2.0.7", "vault": "2.1.1"}
JSON = "application/json"
TEXT = "text/plain; charset=utf-8"

NOMAD_TAG = "v2.0.5"
"""The newest tag of the pinned Nomad line the mirror holds (2.0.7 came out after its last fetch)."""
NOMAD = f"hashicorp/nomad {NOMAD_TAG}"
CONSUL = "hashicorp/consul 3e2a818a (main after v1.21; v1.21.2 itself not readable here)"
CONSUL_HTTP = (
    f"{CONSUL} agent/http.go wrap: errors are text/plain, acl.ErrNotFound/ErrPermissionDenied -> 403, others 500"
)


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any
    """JSON (dict, list, str) when content_type is JSON; the exact text otherwise."""
    source: str
    content_type: str = JSON


SOURCES: dict[str, str] = {}
"""Answer name -> where it was read: the whole contract as one list, filled as the module loads."""


def answers(source: str) -> Callable[[Callable[..., tuple]], Callable[..., Answer]]:
    """Registers `source` for the decorated answer, which returns (status, body[, content type])."""

    def register(build: Callable[..., tuple]) -> Callable[..., Answer]:
        SOURCES[build.__name__] = source

        @functools.wraps(build)
        def answer(*args: Any, **kwargs: Any) -> Answer:
            status, body, *content_type = build(*args, **kwargs)
            return Answer(status, body, source, *content_type)

        return answer

    return register


def _autopilot_health(servers: list[dict[str, Any]], listed: list[dict[str, Any]] | None) -> tuple:
    """Consul's and Nomad's /v1/operator/autopilot/health alike: 429 with the body when any server is unhealthy."""
    healthy = bool(servers) and all(s.get("Healthy") for s in servers)
    body = {"Healthy": healthy, "FailureTolerance": 0, "Servers": listed}
    return (200, body) if healthy else (429, body, TEXT)


# -- Nomad v2.0.5 -----------------------------------------------------------------------------------
_NOMAD_WRAP = f"{NOMAD} command/agent/http.go wrap L740-826 (errors text/plain, the bare message)"


@answers(
    f"{NOMAD} nomad/rpc.go forward L600-605, getLeaderForRPC L645-659 (held RPCHoldTimeout, 5 s: nomad/config.go "
    f"L687) -> structs.ErrNoLeader (nomad/structs/errors.go L14); {_NOMAD_WRAP}: 500"
)
def nomad_no_leader():
    """Any request Nomad forwards to its leader (default-consistency reads, writes) while it has none."""
    return 500, "No cluster leader", TEXT


@answers(
    f"{NOMAD} nomad/auth/auth.go Authenticate L156-184 (a token not in state -> ErrPermissionDenied); {_NOMAD_WRAP} "
    f"suffix match L773: 403"
)
def nomad_permission_denied():
    return 403, "Permission denied", TEXT


@answers(
    f"{NOMAD} nomad/status_endpoint.go Leader L46-55 (stale: the local raft's leader, '' without one: nomad/rpc.go "
    f"forward L600; ?stale parsed by command/agent/http.go parseConsistency L950-968)"
)
def nomad_leader(leader: str):
    """/v1/status/leader?stale=true on any server, or without ?stale once a leader exists."""
    return 200, leader


@answers(f"{NOMAD} nomad/status_endpoint.go Peers L60-82 (raft configuration addresses; no ACL check)")
def nomad_peers(addresses: list[str]):
    return 200, addresses


@answers(
    f"{NOMAD} command/agent/acl_endpoint.go aclTokenSelf L273-292 -> nomad/acl_endpoint.go WhoAmI L2212-2218 "
    f"(authenticates locally, then forwards: a consistent read is answered by the leader's state)"
)
def nomad_token(secret: str, accessor: str, kind: str = "management"):
    return 200, {"AccessorID": accessor, "SecretID": secret, "Name": "Bootstrap Token", "Type": kind}


@answers(
    f"{NOMAD} nomad/auth/auth.go resolveSecretToken L866-898 (no secret -> the anonymous token, nomad/structs/"
    f"acl.go AnonymousACLToken L244-250); no upstream test covers it"
)
def nomad_anonymous_token():
    return 200, {"AccessorID": "anonymous", "Name": "Anonymous Token", "Type": "client", "Policies": ["anonymous"]}


@answers(
    f"{NOMAD} WhoAmI -> Authenticate -> ErrPermissionDenied (auth.go L184), asserted in nomad/acl_endpoint_test.go "
    f"~L2079; new in v1.10.1 (commit df3b00bce0, #25547; website/content/docs/upgrade/upgrade-specific.mdx@v1.10.3 "
    f"L50-60, the docs having left the repository by v2.0)"
)
def nomad_unknown_token():
    """/v1/acl/token/self with a secret the leader does not know."""
    return 403, "Permission denied", TEXT


@answers("hashicorp/nomad v1.10.0 command/agent/acl_endpoint.go aclTokenSelf L239-240 (ACL.ResolveToken: 404)")
def nomad_unknown_token_v1_10_0():
    return 404, "ACL token not found", TEXT


@answers(f"{NOMAD} command/agent/acl_endpoint.go L145-170; nomad/acl_endpoint.go Bootstrap L488-500 (the token)")
def nomad_acl_bootstrapped(secret: str, accessor: str):
    return 200, {"AccessorID": accessor, "SecretID": secret, "Name": "Bootstrap Token", "Type": "management"}


@answers(f"{NOMAD} nomad/acl_endpoint.go Bootstrap L478 NewErrRPCCodedf(400, ...) -> http.go wrap L768: 400")
def nomad_acl_already_bootstrapped(reset_index: int):
    return 400, f"ACL bootstrap already done (reset index: {reset_index})", TEXT


@answers(f"{NOMAD} nomad/acl_endpoint.go L38 aclDisabled = NewErrRPCCoded(400, ...), Bootstrap L444-445")
def nomad_acl_disabled():
    return 400, "ACL support disabled", TEXT


@answers(f"{NOMAD} nomad/acl_endpoint.go Bootstrap L480 (the reset file <data_dir>/server/acl-bootstrap-reset): 400")
def nomad_acl_wrong_reset_index(specified: int, reset_index: int):
    return 400, f"Invalid bootstrap reset index (specified {specified}, reset index: {reset_index})", TEXT


@answers(
    f"{NOMAD} command/agent/operator_endpoint.go L220-267 (L236-237: WriteHeader(429) when unhealthy, the body still "
    f"written; its Content-Type derived from net/http, not read); nomad/operator_endpoint.go ServerHealth L381-415 "
    f"(always forwarded; operator:read); Name = <node>.<region> (nomad/server.go setupSerf L1740); api/operator_autopilot.go@v2.0.5 "
    f"ServerHealth L100-137: ID (raft id), Version, Leader beside Healthy and Voter"
)
def nomad_autopilot_health(servers: list[dict[str, Any]]):
    """servers: {"ID", "Name": "<node>.<region>", "Version", "Leader", "Healthy", "Voter"}."""
    return _autopilot_health(servers, servers)


NOMAD_TRANSFER = (
    "hashicorp/nomad v2.0.5 command/agent/operator_endpoint.go OperatorRaftTransferLeadership L91-139 (PUT or POST; "
    "'must specify id or address' -> 400); nomad/operator_endpoint.go TransferLeadershipToPeer L190-305 (forwarded "
    "to the leader; management token only; an id not in the raft configuration -> 400; the leader itself -> Noop)"
)


@answers(
    f"{NOMAD_TRANSFER}; nomad/structs/operator.go LeadershipTransferResponse L111-116, RaftIDAddress L118-121 (From, To, Noop, Err)"
)
def nomad_leadership_transferred(from_id: str, from_address: str, to_id: str, to_address: str):
    noop = from_id == to_id
    body = {
        "From": {"Address": from_address, "ID": from_id},
        "To": {"Address": to_address, "ID": to_id},
        "Noop": noop,
        "Err": None,
    }
    return 200, body


@answers(f"{NOMAD_TRANSFER}; {_NOMAD_WRAP}: the CodedError's text")
def nomad_transfer_needs_id():
    return 400, "must specify id or address", TEXT


@answers(
    f"{NOMAD_TRANSFER}; nomad/structs/operator.go@v2.0.5 validateID ('id must be a uuid: %w'; go-uuid v1.0.3 uuid.go ParseUUID L62 'uuid string is wrong length'); {_NOMAD_WRAP}"
)
def nomad_transfer_id_not_uuid(server_id: str):
    return 400, "id must be a uuid: uuid string is wrong length", TEXT


@answers(f"{NOMAD_TRANSFER}; {_NOMAD_WRAP}: the RPC's coded error text")
def nomad_transfer_unknown_id(server_id: str):
    return 400, f'id "{server_id}" was not found in the Raft configuration', TEXT


@answers(
    "hashicorp/nomad v2.0.5 command/agent/operator_endpoint.go OperatorRaftPeer L62-88 (DELETE, ?id= only: 'Removing a "
    "peer by address is not supported'; returns nil, nil: 200 and no body); nomad/operator_endpoint.go "
    "RaftRemovePeerByID L120-184 (management token; 'id %q was not found in the Raft configuration')"
)
def nomad_peer_removed():
    return 200, None


@answers(
    "hashicorp/nomad v2.0.5 nomad/operator_endpoint.go RaftRemovePeerByID L153 (an uncoded fmt.Errorf: the wrap "
    "answers 500 with its text)"
)
def nomad_peer_unknown_id(server_id: str):
    return 500, f'id "{server_id}" was not found in the Raft configuration', TEXT


@answers(f"{NOMAD} nomad/job_endpoint.go List L1399-1418 (a JSON array of job stubs)")
def nomad_jobs(jobs: list[dict[str, Any]]):
    return 200, jobs


@answers(f"{NOMAD} nomad/job_endpoint.go List L1399-1418 (list-jobs denied to the anonymous token): 403")
def nomad_jobs_denied():
    return 403, "Permission denied", TEXT


@answers(
    f"{NOMAD} command/agent/node_endpoint.go NodesRequest L15-43 (a JSON array of api/nodes.go NodeListStub: "
    f"ID, Name, Status, SchedulingEligibility, Drain, ...; [] when none; node:read); nomad/structs/structs.go "
    f"Node.Stub L2296 and NodeListStub L2337-2360: Version (the client's Nomad), CreateIndex (a new node's, "
    f"higher than any before)"
)
def nomad_nodes(stubs: list[dict[str, Any]]):
    """stubs: {"ID", "Name", "Status" ("initializing", "ready", "down"), "SchedulingEligibility", "Drain"[,
    "Version", "CreateIndex"]}."""
    return 200, stubs


@answers(
    f"{NOMAD} command/agent/node_endpoint.go nodeQuery L177-197 (api/nodes.go Node; DrainStrategy null once a "
    f'drain is over: api/nodes.go MonitorDrain L277); 404 "node not found" for an unknown id'
)
def nomad_node(node: dict[str, Any] | None):
    return (200, node) if node is not None else (404, "node not found", TEXT)


@answers(
    f"{NOMAD} command/agent/node_endpoint.go nodeToggleDrain L117-152 (PUT or POST; body api/nodes.go "
    f"NodeUpdateDrainRequest {{DrainSpec {{Deadline ns, IgnoreSystemJobs}}, MarkEligible}}; answers "
    f"NodeDrainUpdateResponse; node:write)"
)
def nomad_drain_updated(eval_ids: list[str]):
    return 200, {"NodeModifyIndex": 42, "EvalIDs": eval_ids, "EvalCreateIndex": 43}


# -- Consul 1.21.2 ----------------------------------------------------------------------------------
@answers(f"{CONSUL} agent/consul/rpc.go getLeader -> structs.ErrNoLeader after the RPC hold; {CONSUL_HTTP}")
def consul_no_leader():
    """Any request Consul forwards to its leader while it has none."""
    return 500, "No cluster leader", TEXT


@answers(
    f"{CONSUL} agent/consul/status_endpoint.go Peers (the raft configuration's addresses; not read line by line "
    f"here: the shape from the same file's Leader and the API docs)"
)
def consul_peers(addresses: list[str]):
    return 200, addresses


@answers(
    f"{CONSUL} agent/consul/status_endpoint.go Leader ('not using the regular forward function': the local raft's "
    f"leader, '' without one; no ACL check)"
)
def consul_leader(leader: str):
    return 200, leader


@answers(
    f"{CONSUL} agent/acl_endpoint.go ACLTokenSelf -> agent/consul/acl_endpoint.go TokenRead (a lookup by secret "
    f"needs no permission); policy names filled in on read (state store fixupTokenPolicyLinks)"
)
def consul_token(secret: str, accessor: str, policies: list[str]):
    return 200, {
        "AccessorID": accessor,
        "SecretID": secret,
        "Policies": [{"ID": f"id-{p}", "Name": p} for p in policies],
    }


@answers(
    f"{CONSUL} agent/consul/acl_endpoint.go TokenRead (fmt.Errorf('token does not exist: %w', acl.ErrNotFound); the "
    f"same in forks at ~1.16 and ~1.17) reaches {CONSUL_HTTP} before ACLTokenSelf's 404 branch"
)
def consul_unknown_token():
    """/v1/acl/token/self with a secret Consul does not know, as the code reads.

    The v1.15.0 changelog documents 404 instead (consul_unknown_token_as_documented). Only a live
    1.21.2 can settle which it is; the bootstrap treats both as "absent".
    """
    return 403, "token does not exist: ACL not found", TEXT


@answers(
    "hashicorp/consul CHANGELOG.md 1.15.0 BREAKING CHANGES, GH-16105 (.changelog/16105.txt); "
    "agent/acl_endpoint.go@7fa1034d ACLTokenSelf HTTPError{404, 'Supplied token does not exist'}"
)
def consul_unknown_token_as_documented():
    return 404, "Supplied token does not exist", TEXT


@answers(f"{CONSUL} agent/acl_endpoint.go ACLPolicyRead (200, the policy with its ID)")
def consul_policy(policy: dict[str, Any]):
    return 200, policy


@answers(
    f"{CONSUL} agent/acl_endpoint.go ACLPolicyRead: HTTPError 404 acl.ACLResourceNotExistError('policy') "
    f"(acl/errors.go 'Requested %s does not exist: %w')"
)
def consul_policy_missing():
    return 404, "Requested policy does not exist: ACL not found", TEXT


@answers(
    f"{CONSUL} agent/acl_endpoint.go ACLPolicyCreate, ACLTokenCreate and their updates -> ACL.PolicySet, "
    f"agent/consul/auth/token_writer.go Create/Update (200 with the object, its ID or AccessorID generated)"
)
def consul_written(body: dict[str, Any]):
    return 200, body


@answers(f"{CONSUL} acl/errors.go PermissionDeniedError; {CONSUL_HTTP}")
def consul_permission_denied(permission: str, accessor: str | None = None):
    who = f"token with AccessorID '{accessor}'" if accessor else "anonymous token"
    return 403, f"Permission denied: {who} lacks permission '{permission}'", TEXT


@answers(f"{CONSUL} acl/errors.go errNotFound; the ACL resolver for a token it cannot find; {CONSUL_HTTP}")
def consul_acl_not_found():
    """A request that needs a permission, made with a token Consul cannot resolve."""
    return 403, "ACL not found", TEXT


@answers(
    f"{CONSUL} agent/operator_endpoint.go OperatorServerHealth ('Reply with status 429 if something is unhealthy', "
    f"the body still written, its Content-Type derived from net/http; forwarded to the leader before the "
    f"operator:read check); api/operator_autopilot.go (Name: the node name; ID the raft id, Version, Leader)"
)
def consul_autopilot_health(servers: list[dict[str, Any]]):
    """servers: {"ID", "Name": "<node>", "Version", "Leader", "Healthy", "Voter"}; none yet: "Servers": null."""
    return _autopilot_health(servers, servers or None)


CONSUL_TRANSFER = (
    "hashicorp/consul 03384f86 agent/http_register.go ('/v1/operator/raft/transfer-leader', []string{\"POST\"}: "
    "POST only); agent/operator_endpoint.go OperatorRaftTransferLeader (id optional: none picks any voter)"
)


@answers(
    "hashicorp/consul 03384f86 agent/http_register.go ('/v1/operator/raft/peer', []string{\"DELETE\"}); "
    "agent/operator_endpoint.go OperatorRaftPeer (?id= or ?address=; returns nil, nil: 200, no body); "
    "api/operator_raft.go RaftRemovePeerByID"
)
def consul_peer_removed():
    return 200, None


@answers(f"{CONSUL_TRANSFER}; api/operator_raft.go TransferLeaderResponse (Success)")
def consul_leadership_transferred():
    return 200, {"Success": True}


@answers(f"{CONSUL} api/acl_test.go TestAPI_ACLBootstrap (anonymous acl:read denied); {CONSUL_HTTP}")
def consul_tokens_denied():
    return 403, "Permission denied: anonymous token lacks permission 'acl:read'", TEXT


# -- Vault 1.20.0 -----------------------------------------------------------------------------------
VAULT = "hashicorp/vault"
VAULT_RAFT = f"{VAULT} vault/logical_system_raft.go@89452382 (main at 1.21.0-beta1, right after the 1.20 branch)"
VAULT_SEAL = (
    f"{VAULT} http/sys_seal.go (read_file id 2356579708, 1.19+) and vault/core.go unsealFragment (id 517992563)"
)


@answers(f"{VAULT} http/handler.go (id 705296513) respondError + AdjustErrorStatusCode: consts.ErrSealed -> 503")
def vault_sealed():
    """Any request that needs an unsealed Vault (autopilot state, raft configuration, sys/leader)."""
    return 503, {"errors": ["Vault is sealed"]}


@answers(
    f"{VAULT} http/handler.go respondError: logical.ErrPermissionDenied -> 403 (a wrong token also says 'invalid token', wording not read)"
)
def vault_permission_denied():
    return 403, {"errors": ["permission denied"]}


@answers(
    f"{VAULT} http/sys_init.go handleSysInitGet (id 869602396); vault/init.go Initialized (id 1090531999: a Shamir "
    f"node holding the leader's join challenge counts as initialised)"
)
def vault_init_status(initialized: bool):
    return 200, {"initialized": initialized}


@answers(
    f"{VAULT} http/sys_init.go handleSysInitPut, validateInitParameters (id 869602396): Shamir -> keys, keys_base64; "
    f"awskms -> keys [] and recovery_keys(_base64)"
)
def vault_initialised(root_token: str, shares: int, auto_unseal: bool):
    hex_shares = [f"{i:02x}" * 33 for i in range(shares)]
    base64_shares = [f"c2hhcmUt{i}" + "A" * 36 for i in range(shares)]
    if auto_unseal:
        keys = {"keys": [], "keys_base64": [], "recovery_keys": hex_shares, "recovery_keys_base64": base64_shares}
    else:
        keys = {"keys": hex_shares, "keys_base64": base64_shares}
    return 200, {**keys, "root_token": root_token}


@answers(f"{VAULT} vault/init.go Initialize ErrAlreadyInit; http/sys_init.go: 400")
def vault_already_initialised():
    return 400, {"errors": ["Vault is already initialized"]}


@answers(
    f"{VAULT_SEAL}; vault/logical_system.go GetSealStatus (id 89546293, ~1.16); vault/raft.go answerChallenge "
    f"(id 186299257: with the leader's challenge, t and n are the leader's); api/sys_seal.go SealStatusResponse"
)
def vault_seal_status(
    *, initialized: bool, sealed: bool, threshold: int, shares: int, progress: int, seal_type: str = "shamir"
):
    """/v1/sys/seal-status, also the body of every answered /v1/sys/unseal (always 200).

    A raft follower without the leader's join challenge: initialized False, t 0, n 0. Once it holds
    it (Shamir): initialized True with the leader's t and n. Unsealed: cluster_name and cluster_id.
    """
    body = {
        "type": seal_type,
        "initialized": initialized,
        "sealed": sealed,
        "t": threshold,
        "n": shares,
        "progress": progress,
        "nonce": "",
        "version": PINNED["vault"],
        "migration": False,
        "recovery_seal": seal_type != "shamir",
        "storage_type": "raft",
    }
    if not sealed:
        body |= {"cluster_name": "vault-cluster-hashistack", "cluster_id": "5f0b6e6c-0000-4000-8000-000000000001"}
    return 200, body


@answers(f"{VAULT_SEAL}: 'if !init && !c.isRaftUnseal() {{ return ErrNotInit }}', errwrap.Contains -> 400")
def vault_not_initialised():
    """PUT /v1/sys/unseal on a raft follower that holds no join challenge yet."""
    return 400, {"errors": ["Vault is not initialized"]}


@answers(f"{VAULT_SEAL}: ErrInvalidKey -> 400; vault/seal_util.go decodeBarrierKeys (PR #17836; wording derived)")
def vault_invalid_key():
    """A wrong key share (wrong length at once; a wrong share of the right length at the threshold)."""
    return 400, {"errors": ["unable to retrieve stored keys: invalid key: failed to decrypt keys from storage"]}


@answers(
    f"{VAULT_RAFT} handleStorageRaftAutopilotState (a logical.Response: under 'data'); physical/raft/"
    f"raft_autopilot.go@d08e783a (Status: string(srv.State), keyed by node id); hashicorp/raft-autopilot v0.3.0 "
    f"state.go buildServerState ('if srv.ID == inputs.LeaderID {{ state.State = RaftLeader }}'); new servers are "
    f"non-voters until stable"
)
def vault_autopilot_state(leader: str, servers: dict[str, dict[str, Any]]):
    """servers: node id -> {"status": "voter" | "non-voter", "healthy": bool}; the leader's status is "leader"."""
    entries = {
        node: {
            "id": node,
            "name": node,
            "address": f"{node}:8201",
            "node_status": "alive",
            "last_contact": "0s" if node == leader else "1.2s",
            "healthy": server["healthy"],
            "status": "leader" if node == leader else server["status"],
            "node_type": "voter",
        }
        for node, server in servers.items()
    }
    data = {
        "healthy": all(e["healthy"] for e in entries.values()),
        "failure_tolerance": max(0, (len(entries) - 1) // 2),
        "leader": leader,
        "voters": [n for n, e in entries.items() if e["status"] in ("leader", "voter")],
        "servers": entries,
    }
    return 200, {"request_id": "r", "data": data, "mount_type": "system"}


@answers(f"{VAULT_RAFT} handleStorageRaftAutopilotState 'if state == nil {{ return nil, nil }}' -> 404, errors []")
def vault_autopilot_not_ready():
    """Before autopilot has state on the active node."""
    return 404, {"errors": []}


@answers(f"{VAULT} http/sys_leader.go (id 1472244637); vault/logical_system.go GetLeaderStatus (answered locally)")
def vault_leader(leader_address: str, is_self: bool):
    return 200, {"ha_enabled": True, "is_self": is_self, "leader_address": leader_address, "performance_standby": False}


@answers(f"{VAULT_RAFT} handleRaftConfigurationGet (data.config.servers; read, no sudo; forwarded to the active node)")
def vault_raft_configuration(voters: dict[str, bool]):
    """voters: node id -> whether it votes."""
    servers = [
        {"node_id": n, "address": f"{n}:8201", "leader": i == 0, "protocol_version": "3", "voter": v}
        for i, (n, v) in enumerate(voters.items())
    ]
    return 200, {"data": {"config": {"servers": servers, "index": 42}}}


@answers(f"{VAULT} vault/token_store.go handleLookupSelf (200; the root token: policies ['root'], ttl 0)")
def vault_token_lookup(policies: list[str]):
    return 200, {"data": {"policies": policies, "ttl": 0}}


VAULT_HEALTH = (
    f"{VAULT} http/sys_health.go@05aae7c6 getSysHealth: codes active 200, standby 429 unless standbyok, sealed 503 "
    f"(sealedcode), not initialised 501 (uninitcode); the body always written (HealthResponse: initialized, "
    f"sealed, standby, version, ...); removed_from_cluster (1.19+) not in that copy"
)


@answers(VAULT_HEALTH)
def vault_health(query: dict[str, str], *, initialized: bool, sealed: bool, standby: bool, version: str):
    code = 200
    if not initialized:
        code = int(query.get("uninitcode", 501))
    elif sealed:
        code = int(query.get("sealedcode", 503))
    elif standby and query.get("standbyok") not in ("true", "1"):
        code = int(query.get("standbycode", 429))
    body = {
        "initialized": initialized,
        "sealed": sealed,
        "standby": standby,
        "performance_standby": False,
        "replication_performance_mode": "disabled",
        "replication_dr_mode": "disabled",
        "server_time_utc": 1796000000,
        "version": version,
    }
    return code, body


@answers(
    f"{VAULT} http/sys_seal.go handleSysStepDown (read_file id 2356579708): UpdateOperation (PUT/POST) -> "
    f"core.StepDown, respondOk(w, nil): 204 and no body; vault/ha.go StepDown needs a root (sudo) token"
)
def vault_stepped_down():
    return 204, None


@answers(
    f"{VAULT_RAFT} handleRaftRemovePeerUpdate (server_id; no response data: 204; sudo on sys/storage/raft/remove-peer)"
)
def vault_peer_removed():
    return 204, None
