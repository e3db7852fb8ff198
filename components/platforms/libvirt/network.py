"""The libvirt platform's network (stack `dev`): a NAT network of the host, the stack's private storage
pool and the base image every disk is a copy-on-write layer of, and the servers' fixed addresses.
The pool's directory admits only root and QEMU, because each VM's cloud-init disk holds its secrets.
"""

from __future__ import annotations

import hashlib

import pulumi
import pulumi_libvirt as libvirt

from components.config.addressing import planned_servers
from components.config.settings import PROJECT, NodeImage, Settings
from components.nodes.node_image import recipe
from components.platforms.libvirt.base_image import baked_image, local_image
from components.platforms.libvirt.stylesheets import pool_xslt, qemu_group_gid, volume_xslt
from components.platforms.shape import NetworkArgs, ServerAddress


def provider_options(settings: Settings, name: str) -> pulumi.ResourceOptions:
    """The libvirt provider of the stack's URI, passed to both components through their options."""
    return pulumi.ResourceOptions(providers=[libvirt.Provider(f"{name}-libvirt", uri=settings.libvirt.uri)])


def resource_prefix(settings: Settings) -> str:
    return f"{PROJECT}-{settings.stack}"


class LibvirtNetwork(pulumi.ComponentResource):
    servers: list[ServerAddress]
    """Every server's fixed address, in server order."""
    api_dns_names: pulumi.Output[list[str]]
    """None on libvirt: the API is reached at a server's address."""
    network_id: pulumi.Output[str]
    """The NAT network the VMs attach to."""
    pool_name: pulumi.Output[str]
    """The private storage pool of the stack."""
    base_volume_id: pulumi.Output[str]
    """The image every node's disk is a copy-on-write layer of: the stock cloud image or the baked one."""

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("hashistack:libvirt:Network", name, None, opts)
        settings = args.settings
        child = pulumi.ResourceOptions(parent=self)
        prefix = resource_prefix(settings)

        network = libvirt.Network(
            f"{name}-network",
            name=prefix,
            mode="nat",
            addresses=[str(settings.network_cidr)],
            autostart=True,
            # Addresses are fixed by cloud-init's network-config; libvirt's dnsmasq only resolves, and
            # forwards what it does not know (the nodes' apt). `local_only` would change nothing without
            # a `domain` (terraform-provider-libvirt v0.8.1 libvirt/network.go getDomainFromResource).
            dhcp=libvirt.NetworkDhcpArgs(enabled=False),
            dns=libvirt.NetworkDnsArgs(enabled=True),
            opts=child,
        )
        pool = libvirt.Pool(
            f"{name}-pool",
            name=prefix,
            type="dir",
            target=libvirt.PoolTargetArgs(path=settings.libvirt.pool_dir),
            # 0710 root:libvirt-qemu: the cloud-init disks (0644, no hook) hold the nodes' secrets.
            xml=libvirt.PoolXmlArgs(xslt=pool_xslt(qemu_group_gid())),
            opts=child,
        )
        # Named by its content: a new image is a new volume beside the old one, so each disk moves to it
        # in its own step of the server chain, and the old image is deleted last, once unused. (One
        # fixed name would be replaced delete-before-replace, taking every disk and VM down at once.)
        # A baked image is named by the hash of its inputs: a version bump is a new volume, as above.
        preview = pulumi.runtime.is_dry_run()
        if settings.node_image is NodeImage.BAKED:
            baked = recipe(settings)
            volume, volume_name = baked.name, f"{prefix}-{baked.name}.qcow2"
            source = baked_image(baked, preview=preview)
        else:
            volume = base_image_id(settings.libvirt.base_image, settings.libvirt.base_image_sha256)
            volume_name = f"{prefix}-ubuntu-24.04-{volume}.qcow2"
            # A checked local file, never a URL the provider would stream unverified (components/platforms/libvirt/base_image.py).
            source = local_image(settings.libvirt.base_image, settings.libvirt.base_image_sha256, preview=preview)
        base = libvirt.Volume(
            f"{name}-base-image-{volume}",
            name=volume_name,
            pool=pool.name,
            source=source,
            format="qcow2",
            xml=libvirt.VolumeXmlArgs(xslt=volume_xslt()),
            opts=child,
        )

        self.servers = [
            ServerAddress(s.name, pulumi.Output.from_input(s.private_ip)) for s in planned_servers(settings)
        ]
        self.api_dns_names = pulumi.Output.from_input([])
        self.network_id = network.id
        self.pool_name = pool.name
        self.base_volume_id = base.id
        self.register_outputs({"network_id": self.network_id, "pool_name": self.pool_name})


def base_image_id(source: str, sha256: str) -> str:
    """A short name for the image's content: its pinned SHA-256, else (a local file with the check
    turned off) the file's path."""
    return (sha256 or hashlib.sha256(source.encode()).hexdigest())[:12]
