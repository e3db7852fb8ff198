"""Explicit Consul, Nomad and Vault providers, configured from the bootstrap's Outputs.

Every provider input is an Output of a bootstrap resource, so each resource created through these
providers depends on the bootstrap, and `pulumi destroy` removes the ACL objects, policies and
mounts before the machines they live on. The tokens are secret Outputs and stay secret in the
providers' state.

The providers read their CLI's environment variables for whatever they are not given; an explicit
argument wins, so every setting that decides where the program connects and whom it trusts is
given here. WARNING: neither the Consul provider (no switch at all) nor the Nomad provider (only
NOMAD_NAMESPACE and NOMAD_REGION) can ignore the rest: CONSUL_CACERT, CONSUL_CLIENT_CERT/KEY,
CONSUL_HTTP_SSL_VERIFY, NOMAD_CACERT, NOMAD_CLIENT_CERT/KEY and NOMAD_TLS_SERVER_NAME from the
shell still apply (a CA or certificate *file* wins over the PEM given here). Run `pulumi` in a
shell without another stack's env block (Access.env) in it.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_consul as consul
import pulumi_nomad as nomad
import pulumi_vault as vault

from components.bootstrap.cluster import Bootstrap
from components.config.settings import Settings

# The only keys the Nomad provider's ignore_env_vars honours (terraform-provider-nomad
# providerConfigure; pulumi-nomad docs: "Supported keys are: NOMAD_NAMESPACE and NOMAD_REGION");
# other keys are accepted and silently do nothing. Address, token, CA and TLS verification are
# given explicitly below instead.
NOMAD_IGNORED_ENV_VARS = ("NOMAD_NAMESPACE", "NOMAD_REGION")
# Lifetime of the child token the Vault provider derives from the root token for each run
# (Vault provider default: 20 minutes). Given explicitly so TERRAFORM_VAULT_MAX_TTL in a shell
# changes nothing.
VAULT_CHILD_TOKEN_TTL_SECONDS = 1200


@dataclass(frozen=True)
class ClusterProviders:
    consul: consul.Provider
    nomad: nomad.Provider
    vault: vault.Provider

    def options(self) -> pulumi.ResourceOptions:
        """Options handing all three to a component, whose children inherit them by package."""
        return pulumi.ResourceOptions(providers=[self.consul, self.nomad, self.vault])


def cluster_providers(name: str, bootstrap: Bootstrap, settings: Settings) -> ClusterProviders:
    """The three providers, from the bootstrap's Outputs.

    Tokens resolve only once the bootstrap step that makes them valid has succeeded, so nothing
    reaches an API before it accepts them.
    """
    consul_provider = consul.Provider(
        f"{name}-consul",
        address=bootstrap.consul_address,
        scheme="https",
        datacenter=settings.datacenter,
        ca_pem=bootstrap.ca_pem,
        # Consul's HTTPS API verifies client certificates (verify_incoming).
        cert_pem=bootstrap.operator_cert_pem,
        key_pem=bootstrap.operator_key_pem,
        token=bootstrap.consul_token,
        opts=pulumi.ResourceOptions(additional_secret_outputs=["token", "keyPem"]),
    )
    nomad_provider = nomad.Provider(
        f"{name}-nomad",
        address=bootstrap.nomad_address,
        region=settings.region,
        ca_pem=bootstrap.ca_pem,
        skip_verify=False,
        secret_id=bootstrap.nomad_token,
        ignore_env_vars={variable: True for variable in NOMAD_IGNORED_ENV_VARS},
        opts=pulumi.ResourceOptions(additional_secret_outputs=["secretId"]),
    )
    vault_provider = vault.Provider(
        f"{name}-vault",
        address=bootstrap.vault_address,
        token=bootstrap.vault_token,
        # The Vault provider takes its CA from a file only; the bootstrap writes one (and rewrites
        # it on every run, previews included).
        ca_cert_file=bootstrap.ca_file_path,
        # The SDK would otherwise fill this from VAULT_SKIP_VERIFY in the environment.
        skip_tls_verify=False,
        # Child tokens kept (the default, stated): each run works with a short-lived child of the
        # root token that the provider revokes at the end, so a run is one token in the audit log
        # and a token leaked from a run's logs dies within minutes. The price: a token created
        # through this provider is that child's child and would be revoked with it, hence
        # `no_parent` on the operator token (components/access/grants.py).
        skip_child_token=False,
        max_lease_ttl_seconds=VAULT_CHILD_TOKEN_TTL_SECONDS,
        opts=pulumi.ResourceOptions(additional_secret_outputs=["token"]),
    )
    return ClusterProviders(consul_provider, nomad_provider, vault_provider)
