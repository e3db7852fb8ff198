"""ClusterSecrets: the cluster's CA, node certificates, gossip keys and preset ACL secrets."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_random as random
import pulumi_tls as tls

# ECDSA P-256: what `consul tls` and `nomad tls` generate (seed 002), small and fast to verify.
_KEY_ALGORITHM = "ECDSA"
_KEY_CURVE = "P256"
_ORGANIZATION = "hashistack"
_SERVER_USES = ["digital_signature", "key_encipherment", "server_auth", "client_auth"]
_OPERATOR_USES = ["digital_signature", "key_encipherment", "client_auth"]
LOOPBACK_IP = "127.0.0.1"

# Attribute -> child name suffix (`<component>-<suffix>`); scripts/render_node.py finds them in the state.
CA_SUFFIX = "ca"
CLIENT_SUFFIX = "client"
OPERATOR_SUFFIX = "operator"
GOSSIP_KEYS = {"consul_gossip_key": "consul-gossip", "nomad_gossip_key": "nomad-gossip"}
PRESET_TOKENS = {
    "consul_management_token": "consul-management",
    "consul_agent_token": "consul-agent",
    "consul_nomad_agent_token": "consul-nomad-agent",
    "consul_vault_token": "consul-vault",
    "nomad_bootstrap_token": "nomad-bootstrap",
}


@dataclass(frozen=True)
class ServerIdentity:
    """What a server's certificate must name; addresses are Inputs since on AWS they are Outputs."""

    name: str
    ip_addresses: pulumi.Input[Sequence[str]]
    dns_names: pulumi.Input[Sequence[str]] = field(default_factory=list)
    """Extra DNS names, e.g. the API load balancer's name on AWS."""


@dataclass(frozen=True)
class ClusterSecretsArgs:
    datacenter: str
    region: str
    domain: str
    servers: Sequence[ServerIdentity]
    ca_validity_hours: int
    cert_validity_hours: int
    cert_early_renewal_hours: int


@dataclass(frozen=True)
class IssuedCertificate:
    cert_pem: pulumi.Output[str]
    """PEM certificate, signed by the cluster CA."""
    private_key_pem: pulumi.Output[str]
    """PEM private key (secret)."""


def server_dns_names(args: ClusterSecretsArgs, node_name: str) -> list[str]:
    """Names a server answers to: `verify_server_hostname` checks the first two (Consul, Nomad)."""
    return [
        f"server.{args.datacenter}.{args.domain}",
        f"server.{args.region}.nomad",
        f"vault.service.{args.domain}",
        f"active.vault.service.{args.domain}",
        f"{node_name}.node.{args.datacenter}.{args.domain}",
        node_name,
        "localhost",
    ]


def client_dns_names(args: ClusterSecretsArgs) -> list[str]:
    return [f"client.{args.region}.nomad", f"client.{args.datacenter}.{args.domain}", "localhost"]


def operator_dns_names(args: ClusterSecretsArgs) -> list[str]:
    return [f"cli.client.{args.datacenter}.{args.domain}", f"cli.{args.region}.nomad"]


