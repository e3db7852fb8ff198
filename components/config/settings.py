"""The settings, typed: what the program is configured with, after components/config/reading.py has
read and validated the stack's config. Nothing here reads config or checks a value.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import StrEnum

import pulumi

from components import CHECKOUT
from components.config.node_os import NodeOs

PROJECT = "hashistack"
JOBS_DIR = CHECKOUT / "jobs"
JOB_SUFFIX = ".nomad.hcl"
DEFINITION_SUFFIX = ".nomadgen.toml"
"""A short job definition (components/workloads/definitions.py), rendered to a jobspec."""

# libvirt host offsets inside networkCidr: .1 is libvirt's gateway; servers and clients get fixed
# addresses from these offsets so certificates can name them before the VMs exist (DESIGN 1).
SERVER_HOST_OFFSET = 10
CLIENT_HOST_OFFSET = 20
# AWS keeps the first four addresses of a subnet; servers take fixed addresses from this offset.
# Even the smallest subnet AWS allows (a /28) holds the 5 servers from here.
AWS_SERVER_HOST_OFFSET = 10


class NodeImage(StrEnum):
    """What a node boots: the release's stock image, which the bootstrap installs everything on, or
    the project's baked image, which holds it already (components/nodes/node_image.py)."""

    STOCK = "stock"
    BAKED = "baked"


class Platform(StrEnum):
    AWS = "aws"
    LIBVIRT = "libvirt"


@dataclass(frozen=True)
class Problem:
    key: str
    value: object
    allowed: str

    def __str__(self) -> str:
        return f"{self.key}: {self.value!r} — {self.allowed}"


class SettingsError(pulumi.RunError):
    """Bad stack configuration. A RunError, so the CLI prints the message without a traceback."""

    def __init__(self, problems: list[Problem]):
        self.problems = tuple(problems)
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(
            f"invalid stack configuration ({len(problems)} problem(s)); "
            f"fix with `pulumi config set <key> <value>` or in Pulumi.<stack>.yaml:\n{lines}"
        )


@dataclass(frozen=True)
class Versions:
    consul: str
    nomad: str
    vault: str
    envoy: str
    cni_plugins: str
    consul_cni: str


@dataclass(frozen=True)
class PackageSource:
    """Where the nodes install the HashiCorp packages from, and the key that must sign them."""

    apt_url: str
    key_fingerprint: str
    cni_plugins_url: str
    """Where clients download the CNI reference plugins: `<url>/v<version>/<tarball>` and its `.sha256`."""
    docker_hub_mirror: str = ""
    """A Docker Hub mirror (`https://host[:port]`) the image bake pulls Envoy from and the clients' Docker
    pulls through; empty: Docker Hub itself."""


@dataclass(frozen=True)
class TlsSettings:
    ca_validity_hours: int
    cert_validity_hours: int
    cert_early_renewal_hours: int


@dataclass(frozen=True)
class NodeSize:
    memory_mib: int
    vcpus: int


@dataclass(frozen=True)
class LibvirtSettings:
    uri: str
    base_image: str
    """An https URL, or an absolute local path (`~` expanded)."""
    base_image_sha256: str
    """Empty only for a local file whose check was turned off."""
    pool_dir: str
    server_size: NodeSize
    client_size: NodeSize


@dataclass(frozen=True)
class AwsSettings:
    region: str
    subnet_cidrs: tuple[ipaddress.IPv4Network, ...]
    api_allowed_cidrs: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    server_instance_type: str
    client_instance_type: str


@dataclass(frozen=True)
class Settings:
    stack: str
    platform: Platform
    server_count: int
    client_count: int
    client_node_class: str
    """Every client's Nomad node_class; the site policy's tiers place jobs by class."""
    datacenter: str
    region: str
    domain: str
    ingress_domain: str
    network_cidr: ipaddress.IPv4Network
    versions: Versions
    package_source: PackageSource
    tls: TlsSettings
    ssh_authorized_keys: tuple[str, ...]
    node_os: NodeOs
    node_image: NodeImage
    jobs: tuple[str, ...]
    """Names of the jobs to deploy: jobs/<name>.nomad.hcl."""
    libvirt: LibvirtSettings | None
    aws: AwsSettings | None
