"""What each bootstrap step does against the cluster's APIs (DESIGN decisions 2-4), without Pulumi.

Each step waits for its API with a deadline, is idempotent ("already done" is success when the preset
secret authenticates), and fails with the recovery procedure otherwise. The dynamic resources in
components/bootstrap/cluster.py call these; tests/dynamic/test_agent_api.py runs them against local HTTPS
servers that answer as the pinned Nomad, Consul and Vault do (every answer and its upstream source:
tests/upstream.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from components.dynamic.http_api import HttpsApi, Poller, Response, Unreachable

WAIT_SECONDS = 15 * 60  # a cluster's first leader election waits for every server's first boot


class BootstrapError(Exception):
    pass


# -- Nomad ------------------------------------------------------------------------------------------
NOMAD_RESET_FILE = "/opt/nomad/data/server/acl-bootstrap-reset"


def is_management_token(token: Any) -> bool:
    """A /v1/acl/token/self body of a management token (not the anonymous or a client token)."""
    return isinstance(token, dict) and token.get("Type") == "management"


def _nomad_management_accessor(nomad: HttpsApi, secret: str) -> str | None:
    """The accessor of `secret` when Nomad knows it as a management token, else None.

    Without a token Nomad answers with the anonymous token (200, Type "client"); an unknown one is
    403 "Permission denied" from v1.10.1 and 404 "ACL token not found" in v1.10.0 (tests/upstream.py).
    """
    mine = nomad.get("/v1/acl/token/self", headers={"X-Nomad-Token": secret})
    return mine.body["AccessorID"] if mine.ok and is_management_token(mine.body) else None


def nomad_acl_bootstrap(nomad: HttpsApi, bootstrap_secret: str, poller: Poller) -> str:
    """Bootstraps Nomad's ACLs with the preset secret; returns the management token's accessor id.

    The bootstrap is a write that Nomad forwards to its leader: without one it answers 500 "No
    cluster leader" after holding the request ~5 s, which is worth waiting for.
    """
    accessor: list[str] = []

    def bootstrapped() -> tuple[bool, str]:
        answer = nomad.request("POST", "/v1/acl/bootstrap", {"BootstrapSecret": bootstrap_secret})
        if answer.ok:
            accessor.append(answer.body["AccessorID"])
            poller.log("Nomad: ACLs bootstrapped with the preset management token")
            return True, "bootstrapped"
        text = str(answer.body)
        if answer.status == 400 and "already done" in text:
            mine = _nomad_management_accessor(nomad, bootstrap_secret)
            if mine is None:
                raise BootstrapError(_nomad_taken(text))
            accessor.append(mine)
            poller.log("Nomad: ACLs already bootstrapped with the preset token")
            return True, "already bootstrapped"
        if answer.status == 400 and "Invalid bootstrap reset index" in text:
            raise BootstrapError(
                f"Nomad refused the ACL bootstrap: {text}. The file "
                f"{NOMAD_RESET_FILE} on the leader holds another index: write the one Nomad names there "
                "(or delete the file) and run `pulumi up` again."
            )
        if answer.status >= 500:
            return False, f"no Nomad leader yet ({answer.status} {text!r})"
        raise BootstrapError(f"Nomad ACL bootstrap failed: {answer.status} {text}")

    poller.until("Nomad", bootstrapped)
    return accessor[0]


def _nomad_taken(already_done: str) -> str:
    index = re.search(r"reset index: (\d+)", already_done)
    return (
        "Nomad's ACLs were bootstrapped with another token, and the stack's preset token is not a "
        "management token there. To hand them back to this stack: on the Nomad leader, write the "
        f"reset index ({index.group(1) if index else 'see `nomad acl bootstrap` output'}) to "
        f"{NOMAD_RESET_FILE} (`echo <index> | sudo tee {NOMAD_RESET_FILE}`), then run `pulumi up` again."
    )


# -- Consul -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PresetToken:
    secret_id: str
    description: str
    policies: tuple[str, ...]


def consul_absent(answer: Response) -> bool:
    """A Consul read that found nothing: 404 (policy reads, and token/self as the 1.15.0 changelog
    documents) or 403 with "ACL not found" (token/self as the code reads: TokenRead wraps
    acl.ErrNotFound, which agent/http.go maps to 403). "Permission denied" is not absence."""
    return answer.status == 404 or (answer.status == 403 and "ACL not found" in str(answer.body))


def consul_preset_tokens(
    consul: HttpsApi, policies: dict[str, str], tokens: list[PresetToken], poller: Poller
) -> dict[str, str]:
    """Makes the policies (name -> rules) and the tokens with their preset SecretIDs exist as given.

    `consul` carries the management token. Returns description -> AccessorID of each token.
    """

    def acl_ready() -> tuple[bool, str]:
        answer = consul.get("/v1/acl/token/self")
        return answer.ok, f"Consul's ACLs not ready ({answer.status} {answer.body!r})"

    poller.until("Consul", acl_ready)
    for name, rules in policies.items():
        existing = consul.get(f"/v1/acl/policy/name/{name}")
        wanted = {"Name": name, "Rules": rules, "Description": f"hashistack: {name}"}
        if existing.ok:
            if existing.body.get("Rules") != rules:
                _expect(consul.request("PUT", f"/v1/acl/policy/{existing.body['ID']}", wanted), f"update policy {name}")
        elif consul_absent(existing):
            _expect(consul.request("PUT", "/v1/acl/policy", wanted), f"create policy {name}")
        else:
            raise BootstrapError(f"Consul: reading policy {name} failed: {existing.status} {existing.body}")

    accessors = {}
    for token in tokens:
        wanted = {
            "SecretID": token.secret_id,
            "Description": token.description,
            "Policies": [{"Name": p} for p in token.policies],
        }
        existing = consul.get("/v1/acl/token/self", headers={"X-Consul-Token": token.secret_id})
        if existing.ok:
            accessor = existing.body["AccessorID"]
            if sorted(p["Name"] for p in existing.body.get("Policies") or []) != sorted(token.policies):
                body = {**wanted, "AccessorID": accessor}
                _expect(consul.request("PUT", f"/v1/acl/token/{accessor}", body), f"update token {token.description}")
        elif consul_absent(existing):  # the nodes booted with a secret Consul has not seen yet
            created = consul.request("PUT", "/v1/acl/token", wanted)
            accessor = _expect(created, f"create token {token.description}")["AccessorID"]
        else:
            raise BootstrapError(
                f"Consul: checking token {token.description} failed: {existing.status} {existing.body}"
            )
        accessors[token.description] = accessor
    poller.log(f"Consul: {len(policies)} policies and {len(tokens)} preset tokens in place")
    return accessors


def _expect(answer: Response, what: str) -> Any:
    if not answer.ok:
        raise BootstrapError(f"Consul: {what} failed: {answer.status} {answer.body}")
    return answer.body


# -- Vault ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class VaultKeys:
    root_token: str
    unseal_keys: tuple[str, ...]
    """Shamir seal: the unseal key shares (base64)."""
    recovery_keys: tuple[str, ...]
    """Auto-unseal (awskms): the recovery key shares (base64)."""


def vault_init(vault: HttpsApi, auto_unseal: bool, shares: int, threshold: int, poller: Poller) -> VaultKeys:
    """Initialises Vault once, on the server `vault` points at."""

    status: dict[str, bool] = {}

    def answers() -> tuple[bool, str]:
        # Nothing listens while Vault starts (Unreachable); then GET sys/init answers 200.
        answer = vault.get("/v1/sys/init")
        if answer.ok and isinstance(answer.body, dict):
            status["initialized"] = bool(answer.body.get("initialized"))
            return True, "answers"
        return False, f"Vault does not answer yet ({answer.status} {answer.body!r})"

    poller.until("Vault", answers)
    if status["initialized"]:
        raise BootstrapError(
            f"Vault at {vault.base_url} is already initialised, but this stack holds no keys for it "
            "(its VaultInit resource is new). If you have the root token and keys, import them: "
            "`pulumi state delete` is not enough; put them back from a state backup. If this is a "
            "throwaway cluster, wipe Vault's data on every server (`sudo systemctl stop vault && sudo rm "
            "-rf /opt/vault/data/*`), restart Vault and run `pulumi up` again."
        )
    kind = "recovery" if auto_unseal else "secret"
    answer = vault.request("PUT", "/v1/sys/init", {f"{kind}_shares": shares, f"{kind}_threshold": threshold})
    if not answer.ok:
        raise BootstrapError(f"Vault init failed: {answer.status} {answer.body}")
    poller.log(f"Vault: initialised ({'auto-unseal, recovery keys' if auto_unseal else 'Shamir unseal keys'})")
    return VaultKeys(
        root_token=answer.body["root_token"],
        # Under awskms Vault answers "keys_base64": [] (tests/upstream.py vault_initialised).
        unseal_keys=tuple(answer.body.get("keys_base64") or ()),
        recovery_keys=tuple(answer.body.get("recovery_keys_base64") or ()),
    )


def vault_sealed(vault: HttpsApi) -> bool | None:
    """True or False from the server's seal status; None when it does not answer."""
    try:
        answer = vault.get("/v1/sys/seal-status")
    except Unreachable:
        return None
    return bool(answer.body.get("sealed")) if answer.ok and isinstance(answer.body, dict) else None


