"""The libvirt platform's machines (stack `dev`): VMs on the operator's Linux host.

Real differences from AWS, kept visible: servers and clients have fixed addresses on a NAT network
of the host (no load balancer; the API endpoint is the first server, the ingress the first client),
servers join each other by address, Vault uses Shamir keys, and secrets travel on each VM's
cloud-init disk, which is why the storage pool's directory admits only root and QEMU. What the
provider generates is adjusted by the stylesheets of components/platforms/libvirt/stylesheets.py: file disks (AppArmor
hosts), private volumes and directory, and each serial console logged to a file the operator reads
(and the server gates watch for a failed boot).
"""

from __future__ import annotations

from pathlib import Path

import pulumi
import pulumi_libvirt as libvirt

from components.config.addressing import PlannedServer, planned_servers
from components.config.settings import NodeSize
from components.nodes.node_config import NodeSpec, Role
from components.nodes.node_plan import cluster_spec, node_specs
from components.nodes.user_data import material_for, user_data
from components.platforms.libvirt.network import resource_prefix
from components.platforms.libvirt.seed import meta_data, network_config
from components.platforms.libvirt.stylesheets import console_log_path, domain_xslt, prepare_console_log, volume_xslt
from components.platforms.shape import NodesArgs, hosts_lines, reachable_ips
from components.rollout.client_node import ClientNode, ClientNodeArgs
from components.rollout.server_chain import chain_servers
from components.rollout.server_health import ServerHealth
from components.rollout.vault_init import VaultInit
from components.rollout.vault_standby import VaultStandbyFirst

GIB = 1024**3
# Room for the OS, the agents' data and (on clients) container images.
SERVER_DISK_BYTES = 20 * GIB
CLIENT_DISK_BYTES = 40 * GIB


