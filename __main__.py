"""hashistack: wiring only. Settings are read and validated first, so bad input stops the program
before any resource is registered; every later step receives what it needs as Outputs."""

import pulumi

from components.addressing import planned_servers
from components.secrets import ClusterSecrets, ClusterSecretsArgs, ServerIdentity
from components.settings import load_settings

settings = load_settings()
servers = planned_servers(settings)

secrets = ClusterSecrets(
    "cluster",
    ClusterSecretsArgs(
        datacenter=settings.datacenter,
        region=settings.region,
        domain=settings.domain,
        servers=[ServerIdentity(name=s.name, ip_addresses=[s.private_ip]) for s in servers],
        ca_validity_hours=settings.tls.ca_validity_hours,
        cert_validity_hours=settings.tls.cert_validity_hours,
        cert_early_renewal_hours=settings.tls.cert_early_renewal_hours,
    ),
)

pulumi.export("platform", settings.platform.value)
pulumi.export("serverAddresses", {s.name: s.private_ip for s in servers})
pulumi.export("caCertPem", secrets.ca_cert_pem)
pulumi.export("consulManagementToken", secrets.consul_management_token)
pulumi.export("consulAgentToken", secrets.consul_agent_token)
pulumi.export("consulNomadAgentToken", secrets.consul_nomad_agent_token)
pulumi.export("consulVaultToken", secrets.consul_vault_token)
pulumi.export("nomadBootstrapToken", secrets.nomad_bootstrap_token)
pulumi.export("operatorCertPem", secrets.operator.cert_pem)
pulumi.export("operatorKeyPem", secrets.operator.private_key_pem)
