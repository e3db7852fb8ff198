"""Bootstrap: the cluster's first steps as idempotent resources, each an Output the next one uses.

ConsulPresetTokens -> the agent, Nomad-agent and Vault tokens exist in Consul with the SecretIDs the
                      nodes booted with, on least-privilege policies (policies/consul/);
NomadAclBootstrap  -> Nomad's ACLs bootstrapped with the preset management secret;
VaultInit          -> Vault initialised once: root token and unseal (Shamir) or recovery (awskms) keys;
                      made within the server chain (components/rollout/vault_init.py), whose gates need them;
VaultUnsealed      -> each server unsealed (Shamir), checked on every `up` and unsealed again after a
                      reboot, or waited for (auto-unseal).
The resources are in components/bootstrap/steps.py, their HTTP logic in components/dynamic/agent_api.py. Every server's health gate is an input
of the steps that need the whole cluster, so they run after the servers and again, harmlessly,
after a server is replaced. The tokens the providers get are Outputs of these resources: nothing that
uses the cluster can run before it is bootstrapped, and `destroy` removes it all before the machines.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from components import CHECKOUT
from components.bootstrap.ca_file import CaFile, CaFileArgs, write_ca_file
from components.bootstrap.steps import (
    ConsulPresetTokens,
    ConsulPresetTokensArgs,
    NomadAclBootstrap,
    NomadAclBootstrapArgs,
    VaultUnsealed,
    VaultUnsealedArgs,
)
from components.config.settings import Settings
from components.pki.cluster_secrets import ClusterSecrets
from components.platforms.shape import ClusterNodes

POLICIES = CHECKOUT / "policies"
LOCAL_FILES = CHECKOUT / ".hashistack"
"""Per-stack files on the operator's machine (the CA for the Vault provider); git-ignored."""


@dataclass(frozen=True)
class BootstrapArgs:
    settings: Settings
    secrets: ClusterSecrets
    nodes: ClusterNodes
    """The platform's Nodes component."""


def policy_text(*parts: str) -> str:
    """The text of policies/<parts...>.hcl (the bootstrap's Consul policies, and the access layer's)."""
    *folders, name = parts
    return POLICIES.joinpath(*folders, f"{name}.hcl").read_text()


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
            CaFileArgs(path=str(LOCAL_FILES / settings.stack / "ca.pem"), content=secrets.ca_cert_pem),
            child,
        )
        # The Vault provider reads the file when it is configured, previews included, and a fresh
        # checkout has the state but not the file: the program writes it (a public certificate, in
        # the checkout's own ignored directory) before handing the path over; CaFile removes it on
        # destroy.
        self.ca_file_path = pulumi.Output.all(ca_file.path, secrets.ca_cert_pem).apply(lambda v: write_ca_file(*v))

        consul = ConsulPresetTokens(
            f"{name}-consul-tokens",
            ConsulPresetTokensArgs(
                address=host.apply(lambda h: f"https://{h}:8501"),
                ca_pem=secrets.ca_cert_pem,
                client_cert_pem=secrets.operator.cert_pem,
                client_key_pem=secrets.operator.private_key_pem,
                management_token=secrets.consul_management_token,
                policies={p: policy_text("consul", p) for p in ("agent", "nomad-agent", "vault-service")},
                tokens=[
                    {"secret_id": secrets.consul_agent_token, "description": "agent", "policies": ["agent"]},
                    {
                        "secret_id": secrets.consul_nomad_agent_token,
                        "description": "nomad-agent",
                        "policies": ["nomad-agent"],
                    },
                    {"secret_id": secrets.consul_vault_token, "description": "vault", "policies": ["vault-service"]},
                ],
                servers=gates,
            ),
            child,
        )
        nomad = NomadAclBootstrap(
            f"{name}-nomad-acl",
            NomadAclBootstrapArgs(
                address=self.nomad_address,
                ca_pem=secrets.ca_cert_pem,
                bootstrap_secret=secrets.nomad_bootstrap_token,
                servers=gates,
            ),
            child,
        )

        # Initialised within the server chain, so that each server's gate can unseal it.
        init = nodes.vault_init
        unsealed = [
            VaultUnsealed(
                f"{name}-vault-{server}",
                VaultUnsealedArgs(
                    address=ip.apply(lambda i: f"https://{i}:8200"),
                    ca_pem=secrets.ca_cert_pem,
                    unseal_keys=init.unseal_keys,
                    machine=gate,
                ),
                child,
            )
            for (server, ip), gate in zip(nodes.servers.items(), gates, strict=True)
        ]

        self.consul_token = pulumi.Output.secret(consul.management_token)
        self.nomad_token = pulumi.Output.secret(nomad.bootstrap_secret)
        # Vault's users wait for every server unsealed and for the chain's end, whose step-down moves
        # Vault's active node (components/rollout/vault_standby.py) and would race their first calls.
        standby = nodes.vault_standby_first.status
        self.vault_token = pulumi.Output.secret(
            pulumi.Output.all(init.root_token, standby, *[u.status for u in unsealed]).apply(lambda values: values[0])
        )
        self.vault_unseal_keys = pulumi.Output.secret(init.unseal_keys)
        self.vault_recovery_keys = pulumi.Output.secret(init.recovery_keys)
        self.register_outputs({"consul_address": self.consul_address, "nomad_address": self.nomad_address})
