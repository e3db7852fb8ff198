"""The public shape both platforms share, and the server chain that keeps the quorum safe.

A platform is two components, used in this order by __main__.py:
  <Platform>Network(name, NetworkArgs)  -> every server's addresses, known before any certificate
                                           (DESIGN decision 1), and the API load balancer's names;
  <Platform>Nodes(name, NodesArgs)      -> the machines, booted from user-data with their certificates.
libvirt and AWS implement both with the same inputs and outputs (components/libvirt_platform.py,
components/aws_platform.py); `platform_kit` picks them from the settings.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import pulumi

from components.addressing import PlannedServer, planned_servers
from components.bootstrap import VAULT_KEY_SHARES, VAULT_KEY_THRESHOLD, VaultInit
from components.secrets import ClusterSecrets, ServerIdentity
from components.server_health import ServerHealth, ServerHealthArgs
from components.settings import Platform, Settings
from components.stack_epoch import StackEpoch


@dataclass(frozen=True)
class ServerAddress:
    name: str
    private_ip: pulumi.Output[str]
    public_ip: pulumi.Output[str] | None = None
    """Set where servers are reachable from outside their network (AWS Elastic IPs)."""

    @property
    def reachable_ip(self) -> pulumi.Output[str]:
        """The address the operator's machine (and the program's health checks) use."""
        return self.public_ip if self.public_ip is not None else self.private_ip


@dataclass(frozen=True)
class NetworkArgs:
    settings: Settings


class ClusterNetwork(Protocol):
    servers: list[ServerAddress]
    """Every server's addresses, in server order."""
    api_dns_names: pulumi.Output[list[str]]
    """DNS names of the API endpoint that server certificates must carry (AWS: the load balancer)."""


@dataclass(frozen=True)
class NodesArgs:
    settings: Settings
    network: Any
    """The same platform's network component (a ClusterNetwork)."""
    secrets: ClusterSecrets
    ingress_names: tuple[str, ...] = ()
    """Services the ingress exposes as `<name>.<ingressDomain>` (from the jobs), for the hosts lines."""


class ClusterNodes(Protocol):
    servers: dict[str, pulumi.Output[str]]
    """Server name -> the address the operator reaches it at."""
    clients: pulumi.Output[Any]
    """The client group: name -> address on libvirt, the autoscaling group on AWS."""
    api_endpoint: pulumi.Output[str]
    """Host name or address of the Nomad (4646), Consul (8501) and Vault (8200) APIs."""
    ingress_endpoint: pulumi.Output[str]
    """Host name or address where the clients' ingress (Traefik, 80/443) is reached."""
    server_health: list[ServerHealth]
    """One health gate per server, in chain order."""
    vault_init: VaultInit
    """Vault's initialisation (root token, unseal or recovery keys), made within the server chain."""
    hosts_lines: pulumi.Output[str]
    """Lines for the operator's /etc/hosts naming the nodes and the ingress's services."""
    ssh_commands: pulumi.Output[dict[str, str]]
    """Node name -> ssh command (with one of the sshAuthorizedKeys)."""


def hosts_lines(settings: Settings, nodes: dict[str, str], ingress_ip: str | None, ingress_names: Sequence[str]) -> str:
    """/etc/hosts lines: each node by name, and the ingress's services (Traefik routes
    `<service>.<ingressDomain>`) at the ingress address."""
    lines = [f"{ip} {node}" for node, ip in nodes.items()]
    if ingress_ip and ingress_names:
        lines.append(f"{ingress_ip} " + " ".join(f"{s}.{settings.ingress_domain}" for s in ingress_names))
    return "\n".join(lines) + "\n"


def server_identities(network: ClusterNetwork) -> list[ServerIdentity]:
    """What each server's certificate names: its private (and public) IPs and the API's DNS names."""
    identities = []
    for server in network.servers:
        ips = [server.private_ip] if server.public_ip is None else [server.private_ip, server.public_ip]
        identities.append(ServerIdentity(server.name, pulumi.Output.all(*ips), network.api_dns_names))
    return identities


@dataclass(frozen=True)
class ServerChain:
    gates: list[ServerHealth]
    """One health gate per server, in chain order."""
    vault_init: VaultInit
    """Vault's one-time initialisation, on server-0 before its gate (the gates need its keys)."""
    epoch: StackEpoch
    """Which `up` is the stack's first: other chains (libvirt's clients) wait only after it."""


