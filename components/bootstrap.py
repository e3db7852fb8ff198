"""Bootstrap: the cluster's first steps as idempotent resources, each an Output the next one uses.

ConsulPresetTokens -> the agent, Nomad-agent and Vault tokens exist in Consul with the SecretIDs the
                      nodes booted with, on least-privilege policies (policies/consul/);
NomadAclBootstrap  -> Nomad's ACLs bootstrapped with the preset management secret;
VaultInit          -> Vault initialised once: root token and unseal (Shamir) or recovery (awskms) keys;
                      made within the server chain (components/platform.py), whose gates need them;
VaultUnsealed      -> each server unsealed (Shamir), checked on every `up` and unsealed again after a
                      reboot, or waited for (auto-unseal).
The steps' HTTP logic is in components/bootstrap_steps.py. Every server's health gate is an input
of the steps that need the whole cluster, so they run after the servers and again, harmlessly,
after a server is replaced. The tokens the providers get are Outputs of these resources: nothing that
uses the cluster can run before it is bootstrapped, and `destroy` removes it all before the machines.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pulumi.dynamic

from components.bootstrap_steps import (
    PresetToken,
    consul_preset_tokens,
    nomad_acl_bootstrap,
    vault_init,
    vault_sealed,
    vault_unseal,
)
from components.dynamic_inputs import changed_keys, is_known
from components.http_api import HttpsApi, Poller, TlsMaterial
from components.secrets import ClusterSecrets
from components.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
POLICIES = ROOT / "policies"
LOCAL_FILES = ROOT / ".hashistack"
"""Per-stack files on the operator's machine (the CA for the Vault provider); git-ignored."""
WAIT_SECONDS = 15 * 60  # a cluster's first leader election waits for every server's first boot
VAULT_KEY_SHARES, VAULT_KEY_THRESHOLD = 5, 3


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


class ConsulPresetTokens(pulumi.dynamic.Resource, module="hashistack", name="ConsulPresetTokens"):
    accessors: pulumi.Output[dict[str, str]]
    management_token: pulumi.Output[str]

    def __init__(self, name: str, props: dict[str, Any], opts: pulumi.ResourceOptions | None = None):
        super().__init__(
            _ConsulPresetTokensProvider(),
            name,
            {**props, "accessors": None},
            pulumi.ResourceOptions.merge(
                opts, pulumi.ResourceOptions(additional_secret_outputs=["management_token", "tokens", "client_key_pem"])
            ),
        )


class _NomadAclBootstrapProvider(pulumi.dynamic.ResourceProvider):
    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        nomad = HttpsApi(props["address"], TlsMaterial(props["ca_pem"]))
        accessor = nomad_acl_bootstrap(nomad, props["bootstrap_secret"], Poller(WAIT_SECONDS))
        return pulumi.dynamic.CreateResult(id_=accessor, outs={**props, "accessor_id": accessor})

    diff = _replace_on(("address", "bootstrap_secret", "servers"))

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        pass  # Nomad cannot un-bootstrap; its ACL state goes with the servers


class NomadAclBootstrap(pulumi.dynamic.Resource, module="hashistack", name="NomadAclBootstrap"):
    bootstrap_secret: pulumi.Output[str]
    accessor_id: pulumi.Output[str]

    def __init__(self, name: str, props: dict[str, Any], opts: pulumi.ResourceOptions | None = None):
        super().__init__(
            _NomadAclBootstrapProvider(),
            name,
            {**props, "accessor_id": None},
            pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=["bootstrap_secret"])),
        )


class _VaultInitProvider(pulumi.dynamic.ResourceProvider):
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

    def diff(self, _id: str, _olds: dict[str, Any], _news: dict[str, Any]) -> pulumi.dynamic.DiffResult:
        # Vault is initialised once in its life: a replaced server rejoins with the same keys.
        return pulumi.dynamic.DiffResult(changes=False)

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        pass


