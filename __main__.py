"""hashistack: wiring only. Settings are read and validated first, so bad input stops the program
before any resource is registered; every later step receives what it needs as Outputs."""

import pulumi

from components.access.grants import Access, AccessArgs
from components.access.namespaces import NOMAD_NAMESPACES
from components.access.providers import cluster_providers
from components.bootstrap.cluster import Bootstrap, BootstrapArgs
from components.config.reading import load_settings
from components.config.settings import Platform
from components.pki.cluster_secrets import ClusterSecrets, ClusterSecretsArgs
from components.platforms.shape import NetworkArgs, NodesArgs, server_identities
from components.workloads.deploy import Workloads, WorkloadsArgs, ingress_names, load_jobs

settings = load_settings()
# Every job file is checked now, so a bad job stops the program before any resource exists too.
jobs = load_jobs(settings, NOMAD_NAMESPACES)
# The settings' platform; only its SDK is imported.
if settings.platform is Platform.AWS:
    from components.platforms.aws.network import AwsNetwork as Network
    from components.platforms.aws.nodes import AwsNodes as Nodes

    # The default AWS provider reads `aws:region` from the stack, which Settings validated.
    platform_options = pulumi.ResourceOptions()
else:
    from components.platforms.libvirt.network import LibvirtNetwork as Network
    from components.platforms.libvirt.network import provider_options
    from components.platforms.libvirt.nodes import LibvirtNodes as Nodes

    platform_options = provider_options(settings, "cluster")

# Addresses first, so that each server's certificate names them (DESIGN decision 1).
network = Network("cluster", NetworkArgs(settings), platform_options)
secrets = ClusterSecrets(
    "cluster",
    ClusterSecretsArgs(
        datacenter=settings.datacenter,
        region=settings.region,
        domain=settings.domain,
        servers=server_identities(network),
        ca_validity_hours=settings.tls.ca_validity_hours,
        cert_validity_hours=settings.tls.cert_validity_hours,
        cert_early_renewal_hours=settings.tls.cert_early_renewal_hours,
    ),
)
exposed = ingress_names(jobs)
nodes = Nodes("cluster", NodesArgs(settings, network, secrets, exposed), platform_options)
bootstrap = Bootstrap("cluster", BootstrapArgs(settings, secrets, nodes))

# Providers from the bootstrap's Outputs: everything configured through them waits for it.
providers = cluster_providers("cluster", bootstrap, settings)
access = Access("cluster", AccessArgs(settings, bootstrap), providers.options())
workloads = Workloads("cluster", WorkloadsArgs(settings, jobs, access), providers.options())

pulumi.export("platform", settings.platform.value)
pulumi.export("serverAddresses", nodes.servers)
pulumi.export("clients", nodes.clients)
pulumi.export("apiEndpoint", nodes.api_endpoint)
pulumi.export("ingressEndpoint", nodes.ingress_endpoint)
pulumi.export(
    "urls",
    nodes.api_endpoint.apply(
        lambda host: {
            "nomad": f"https://{host}:4646",
            "consul": f"https://{host}:8501",
            "vault": f"https://{host}:8200",
        }
    ),
)
pulumi.export("hostsLines", nodes.hosts_lines)
pulumi.export("sshCommands", nodes.ssh_commands)
pulumi.export("caCertPem", secrets.ca_cert_pem)
pulumi.export("consulManagementToken", secrets.consul_management_token)
pulumi.export("consulAgentToken", secrets.consul_agent_token)
pulumi.export("consulNomadAgentToken", secrets.consul_nomad_agent_token)
pulumi.export("consulVaultToken", secrets.consul_vault_token)
pulumi.export("nomadBootstrapToken", secrets.nomad_bootstrap_token)
pulumi.export("operatorCertPem", secrets.operator.cert_pem)
pulumi.export("operatorKeyPem", secrets.operator.private_key_pem)
pulumi.export("vaultRootToken", bootstrap.vault_token)
pulumi.export("vaultUnsealKeys", bootstrap.vault_unseal_keys)
pulumi.export("vaultRecoveryKeys", bootstrap.vault_recovery_keys)
pulumi.export("vaultOperatorToken", access.vault_operator_token)
pulumi.export("nomadDeployToken", access.nomad_deploy_token)
pulumi.export("nomadReadonlyToken", access.nomad_readonly_token)
pulumi.export("nomadDeveloperToken", access.nomad_developer_token)
pulumi.export("appsNamespace", access.apps_namespace)
pulumi.export("env", access.env)
pulumi.export("jobs", sorted(workloads.jobs))
pulumi.export("appUrls", {name: f"http://{name}.{settings.ingress_domain}" for name in exposed})