class ClusterSecrets(pulumi.ComponentResource):
    ca_cert_pem: pulumi.Output[str]
    """The cluster CA certificate (public); every agent and CLI trusts it."""
    servers: dict[str, IssuedCertificate]
    """Per-server certificate and key, by node name."""
    client: IssuedCertificate
    """The certificate all client nodes share (DESIGN decision 7)."""
    operator: IssuedCertificate
    """A client-auth-only certificate for operators' CLIs and the bootstrap."""
    consul_gossip_key: pulumi.Output[str]
    """Consul serf `encrypt` key, 32 random bytes base64 (secret)."""
    nomad_gossip_key: pulumi.Output[str]
    """Nomad server serf `encrypt` key, 32 random bytes base64 (secret)."""
    consul_management_token: pulumi.Output[str]
    """Consul `acl.tokens.initial_management` SecretID (secret)."""
    consul_agent_token: pulumi.Output[str]
    """Consul `acl.tokens.agent` SecretID every node boots with (secret)."""
    consul_nomad_agent_token: pulumi.Output[str]
    """SecretID of the Consul token Nomad agents use (secret)."""
    consul_vault_token: pulumi.Output[str]
    """SecretID of the Consul token Vault registers its service with (secret)."""
    nomad_bootstrap_token: pulumi.Output[str]
    """Nomad ACL `BootstrapSecret`, the Nomad management token (secret)."""

    def __init__(self, name: str, args: ClusterSecretsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("hashistack:secrets:ClusterSecrets", name, None, opts)
        self._args = args
        child = pulumi.ResourceOptions(parent=self)

        ca_key = tls.PrivateKey(f"{name}-{CA_SUFFIX}", algorithm=_KEY_ALGORITHM, ecdsa_curve=_KEY_CURVE, opts=child)
        # pulumi-tls cannot set X.509 name constraints (seed 002 limits its CA with them), so the CA
        # key is the boundary: it stays in the encrypted state and nothing exports or copies it.
        ca_cert = tls.SelfSignedCert(
            f"{name}-{CA_SUFFIX}",
            private_key_pem=ca_key.private_key_pem,
            is_ca_certificate=True,
            allowed_uses=["cert_signing", "crl_signing"],
            validity_period_hours=args.ca_validity_hours,
            early_renewal_hours=0,
            set_subject_key_id=True,
            subject=tls.SelfSignedCertSubjectArgs(
                common_name=f"hashistack {args.datacenter} CA", organization=_ORGANIZATION
            ),
            opts=child,
        )
        self._ca_key, self._ca_cert = ca_key, ca_cert
        self.ca_cert_pem = ca_cert.cert_pem

        self.servers = {
            server.name: self._issue(
                f"{name}-{server.name}",
                common_name=f"server.{args.datacenter}.{args.domain}",
                dns_names=pulumi.Output.from_input(server.dns_names).apply(
                    lambda extra, node=server.name: server_dns_names(args, node) + list(extra)
                ),
                ip_addresses=pulumi.Output.from_input(server.ip_addresses).apply(lambda ips: [LOOPBACK_IP, *ips]),
                uses=_SERVER_USES,
            )
            for server in args.servers
        }
        self.client = self._issue(
            f"{name}-{CLIENT_SUFFIX}",
            common_name=f"client.{args.region}.nomad",
            dns_names=client_dns_names(args),
            ip_addresses=[LOOPBACK_IP],
            uses=_SERVER_USES,
        )
        self.operator = self._issue(
            f"{name}-{OPERATOR_SUFFIX}",
            common_name=f"cli.client.{args.datacenter}.{args.domain}",
            dns_names=operator_dns_names(args),
            ip_addresses=[],
            uses=_OPERATOR_USES,
        )

        for attribute, suffix in GOSSIP_KEYS.items():
            setattr(self, attribute, random.RandomBytes(f"{name}-{suffix}", length=32, opts=child).base64)
        for attribute, suffix in PRESET_TOKENS.items():
            setattr(self, attribute, self._preset_secret(f"{name}-{suffix}"))

        self.register_outputs(
            {
                "ca_cert_pem": self.ca_cert_pem,
                "consul_management_token": self.consul_management_token,
                "nomad_bootstrap_token": self.nomad_bootstrap_token,
            }
        )

    def _issue(
        self,
        name: str,
        common_name: str,
        dns_names: pulumi.Input[Sequence[str]],
        ip_addresses: pulumi.Input[Sequence[str]],
        uses: list[str],
    ) -> IssuedCertificate:
        child = pulumi.ResourceOptions(parent=self)
        key = tls.PrivateKey(name, algorithm=_KEY_ALGORITHM, ecdsa_curve=_KEY_CURVE, opts=child)
        request = tls.CertRequest(
            name,
            private_key_pem=key.private_key_pem,
            subject=tls.CertRequestSubjectArgs(common_name=common_name, organization=_ORGANIZATION),
            dns_names=dns_names,
            ip_addresses=ip_addresses,
            opts=child,
        )
        # early_renewal_hours makes the provider plan a replacement once the certificate is that
        # close to expiry, so any `pulumi up` in the window rotates it (README: rotating certificates).
        cert = tls.LocallySignedCert(
            name,
            cert_request_pem=request.cert_request_pem,
            ca_private_key_pem=self._ca_key.private_key_pem,
            ca_cert_pem=self._ca_cert.cert_pem,
            validity_period_hours=self._args.cert_validity_hours,
            early_renewal_hours=self._args.cert_early_renewal_hours,
            allowed_uses=uses,
            set_subject_key_id=True,
            opts=child,
        )
        return IssuedCertificate(cert_pem=cert.cert_pem, private_key_pem=key.private_key_pem)

    def _preset_secret(self, name: str) -> pulumi.Output[str]:
        # A UUID because Consul SecretIDs and Nomad's BootstrapSecret must be UUIDs. The provider does
        # not mark `result` secret, so the state gets it as an additional secret output.
        uuid = random.RandomUuid(name, opts=pulumi.ResourceOptions(parent=self, additional_secret_outputs=["result"]))
        return pulumi.Output.secret(uuid.result)
