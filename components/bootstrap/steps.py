"""The bootstrap's dynamic resources, each an idempotent step whose Outputs the next one uses:

ConsulPresetTokens -> the agent, Nomad-agent and Vault tokens exist in Consul with the SecretIDs the
                      nodes booted with, on least-privilege policies (policies/consul/);
NomadAclBootstrap  -> Nomad's ACLs bootstrapped with the preset management secret;
VaultUnsealed      -> each server unsealed (Shamir), checked on every `up` and unsealed again after a
                      reboot, or waited for (auto-unseal).
The steps' HTTP logic is in components/dynamic/agent_api.py. Vault's initialisation is made within the
server chain (components/rollout/vault_init.py), whose gates need its keys.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict

import pulumi
import pulumi.dynamic

from components.dynamic.agent_api import (
    WAIT_SECONDS,
    PresetToken,
    consul_preset_tokens,
    nomad_acl_bootstrap,
    vault_sealed,
    vault_unseal,
)
from components.dynamic.http_api import HttpsApi, Poller, TlsMaterial
from components.dynamic.inputs import changed_keys, is_known
from components.dynamic.typed import SECRET, TypedResource


def _replace_on(keys: tuple[str, ...]):
    """A diff that re-runs the (idempotent) step when one of `keys` changed or is not known yet
    (a preview), and ignores the rest."""

    def diff(_self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.DiffResult:
        changed = changed_keys(olds, news, keys)
        return pulumi.dynamic.DiffResult(changes=bool(changed), replaces=changed, delete_before_replace=False)

    return diff


class _ConsulPresetTokensProvider(pulumi.dynamic.ResourceProvider):
    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        consul = HttpsApi(
            props["address"],
            TlsMaterial(props["ca_pem"], props["client_cert_pem"], props["client_key_pem"]),
            headers={"X-Consul-Token": props["management_token"]},
        )
        tokens = [PresetToken(t["secret_id"], t["description"], tuple(t["policies"])) for t in props["tokens"]]
        accessors = consul_preset_tokens(consul, props["policies"], tokens, Poller(WAIT_SECONDS))
        return pulumi.dynamic.CreateResult(id_="consul-preset-tokens", outs={**props, "accessors": accessors})

    diff = _replace_on(("address", "management_token", "policies", "tokens", "servers"))

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        pass  # the tokens live and die with the cluster; removing them would cut the running agents off


class PresetTokenInput(TypedDict):
    secret_id: pulumi.Input[str]
    """The SecretID the nodes booted with."""
    description: str
    policies: list[str]


@dataclass(frozen=True)
class ConsulPresetTokensArgs:
    address: pulumi.Input[str]
    """`https://host:8501`."""
    ca_pem: pulumi.Input[str]
    client_cert_pem: pulumi.Input[str]
    client_key_pem: pulumi.Input[str] = field(metadata=SECRET)
    management_token: pulumi.Input[str] = field(metadata=SECRET)
    policies: Mapping[str, str]
    """Policy name -> its rules (policies/consul/<name>.hcl)."""
    tokens: Sequence[PresetTokenInput] = field(metadata=SECRET)
    servers: pulumi.Input[Sequence[pulumi.Input[str]]]
    """The servers' gates' machine ids: a new machine re-runs the (idempotent) step."""


class ConsulPresetTokens(TypedResource, module="hashistack", name="ConsulPresetTokens"):
    accessors: pulumi.Output[dict[str, str]]
    management_token: pulumi.Output[str]

    def __init__(self, name: str, args: ConsulPresetTokensArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(_ConsulPresetTokensProvider(), name, args, opts, outputs=("accessors",))


class _NomadAclBootstrapProvider(pulumi.dynamic.ResourceProvider):
    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        nomad = HttpsApi(props["address"], TlsMaterial(props["ca_pem"]))
        accessor = nomad_acl_bootstrap(nomad, props["bootstrap_secret"], Poller(WAIT_SECONDS))
        return pulumi.dynamic.CreateResult(id_=accessor, outs={**props, "accessor_id": accessor})

    diff = _replace_on(("address", "bootstrap_secret", "servers"))

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        pass  # Nomad cannot un-bootstrap; its ACL state goes with the servers


@dataclass(frozen=True)
class NomadAclBootstrapArgs:
    address: pulumi.Input[str]
    """`https://host:4646`."""
    ca_pem: pulumi.Input[str]
    bootstrap_secret: pulumi.Input[str] = field(metadata=SECRET)
    """The preset management token's secret, bootstrapped as Nomad's first management token."""
    servers: pulumi.Input[Sequence[pulumi.Input[str]]]
    """The servers' gates' machine ids: a new machine re-runs the (idempotent) step."""


class NomadAclBootstrap(TypedResource, module="hashistack", name="NomadAclBootstrap"):
    bootstrap_secret: pulumi.Output[str]
    accessor_id: pulumi.Output[str]

    def __init__(self, name: str, args: NomadAclBootstrapArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(_NomadAclBootstrapProvider(), name, args, opts, outputs=("accessor_id",))


class _VaultUnsealedProvider(pulumi.dynamic.ResourceProvider):
    def __init__(self, timeout: float = WAIT_SECONDS, interval: float = 5.0):
        self._timeout, self._interval = timeout, interval

    def _unseal(self, props: dict[str, Any]) -> dict[str, Any]:
        vault = HttpsApi(props["address"], TlsMaterial(props["ca_pem"]))
        status = vault_unseal(vault, tuple(props["unseal_keys"]), Poller(self._timeout, self._interval))
        return {**props, "status": status}

    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        return pulumi.dynamic.CreateResult(id_=props["machine"], outs=self._unseal(props))

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.DiffResult:
        replaces = changed_keys(olds, news, ("machine", "address"))
        if replaces:
            return pulumi.dynamic.DiffResult(changes=True, replaces=replaces, delete_before_replace=False)
        if not is_known(news.get("ca_pem")):
            return pulumi.dynamic.DiffResult(changes=True)
        # Every `up` (and preview) asks the server, a read only: a rebooted Shamir server is sealed
        # again, and the plan then shows an update that unseals it. An unreachable one shows none.
        sealed = vault_sealed(HttpsApi(news["address"], TlsMaterial(news["ca_pem"]), timeout=5))
        return pulumi.dynamic.DiffResult(changes=bool(sealed))

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.UpdateResult:
        return pulumi.dynamic.UpdateResult(outs=self._unseal(news))

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        pass


@dataclass(frozen=True)
class VaultUnsealedArgs:
    address: pulumi.Input[str]
    """`https://<server>:8200`: this server's own Vault."""
    ca_pem: pulumi.Input[str]
    unseal_keys: pulumi.Input[Sequence[str]] = field(metadata=SECRET)
    """Shamir unseal keys; empty with auto-unseal (the step then waits for it)."""
    machine: pulumi.Input[str]
    """The server's gate's machine id: a new machine is a new resource."""


class VaultUnsealed(TypedResource, module="hashistack", name="VaultUnsealed"):
    status: pulumi.Output[str]

    def __init__(self, name: str, args: VaultUnsealedArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(_VaultUnsealedProvider(), name, args, opts, outputs=("status",))