def chain_servers(
    name: str,
    settings: Settings,
    network: ClusterNetwork,
    secrets: ClusterSecrets,
    parent: pulumi.Resource,
    create_server: Callable[[PlannedServer, pulumi.ResourceOptions], pulumi.CustomResource],
    console_logs: Mapping[str, str] | None = None,
    console_command: Callable[[pulumi.CustomResource], pulumi.Input[str]] | None = None,
) -> ServerChain:
    """Creates the servers one after another, each behind the previous one's health gate, except on
    the stack's first `up`, when they are created together (components/stack_epoch.py).

    `create_server` makes one server machine with the options given (parent, the dependency on the
    previous gate, delete-before-replace: a server keeps its name and address, so the old machine
    must be gone first), and gives the same `depends_on` to every other per-server resource the
    machine takes an input from and that can be replaced (libvirt: its cloud-init disk and disk),
    or a replacement of those would take the machine down outside the chain: the engine deletes the
    dependents of a delete-before-replace resource first. A change that replaces every server thus
    replaces one, waits until its Consul, Vault and Nomad have rejoined as healthy voters, then the
    next: never two at once (DESIGN decision 8). Vault is initialised right after the first server
    exists, and unsealed there by its initialisation, so that no gate waits for another (the dynamic
    provider serves four calls at once: with five servers created together, one gate queues).
    `console_logs`: server name -> its serial console log on this host, where a gate reads a failed
    boot's FAILED line (components/node_console.py); `console_command`: machine -> the command that
    shows its console, named by a gate that times out (AWS).
    """
    reachable = {s.name: s.reachable_ip for s in network.servers}
    epoch = StackEpoch(f"{name}-epoch", pulumi.ResourceOptions(parent=parent))
    gates: list[ServerHealth] = []
    vault_init = None
    for planned in planned_servers(settings):
        machine = create_server(
            planned,
            pulumi.ResourceOptions(parent=parent, depends_on=epoch.after(gates[-1:]), delete_before_replace=True),
        )
        if vault_init is None:
            vault_init = VaultInit(
                f"{name}-vault-init",
                {
                    # One server initialises; the others join its raft cluster when unsealed.
                    "address": reachable[planned.name].apply(lambda ip: f"https://{ip}:8200"),
                    "ca_pem": secrets.ca_cert_pem,
                    "auto_unseal": settings.platform is Platform.AWS,
                    "shares": VAULT_KEY_SHARES,
                    "threshold": VAULT_KEY_THRESHOLD,
                    "machine": machine.id,
                },
                pulumi.ResourceOptions(parent=parent),
            )
        gates.append(
            ServerHealth(
                f"{name}-{planned.name}-healthy",
                ServerHealthArgs(
                    node_name=planned.name,
                    address=reachable[planned.name],
                    peers=[ip for peer, ip in reachable.items() if peer != planned.name],
                    machine_id=machine.id,
                    ca_pem=secrets.ca_cert_pem,
                    client_cert_pem=secrets.operator.cert_pem,
                    client_key_pem=secrets.operator.private_key_pem,
                    consul_token=secrets.consul_management_token,
                    nomad_token=secrets.nomad_bootstrap_token,
                    vault_token=vault_init.root_token,
                    vault_unseal_keys=vault_init.unseal_keys,
                    console_log=(console_logs or {}).get(planned.name, ""),
                    console_command=console_command(machine) if console_command else "",
                ),
                pulumi.ResourceOptions(parent=parent),
            )
        )
    return ServerChain(gates, vault_init, epoch)


@dataclass(frozen=True)
class PlatformKit:
    network: type
    """The platform's Network component class."""
    nodes: type
    """The platform's Nodes component class."""
    options: pulumi.ResourceOptions
    """Options for both, carrying the platform's provider."""


def platform_kit(settings: Settings, name: str) -> PlatformKit:
    """The components of the settings' platform; imports only that platform's SDK."""
    if settings.platform is Platform.AWS:
        from components.aws_platform import AwsNetwork, AwsNodes

        # The default AWS provider reads `aws:region` from the stack, which Settings validated.
        return PlatformKit(AwsNetwork, AwsNodes, pulumi.ResourceOptions())
    from components.libvirt_platform import LibvirtNetwork, LibvirtNodes, provider_options

    return PlatformKit(LibvirtNetwork, LibvirtNodes, provider_options(settings, name))
