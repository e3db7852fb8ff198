"""The public shape both platforms share: what a platform takes and what it reports.

A platform is two components, used in this order by __main__.py:
  <Platform>Network(name, NetworkArgs)  -> every server's addresses, known before any certificate
                                           (DESIGN decision 1), and the API load balancer's names;
  <Platform>Nodes(name, NodesArgs)      -> the machines, booted from user-data with their certificates.
libvirt and AWS implement both with the same inputs and outputs (components/platforms/libvirt/nodes.py,
components/platforms/aws/nodes.py); __main__.py picks one from the settings. Each Nodes creates its
servers through the server chain (components/rollout/server_chain.py), which orders them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import pulumi

from components.config.settings import Settings
from components.pki.cluster_secrets import ClusterSecrets, ServerIdentity
from components.rollout.server_health import ServerHealth
from components.rollout.vault_init import VaultInit
from components.rollout.vault_standby import VaultStandbyFirst


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
    network: ClusterNetwork
    """The same platform's network component."""
    secrets: ClusterSecrets
    ingress_names: tuple[str, ...] = ()
    """Services the ingress exposes as `<name>.<ingressDomain>` (from the jobs), for the hosts lines."""


class ClusterNodes(Protocol):
    servers: dict[str, pulumi.Output[str]]
    """Server name -> the address the operator reaches it at."""
    clients: pulumi.Output[Mapping[str, str | int]]
    """The client group: name -> address on libvirt, the autoscaling group on AWS."""
    api_endpoint: pulumi.Output[str]
    """Host name or address of the Nomad (4646), Consul (8501) and Vault (8200) APIs."""
    ingress_endpoint: pulumi.Output[str]
    """Host name or address where the clients' ingress (Traefik, 80/443) is reached."""
    server_health: list[ServerHealth]
    """One health gate per server, in chain order."""
    vault_init: VaultInit
    """Vault's initialisation (root token, unseal or recovery keys), made within the server chain."""
    vault_standby_first: VaultStandbyFirst
    """The server chain's end: Vault's active node moved off the first server (Vault's users wait for it)."""
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


def reachable_ips(network: ClusterNetwork) -> dict[str, pulumi.Output[str]]:
    """Server name -> the address the operator's machine (and the server chain's gates) reach it at."""
    return {server.name: server.reachable_ip for server in network.servers}


def server_identities(network: ClusterNetwork) -> list[ServerIdentity]:
    """What each server's certificate names: its private (and public) IPs and the API's DNS names."""
    identities = []
    for server in network.servers:
        ips = [server.private_ip] if server.public_ip is None else [server.private_ip, server.public_ip]
        identities.append(ServerIdentity(server.name, pulumi.Output.all(*ips), network.api_dns_names))
    return identities