# PUT /v1/sys/unseal blocks while a Shamir follower completes its raft join with the shares given
# (vault/core.go unsealFragment waits on raftJoinDoneCh): longer than an ordinary call.
UNSEAL_CALL_SECONDS = 120.0
# After the last share of a threshold, Vault may still report sealed while it finishes in the
# background; re-read the status this many times before giving the shares again.
UNSEAL_SETTLE_POLLS = 6


def vault_unseal(vault: HttpsApi, unseal_keys: tuple[str, ...], poller: Poller, what: str = "") -> str:
    """Unseals one server with the Shamir keys (none with auto-unseal: then it only waits for it).

    Each attempt re-reads seal-status first and gives shares only while the server is sealed and
    holds a seal configuration: a raft follower that has not received the leader's join challenge
    reports t = 0 and refuses shares ("Vault is not initialized"). Shares continue from the progress
    Vault reports; one given twice counts once.
    """
    settling = {"polls": 0}

    def unsealed() -> tuple[bool, str]:
        status = vault.get("/v1/sys/seal-status")
        if not status.ok or not isinstance(status.body, dict):
            return False, f"seal status answers {status.status} {status.body!r}"
        seal = status.body
        if not seal.get("sealed"):
            return True, f"unsealed ({seal.get('cluster_name') or 'joined'})"
        if not unseal_keys:
            return False, "sealed, waiting for auto-unseal"
        if not seal.get("initialized"):  # then t is 0 too
            return False, "sealed, waiting for the raft join challenge from the leader (not initialised here yet)"
        threshold, progress = seal["t"], seal.get("progress") or 0
        if settling["polls"] and not progress:
            settling["polls"] -= 1
            return False, "sealed, finishing the unseal (joining the raft cluster)"
        for given, key in enumerate(unseal_keys[progress:], start=progress + 1):
            if given >= threshold:  # this share may complete the threshold: the call may block, or time out
                settling["polls"] = UNSEAL_SETTLE_POLLS
            answer = vault.request("PUT", "/v1/sys/unseal", {"key": key}, timeout=UNSEAL_CALL_SECONDS)
            if not answer.ok or not isinstance(answer.body, dict):
                return False, f"unseal answers {answer.status} {answer.body!r}"
            if not answer.body.get("sealed"):
                return True, "unsealed"
            if not answer.body.get("progress"):  # the threshold was reached; Vault finishes in the background
                return False, f"sealed after {threshold} key shares, finishing the unseal"
        return False, f"still sealed after all {len(unseal_keys)} key shares (progress {progress} of {threshold})"

    return poller.until(what or f"Vault at {vault.base_url}", unsealed)