class VaultInit(pulumi.dynamic.Resource, module="hashistack", name="VaultInit"):
    root_token: pulumi.Output[str]
    unseal_keys: pulumi.Output[list[str]]
    recovery_keys: pulumi.Output[list[str]]

    def __init__(self, name: str, props: dict[str, Any], opts: pulumi.ResourceOptions | None = None):
        super().__init__(
            _VaultInitProvider(),
            name,
            {**props, "root_token": None, "unseal_keys": None, "recovery_keys": None},
            pulumi.ResourceOptions.merge(
                opts, pulumi.ResourceOptions(additional_secret_outputs=["root_token", "unseal_keys", "recovery_keys"])
            ),
        )


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


class VaultUnsealed(pulumi.dynamic.Resource, module="hashistack", name="VaultUnsealed"):
    status: pulumi.Output[str]

    def __init__(self, name: str, props: dict[str, Any], opts: pulumi.ResourceOptions | None = None):
        super().__init__(
            _VaultUnsealedProvider(),
            name,
            {**props, "status": None},
            pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=["unseal_keys"])),
        )


class _CaFileProvider(pulumi.dynamic.ResourceProvider):
    """A local file holding the CA, for the Vault provider, which reads its CA from a file only.

    `check` and `diff` only look (they run on every preview); the file is written by create and
    update, and by `write_ca_file` in the program (Bootstrap), which a preview needs too.
    """

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.CheckResult:
        failures = [
            pulumi.dynamic.CheckFailure(key, f"{key} must be a string, not {type(news.get(key)).__name__}")
            for key in ("path", "content")
            if is_known(news.get(key)) and not isinstance(news.get(key), str)
        ]
        return pulumi.dynamic.CheckResult(news, failures)

    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        write_ca_file(props["path"], props["content"])
        return pulumi.dynamic.CreateResult(id_=props["path"], outs=props)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.DiffResult:
        replaces = changed_keys(olds, news, ("path",))
        # A fresh checkout has the state but not the file: an update writes it back.
        missing = is_known(news.get("path")) and not Path(news["path"]).is_file()
        changed = bool(replaces or missing or changed_keys(olds, news, ("content",)))
        return pulumi.dynamic.DiffResult(changes=changed, replaces=replaces, delete_before_replace=False)

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.UpdateResult:
        write_ca_file(news["path"], news["content"])
        return pulumi.dynamic.UpdateResult(outs=news)

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        Path(props["path"]).unlink(missing_ok=True)


def write_ca_file(path: str, content: str) -> str:
    """Writes the (public) CA certificate where the Vault provider reads it; idempotent."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.is_file() or target.read_text() != content:
        target.write_text(content)
    return path


class CaFile(pulumi.dynamic.Resource, module="hashistack", name="CaFile"):
    path: pulumi.Output[str]

    def __init__(self, name: str, props: dict[str, Any], opts: pulumi.ResourceOptions | None = None):
        super().__init__(_CaFileProvider(), name, props, opts)


@dataclass(frozen=True)
class BootstrapArgs:
    settings: Settings
    secrets: ClusterSecrets
    nodes: Any
    """The platform's Nodes component (components.platform.ClusterNodes)."""


def _policy(name: str) -> str:
    return (POLICIES / "consul" / f"{name}.hcl").read_text()


