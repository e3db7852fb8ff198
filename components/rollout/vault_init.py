"""VaultInit: Vault initialised once in the stack's life, on the first server, and unsealed there.

It is made within the server chain (components/rollout/server_chain.py), right after the first server
exists and before that server's gate, because every gate needs its keys; the bootstrap
(components/bootstrap/cluster.py) takes the root token and the keys from it. A replaced server rejoins
with the same keys, so the resource never changes after its creation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi.dynamic

from components.dynamic.agent_api import WAIT_SECONDS, vault_init, vault_unseal
from components.dynamic.http_api import HttpsApi, Poller, TlsMaterial
from components.dynamic.typed import CreatedOnceProvider, TypedResource

VAULT_KEY_SHARES, VAULT_KEY_THRESHOLD = 5, 3


class _VaultInitProvider(CreatedOnceProvider):
    def __init__(self, timeout: float = WAIT_SECONDS, interval: float = 5.0):
        self._timeout, self._interval = timeout, interval

    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        vault = HttpsApi(props["address"], TlsMaterial(props["ca_pem"]))
        poller = Poller(self._timeout, self._interval)
        keys = vault_init(vault, props["auto_unseal"], props["shares"], props["threshold"], poller)
        # Unsealed here, not by its gate: the other servers' gates wait for Vault's raft leader, and with
        # five servers created together one gate queues (the dynamic provider serves four calls at once:
        # pulumi/dynamic/__main__.py max_workers=4); no gate may be the one the others wait for.
        vault_unseal(vault, keys.unseal_keys, poller, "server-0 Vault")
        outs = {
            **props,
            "root_token": keys.root_token,
            "unseal_keys": list(keys.unseal_keys),
            "recovery_keys": list(keys.recovery_keys),
        }
        return pulumi.dynamic.CreateResult(id_="vault-init", outs=outs)


@dataclass(frozen=True)
class VaultInitArgs:
    address: pulumi.Input[str]
    """`https://<first server>:8200`: one server initialises; the others join its raft when unsealed."""
    ca_pem: pulumi.Input[str]
    auto_unseal: bool
    """True with a KMS seal (AWS): recovery keys instead of unseal keys."""
    machine: pulumi.Input[str]
    """The first server's machine id: initialisation waits for it to exist."""
    shares: int = VAULT_KEY_SHARES
    threshold: int = VAULT_KEY_THRESHOLD


class VaultInit(TypedResource, module="hashistack", name="VaultInit"):
    root_token: pulumi.Output[str]
    unseal_keys: pulumi.Output[list[str]]
    recovery_keys: pulumi.Output[list[str]]

    def __init__(self, name: str, args: VaultInitArgs, opts: pulumi.ResourceOptions | None = None):
        keys = ("root_token", "unseal_keys", "recovery_keys")
        super().__init__(_VaultInitProvider(), name, args, opts, outputs=keys, secret_outputs=keys)
