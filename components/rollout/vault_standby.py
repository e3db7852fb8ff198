"""VaultStandbyFirst: at the end of the server chain, Vault's active node is moved off the chain's first
server, so that the next roll begins on a standby.

The first server's handover cannot step Vault down (it has no Vault token: components/rollout/
server_handover.py), and Vault's initialisation makes the first server the active node. This
resource waits for every gate and, on the run that created the cluster and on every run that
replaced a server, steps the first server's Vault down when it is active. Every server then runs
the same version, so the step-down hands over between equals, outside the roll (Vault's HA guide:
no failover from a newer version to an older one).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi.dynamic

from components.dynamic.http_api import Poller, TlsMaterial
from components.dynamic.inputs import changed_keys
from components.dynamic.typed import SECRET, TypedResource
from components.rollout.server_handover import HANDOVER_SECONDS, POLL_SECONDS, vault_step_down
from components.rollout.server_health import server_apis


class _VaultStandbyFirstProvider(pulumi.dynamic.ResourceProvider):
    def __init__(self, timeout: float = HANDOVER_SECONDS, interval: float = POLL_SECONDS):
        self._timeout, self._interval = timeout, interval

    def _step_down(self, props: dict[str, Any]) -> dict[str, Any]:
        if not props["has_peers"]:
            return {**props, "status": f"{props['node_name']}: the only server"}
        api = server_apis(TlsMaterial(props["ca_pem"]), "", "", props["vault_token"]).vault(props["address"])
        poller = Poller(self._timeout, self._interval)
        return {**props, "status": vault_step_down(props["node_name"], api, bool(props["vault_token"]), poller)}

    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        return pulumi.dynamic.CreateResult(id_="vault-standby-first", outs=self._step_down(props))

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.DiffResult:
        # Again after any server's new machine: the roll may have left the first server active.
        return pulumi.dynamic.DiffResult(changes=bool(changed_keys(olds, news, ("machines", "address"))))

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.UpdateResult:
        return pulumi.dynamic.UpdateResult(outs=self._step_down(news))

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        pass


@dataclass(frozen=True)
class VaultStandbyFirstArgs:
    node_name: pulumi.Input[str]
    """The chain's first server."""
    address: pulumi.Input[str]
    has_peers: bool
    """False with a single server: there is nobody to hand over to."""
    machines: pulumi.Input[Sequence[pulumi.Input[str]]]
    """Every server's machine id, as its gate passed it: a new one runs this again."""
    ca_pem: pulumi.Input[str]
    vault_token: pulumi.Input[str] = field(metadata=SECRET)
    """Vault's root token (sudo on sys/step-down)."""


class VaultStandbyFirst(TypedResource, module="hashistack", name="VaultStandbyFirst"):
    status: pulumi.Output[str]

    def __init__(self, name: str, args: VaultStandbyFirstArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(_VaultStandbyFirstProvider(), name, args, opts, outputs=("status",))