class Bootstrap(pulumi.ComponentResource):
    consul_address: pulumi.Output[str]
    """`host:8501`, Consul's HTTPS API through the API endpoint."""
    nomad_address: pulumi.Output[str]
    """`https://host:4646`."""
    vault_address: pulumi.Output[str]
    """`https://host:8200`."""
    ca_pem: pulumi.Output[str]
    """The cluster CA certificate."""
    ca_file_path: pulumi.Output[str]
    """A local file holding the CA certificate (for the Vault provider)."""
    operator_cert_pem: pulumi.Output[str]
    """Client certificate for Consul's API (mutual TLS)."""
    operator_key_pem: pulumi.Output[str]
    """Its key (secret)."""
    consul_token: pulumi.Output[str]
    """Consul management token, once the preset tokens exist (secret)."""
    nomad_token: pulumi.Output[str]
    """Nomad management token, once Nomad's ACLs are bootstrapped (secret)."""
    vault_token: pulumi.Output[str]
    """Vault root token, once Vault is initialised and every server unsealed (secret)."""
    vault_unseal_keys: pulumi.Output[list[str]]
    """Shamir unseal keys; empty with auto-unseal (secret)."""
    vault_recovery_keys: pulumi.Output[list[str]]
    """Recovery keys of an auto-unsealed Vault; empty with Shamir (secret)."""

    def __init__(self, name: str, args: BootstrapArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("hashistack:bootstrap:Bootstrap", name, None, opts)
        settings, secrets, nodes = args.settings, args.secrets, args.nodes
        child = pulumi.ResourceOptions(parent=self)
        # Each gate passes again for a new machine: the steps re-run (idempotently) after it.
        gates = [gate.machine_id for gate in nodes.server_health]
        host = nodes.api_endpoint

        self.ca_pem = secrets.ca_cert_pem
        self.operator_cert_pem = secrets.operator.cert_pem
        self.operator_key_pem = secrets.operator.private_key_pem
        self.consul_address = host.apply(lambda h: f"{h}:8501")
        self.nomad_address = host.apply(lambda h: f"https://{h}:4646")
        self.vault_address = host.apply(lambda h: f"https://{h}:8200")

        ca_file = CaFile(
            f"{name}-ca-file",
            {"path": str(LOCAL_FILES / settings.stack / "ca.pem"), "content": secrets.ca_cert_pem},
            child,
        )
        # The Vault provider reads the file when it is configured, previews included, and a fresh
        # checkout has the state but not the file: the program writes it (a public certificate, in
        # the checkout's own ignored directory) before handing the path over; CaFile removes it on
        # destroy.
        self.ca_file_path = pulumi.Output.all(ca_file.path, secrets.ca_cert_pem).apply(lambda v: write_ca_file(*v))

        consul = ConsulPresetTokens(
            f"{name}-consul-tokens",
            {
                "address": host.apply(lambda h: f"https://{h}:8501"),
                "ca_pem": secrets.ca_cert_pem,
                "client_cert_pem": secrets.operator.cert_pem,
                "client_key_pem": secrets.operator.private_key_pem,
                "management_token": secrets.consul_management_token,
                "policies": {p: _policy(p) for p in ("agent", "nomad-agent", "vault-service")},
                "tokens": [
                    {"secret_id": secrets.consul_agent_token, "description": "agent", "policies": ["agent"]},
                    {
                        "secret_id": secrets.consul_nomad_agent_token,
                        "description": "nomad-agent",
                        "policies": ["nomad-agent"],
                    },
                    {"secret_id": secrets.consul_vault_token, "description": "vault", "policies": ["vault-service"]},
                ],
                "servers": gates,
            },
            child,
        )
        nomad = NomadAclBootstrap(
            f"{name}-nomad-acl",
            {
                "address": self.nomad_address,
                "ca_pem": secrets.ca_cert_pem,
                "bootstrap_secret": secrets.nomad_bootstrap_token,
                "servers": gates,
            },
            child,
        )

        # Initialised within the server chain, so that each server's gate can unseal it.
        init = nodes.vault_init
        unsealed = [
            VaultUnsealed(
                f"{name}-vault-{server}",
                {
                    "address": ip.apply(lambda i: f"https://{i}:8200"),
                    "ca_pem": secrets.ca_cert_pem,
                    "unseal_keys": init.unseal_keys,
                    "machine": gate,
                },
                child,
            )
            for (server, ip), gate in zip(nodes.servers.items(), gates, strict=True)
        ]

        self.consul_token = pulumi.Output.secret(consul.management_token)
        self.nomad_token = pulumi.Output.secret(nomad.bootstrap_secret)
        self.vault_token = pulumi.Output.secret(
            pulumi.Output.all(init.root_token, *[u.status for u in unsealed]).apply(lambda values: values[0])
        )
        self.vault_unseal_keys = pulumi.Output.secret(init.unseal_keys)
        self.vault_recovery_keys = pulumi.Output.secret(init.recovery_keys)
        self.register_outputs({"consul_address": self.consul_address, "nomad_address": self.nomad_address})