class LibvirtNodes(pulumi.ComponentResource):
    servers: dict[str, pulumi.Output[str]]
    """Server name -> address."""
    clients: pulumi.Output[dict[str, str]]
    """Client name -> address."""
    api_endpoint: pulumi.Output[str]
    """The first server's address: Nomad 4646, Consul 8501 and Vault 8200 answer there."""
    ingress_endpoint: pulumi.Output[str]
    """The first client's address, where the ingress (Traefik) listens; empty without clients."""
    server_health: list[ServerHealth]
    vault_standby_first: VaultStandbyFirst
    """One health gate per server, in chain order."""
    vault_init: VaultInit
    """Vault's initialisation, made within the server chain (components/rollout/server_chain.py)."""
    hosts_lines: pulumi.Output[str]
    """Lines for the operator's /etc/hosts, naming the nodes and the ingress's services."""
    ssh_commands: pulumi.Output[dict[str, str]]
    """Node name -> ssh command (needs one of the sshAuthorizedKeys)."""

    def __init__(self, name: str, args: NodesArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("hashistack:libvirt:Nodes", name, None, opts)
        settings, network, secrets = args.settings, args.network, args.secrets
        self._name, self._settings, self._network = name, settings, network
        cluster = cluster_spec(settings)
        nodes = node_specs(settings)

        console_logs = {node: str(console_log_path(settings.stack, node)) for node in nodes}
        if not pulumi.runtime.is_dry_run():
            for log in console_logs.values():
                prepare_console_log(Path(log))
        self._console_logs = console_logs
        server_texts = {
            planned.name: user_data(
                cluster, nodes[planned.name], material_for(secrets, Role.SERVER, secrets.servers[planned.name])
            )
            for planned in planned_servers(settings)
        }

        def create_server(planned: PlannedServer, server_opts: pulumi.ResourceOptions) -> libvirt.Domain:
            node = nodes[planned.name]
            return self._vm(
                node, server_texts[planned.name], settings.libvirt.server_size, SERVER_DISK_BYTES, server_opts
            )

        # What replaces a server's domain: its user-data (a new cloud-init disk), the base image, its
        # size and the stylesheets (the domain's own inputs).
        size = settings.libvirt.server_size
        machine_specs = {
            server: [
                text,
                network.base_volume_id,
                size.memory_mib,
                size.vcpus,
                domain_xslt(settings.libvirt.pool_dir, console_logs[server]),
            ]
            for server, text in server_texts.items()
        }

        chain = chain_servers(
            name, settings, reachable_ips(network), secrets, self, create_server, machine_specs, console_logs
        )
        self.server_health, self.vault_init = chain.gates, chain.vault_init
        self.vault_standby_first = chain.end
        # On every `up` but the first, the clients come after the servers (Consul and Nomad upgrade
        # servers first: docs/operations.md, Upgrading): the first waits for the last server's gate,
        # each next one for the one before it to be a ready Nomad node again, and a replaced one is
        # drained first (components/rollout/client_node.py). On the first `up` they boot beside the servers.
        client_material = material_for(secrets, Role.CLIENT, secrets.client)
        server_addresses = [s.private_ip for s in network.servers]
        self.client_nodes: list[ClientNode] = []
        for node in nodes.values():
            if node.role is Role.CLIENT:
                text = user_data(cluster, node, client_material)
                slot = pulumi.ResourceOptions(
                    parent=self, depends_on=chain.epoch.after(self.client_nodes[-1:] or chain.last)
                )
                machine = self._vm(node, text, settings.libvirt.client_size, CLIENT_DISK_BYTES, slot)
                self.client_nodes.append(
                    ClientNode(
                        f"{name}-{node.name}-nomad",
                        ClientNodeArgs(
                            node_name=node.name,
                            machine_id=machine.id,
                            addresses=server_addresses,
                            ca_pem=secrets.ca_cert_pem,
                            nomad_token=secrets.nomad_bootstrap_token,
                        ),
                        pulumi.ResourceOptions(parent=self),
                    )
                )

        addresses = {n.name: n.address for n in nodes.values()}
        client_addresses = {n.name: n.address for n in nodes.values() if n.role is Role.CLIENT}
        self.servers = {s.name: s.private_ip for s in network.servers}
        self.clients = pulumi.Output.from_input(client_addresses)
        self.api_endpoint = network.servers[0].private_ip
        ingress = next(iter(client_addresses.values()), None)
        self.ingress_endpoint = pulumi.Output.from_input(ingress or "")
        self.hosts_lines = pulumi.Output.from_input(hosts_lines(settings, addresses, ingress, args.ingress_names))
        self.ssh_commands = pulumi.Output.from_input({node: f"ssh ubuntu@{ip}" for node, ip in addresses.items()})
        self.register_outputs({"servers": self.servers, "clients": self.clients, "api_endpoint": self.api_endpoint})

    def _vm(
        self,
        node: NodeSpec,
        user_data_text: pulumi.Output[str],
        size: NodeSize,
        disk_bytes: int,
        opts: pulumi.ResourceOptions,
    ) -> libvirt.Domain:
        name, settings, network = f"{self._name}-{node.name}", self._settings, self._network
        # The node's place in the server chain (no wait for clients): its cloud-init disk and disk are
        # replaced delete-before-replace, which takes the domain down with them, so they wait too.
        slot = pulumi.ResourceOptions(parent=self, depends_on=opts.depends_on)
        prefix = resource_prefix(settings)
        cloudinit = libvirt.CloudInitDisk(
            f"{name}-cloudinit",
            name=f"{prefix}-{node.name}-cloudinit.iso",
            pool=network.pool_name,
            user_data=user_data_text,
            meta_data=user_data_text.apply(lambda text: meta_data(node.name, text)),
            network_config=network_config(settings, node.address),
            opts=slot,
        )
        # A node whose user-data changes gets a fresh disk too: replacement, never an in-place re-run.
        disk = libvirt.Volume(
            f"{name}-disk",
            name=f"{prefix}-{node.name}.qcow2",
            pool=network.pool_name,
            base_volume_id=network.base_volume_id,
            size=disk_bytes,
            format="qcow2",
            xml=libvirt.VolumeXmlArgs(xslt=volume_xslt()),
            opts=pulumi.ResourceOptions.merge(
                slot, pulumi.ResourceOptions(replacement_trigger=cloudinit.id, delete_before_replace=True)
            ),
        )
        return libvirt.Domain(
            name,
            name=f"{prefix}-{node.name}",
            memory=size.memory_mib,
            vcpu=size.vcpus,
            cpu=libvirt.DomainCpuArgs(mode="host-passthrough"),
            cloudinit=cloudinit.id,
            disks=[libvirt.DomainDiskArgs(volume_id=disk.id)],
            # The disk as a file (AppArmor hosts refuse pool/volume disks' backing chains) and the
            # serial console also logged where the operator and the gates read it.
            xml=libvirt.DomainXmlArgs(xslt=domain_xslt(settings.libvirt.pool_dir, self._console_logs[node.name])),
            # No addresses here: they would make the provider manage DHCP host entries on a network
            # without DHCP; cloud-init's network-config sets the fixed address.
            network_interfaces=[libvirt.DomainNetworkInterfaceArgs(network_id=network.network_id)],
            consoles=[libvirt.DomainConsoleArgs(type="pty", target_port="0", target_type="serial")],
            autostart=True,
            opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(delete_before_replace=True)),
        )
