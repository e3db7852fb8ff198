"""What each bootstrap step does against the cluster's APIs (DESIGN decisions 2-4), without Pulumi.

Each step waits for its API with a deadline, is idempotent ("already done" is success when the preset
secret authenticates), and fails with the recovery procedure otherwise. The dynamic resources in
components/bootstrap.py call these; tests/test_bootstrap_steps.py runs them against local HTTPS
servers that answer like Nomad, Consul and Vault.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from components.http_api import HttpsApi, Poller, Unreachable


class BootstrapError(Exception):
    pass


def _text(body: object) -> str:
    return body if isinstance(body, str) else str(body)


# -- Nomad ------------------------------------------------------------------------------------------
def nomad_acl_bootstrap(nomad: HttpsApi, bootstrap_secret: str, poller: Poller) -> str:
    """Bootstraps Nomad's ACLs with the preset secret; returns the management token's accessor id."""

    def leader() -> tuple[bool, str]:
        answer = nomad.get("/v1/status/leader")
        return answer.ok and bool(answer.body), f"no Nomad leader yet ({answer.status} {answer.body!r})"

    poller.until("Nomad", leader)
    answer = nomad.request("POST", "/v1/acl/bootstrap", {"BootstrapSecret": bootstrap_secret})
    if answer.ok:
        poller.log("Nomad: ACLs bootstrapped with the preset management token")
        return answer.body["AccessorID"]
    if answer.status == 400 and "already done" in _text(answer.body):
        mine = nomad.get("/v1/acl/token/self", headers={"X-Nomad-Token": bootstrap_secret})
        if mine.ok and mine.body.get("Type") == "management":
            poller.log("Nomad: ACLs already bootstrapped with the preset token")
            return mine.body["AccessorID"]
        index = re.search(r"reset index: (\d+)", _text(answer.body))
        raise BootstrapError(
            "Nomad's ACLs were bootstrapped with another token, and the stack's preset token is not a "
            "management token there. To hand them back to this stack: on the Nomad leader, write the "
            f"reset index ({index.group(1) if index else 'see `nomad acl bootstrap` output'}) to "
            "/opt/nomad/data/server/acl-bootstrap-reset (`echo <index> | sudo tee "
            "/opt/nomad/data/server/acl-bootstrap-reset`), then run `pulumi up` again."
        )
    raise BootstrapError(f"Nomad ACL bootstrap failed: {answer.status} {answer.body}")


# -- Consul -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PresetToken:
    secret_id: str
    description: str
    policies: tuple[str, ...]


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
        elif existing.status in (403, 404):
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
        elif existing.status == 403:  # "ACL not found": the nodes booted with a secret Consul has not seen
            accessor = _expect(consul.request("PUT", "/v1/acl/token", wanted), f"create token {token.description}")[
                "AccessorID"
            ]
        else:
            raise BootstrapError(
                f"Consul: checking token {token.description} failed: {existing.status} {existing.body}"
            )
        accessors[token.description] = accessor
    poller.log(f"Consul: {len(policies)} policies and {len(tokens)} preset tokens in place")
    return accessors


def _expect(answer, what: str):
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

    def answers() -> tuple[bool, str]:
        answer = vault.get("/v1/sys/init")
        return answer.ok, f"Vault does not answer yet ({answer.status} {answer.body!r})"

    poller.until("Vault", answers)
    if vault.get("/v1/sys/init").body.get("initialized"):
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
        unseal_keys=tuple(answer.body.get("keys_base64") or ()) if not auto_unseal else (),
        recovery_keys=tuple(answer.body.get("recovery_keys_base64") or ()),
    )


def vault_sealed(vault: HttpsApi) -> bool | None:
    """True or False from the server's seal status; None when it does not answer."""
    try:
        answer = vault.get("/v1/sys/seal-status")
    except Unreachable:
        return None
    return bool(answer.body.get("sealed")) if answer.ok and isinstance(answer.body, dict) else None


def vault_unseal(vault: HttpsApi, unseal_keys: tuple[str, ...], poller: Poller) -> str:
    """Unseals one server with the Shamir keys (none with auto-unseal: then it only waits for it)."""

    def unsealed() -> tuple[bool, str]:
        status = vault.get("/v1/sys/seal-status")
        if not status.ok:
            return False, f"seal status answers {status.status} {status.body!r}"
        if not status.body.get("sealed"):
            return True, f"unsealed ({status.body.get('cluster_name') or 'joined'})"
        if not unseal_keys:
            return False, "sealed, waiting for auto-unseal"
        # A follower that has not joined raft yet is sealed and uninitialised; unsealing makes it join.
        for key in unseal_keys[: status.body.get("t") or len(unseal_keys)]:
            progress = vault.request("PUT", "/v1/sys/unseal", {"key": key})
            if not progress.ok:
                return False, f"unseal answers {progress.status} {progress.body!r}"
            if not progress.body.get("sealed"):
                return True, "unsealed"
        return False, f"still sealed after {status.body.get('t')} key shares (joining the cluster?)"

    return poller.until(f"Vault at {vault.base_url}", unsealed)
