"""What a node gets: its files and the cloud-init user-data that writes them. Pure functions.

Templates live in cloudinit/ and are rendered strictly (an undefined variable is an error). The same
list of files serves both secret delivery modes: inline writes every file from user-data (libvirt's
cloud-init disk); SSM leaves the secret files out of user-data and lists the Parameter Store names the
node fetches them from at boot (AWS), so EC2 user-data holds no key, token or gossip key.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from enum import StrEnum
from functools import cache

import jinja2
import yaml

from components import CHECKOUT
from components.config.node_os import RELEASES, NodeOs
from components.config.settings import PackageSource, Versions

TEMPLATES = CHECKOUT / "cloudinit"
BOOTSTRAP_PATH = "/usr/local/sbin/hashistack-bootstrap"
BOOTSTRAP_ENV_PATH = "/etc/hashistack/bootstrap.env"
"""The boot script's settings, on a node and in an image being baked (components/nodes/node_image.py)."""
BOOTSTRAP_ENV_TEMPLATE = "bootstrap.env.j2"
# A baked image's container images, as `docker save` archives the client's boot loads into Docker.
CONTAINER_ARCHIVES_DIR = "/opt/hashistack/container-images"
ASG_DRAIN_PATH = "/usr/local/sbin/hashistack-asg-drain"
SSM_MANIFEST_PATH = "/etc/hashistack/ssm-secrets.tsv"
TLS_DIR = "/etc/hashistack/tls"
# go-sockaddr template the agents resolve at start, for nodes whose address is not known in advance.
DISCOVERED_ADDRESS = "{{ GetPrivateIP }}"
EC2_USER_DATA_LIMIT = 16 * 1024


class Role(StrEnum):
    SERVER = "server"
    CLIENT = "client"


@dataclass(frozen=True)
class StaticJoin:
    """Join the servers at fixed addresses (libvirt)."""

    addresses: tuple[str, ...]


@dataclass(frozen=True)
class CloudAutoJoin:
    """Find the servers by instance tag through the cloud API (go-discover, AWS)."""

    tag_key: str
    tag_value: str
    region: str

    def discover(self) -> str:
        return f"provider=aws region={self.region} tag_key={self.tag_key} tag_value={self.tag_value}"


@dataclass(frozen=True)
class ShamirSeal:
    type: str = "shamir"


@dataclass(frozen=True)
class AwsKmsSeal:
    region: str
    kms_key_id: str
    type: str = "awskms"


@dataclass(frozen=True)
class InlineSecrets:
    """Secret files travel in the user-data itself (a local cloud-init disk)."""


@dataclass(frozen=True)
class SsmSecrets:
    """Secret files are SecureString parameters under `prefix`, fetched by the node at boot."""

    region: str
    prefix: str


@dataclass(frozen=True)
class ClusterSpec:
    datacenter: str
    region: str
    domain: str
    server_count: int
    versions: Versions
    join: StaticJoin | CloudAutoJoin
    seal: ShamirSeal | AwsKmsSeal
    delivery: InlineSecrets | SsmSecrets
    package_source: PackageSource
    ssh_authorized_keys: tuple[str, ...] = ()
    node_os: NodeOs = NodeOs.UBUNTU_24_04
    client_node_class: str = "apps"
    zone: str | None = None
    """The zone a client publishes as `meta.zone` for the site policy's spread, where Nomad fingerprints
    none (libvirt); None on AWS, whose clients publish attr.platform.aws.placement.availability-zone."""


@dataclass(frozen=True)
class NodeSpec:
    role: Role
    name: str | None
    """Node name and hostname; None for autoscaled clients, which keep the cloud's hostname."""
    address: str | None
    """Private IP; None when only known at boot (autoscaled clients)."""


@dataclass(frozen=True)
class NodeMaterial:
    """The node's keys and tokens as plain strings; secret fields may be None with SsmSecrets."""

    ca_pem: str
    cert_pem: str
    key_pem: str | None = None
    consul_gossip_key: str | None = None
    consul_agent_token: str | None = None
    consul_nomad_agent_token: str | None = None
    consul_management_token: str | None = None
    """Servers only."""
    nomad_gossip_key: str | None = None
    """Servers only."""
    consul_vault_token: str | None = None
    """Servers only."""


@dataclass(frozen=True)
class NodeFile:
    path: str
    content: str
    mode: str
    secret_name: str | None = None
    """For a secret file: its name under the node's Parameter Store path; files sharing a name share content."""

    @property
    def secret(self) -> bool:
        return self.secret_name is not None


def _hcl(value: object) -> str:
    """An HCL literal: JSON's string/list/number syntax, with HCL's `${` and `%{` escaped."""
    return json.dumps(value).replace("${", "$${").replace("%{", "%%{")


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        autoescape=False,
    )
    env.filters["hcl"] = _hcl
    env.filters["shquote"] = shlex.quote
    return env


def render_template(template: str, context: dict) -> str:
    """cloudinit/<template>, rendered strictly."""
    return _environment().get_template(template).render(context)


def envoy_image(versions: Versions) -> str:
    """The Connect sidecars' image: Envoy at the pinned version, by the name Nomad asks Docker for."""
    return f"docker.io/envoyproxy/envoy:v{versions.envoy}"


def container_archive(reference: str) -> str:
    """Where a baked image keeps `reference` (the archive the bake writes and the boot loads)."""
    return f"{CONTAINER_ARCHIVES_DIR}/{reference.replace('/', '_').replace(':', '_')}.tar"


def _static(name: str) -> str:
    return (TEMPLATES / name).read_text()


def shipped_script(name: str) -> str:
    """cloudinit/<name> as nodes get it in their user-data: without its comment lines (the shebang and
    shellcheck's directives aside, no line of it starts with `#` inside a string). EC2 takes 16 KB of
    user-data at most, and the boot script's comments are a third of it gzipped; they are for the
    readers of this repository, where the script is whole. Baked images get the whole script."""
    lines = _static(name).splitlines(keepends=True)
    kept = [line for line in lines[1:] if not line.lstrip().startswith("#") or "# shellcheck " in line]
    note = f"# The commented source: cloudinit/{name} in hashistack.\n"
    return "".join([lines[0], note, *kept])


def _context(cluster: ClusterSpec, node: NodeSpec, material: NodeMaterial) -> dict:
    server = node.role is Role.SERVER
    if server and not (node.name and node.address):
        raise ValueError("a server needs a fixed name and address (its certificate and peers name them)")
    if isinstance(cluster.join, StaticJoin):
        retry_join = list(cluster.join.addresses)
        vault_peers = [{"auto_join": None, "address": f"https://{a}:8200"} for a in cluster.join.addresses]
    else:
        retry_join = [cluster.join.discover()]
        vault_peers = [{"auto_join": cluster.join.discover(), "address": None}]
    delivery = cluster.delivery
    envoy = envoy_image(cluster.versions)
    return {
        "role": node.role.value,
        "server": server,
        "node_name": node.name,
        "node_address": node.address,
        "bind_addr": node.address or DISCOVERED_ADDRESS,
        "datacenter": cluster.datacenter,
        "region": cluster.region,
        "domain": cluster.domain,
        "server_count": cluster.server_count,
        "versions": cluster.versions,
        "package_source": cluster.package_source,
        "retry_join": retry_join,
        "vault_peers": vault_peers,
        "vault_tls_server_name": f"vault.service.{cluster.domain}",
        "vault_address": f"https://vault.service.{cluster.domain}:8200",
        "envoy_image": envoy,
        "envoy_archive": container_archive(envoy),
        "node_class": cluster.client_node_class,
        "zone": cluster.zone,
        "seal": cluster.seal,
        "release_packages": RELEASES[cluster.node_os].packages_for(node.role.value),
        "secrets_source": "ssm" if isinstance(delivery, SsmSecrets) else "inline",
        "ssm_region": delivery.region if isinstance(delivery, SsmSecrets) else "",
        **{k: getattr(material, k) for k in NodeMaterial.__dataclass_fields__},
    }


def node_files(
    cluster: ClusterSpec, node: NodeSpec, material: NodeMaterial, with_secrets: bool = True
) -> list[NodeFile]:
    """Every file the node gets, in a stable order. Without secrets, secret files are left out."""
    ctx = _context(cluster, node, material)
    server = node.role is Role.SERVER
    files: list[NodeFile] = []

    def public(path: str, content: str, mode: str = "0644") -> None:
        files.append(NodeFile(path, content, mode))

    def secret(path: str, name: str, content: str | None) -> None:
        if with_secrets:
            if content is None:
                raise ValueError(f"secret {name!r} for {path} is missing from the node material")
            files.append(NodeFile(path, content, "0600", secret_name=name))
        else:
            files.append(NodeFile(path, "", "0600", secret_name=name))

    public(BOOTSTRAP_ENV_PATH, render_template(BOOTSTRAP_ENV_TEMPLATE, ctx), "0600")
    public(BOOTSTRAP_PATH, shipped_script("hashistack-bootstrap.sh"), "0700")
    # One copy of the node's certificate and key; the bootstrap installs it for each agent.
    public(f"{TLS_DIR}/ca.pem", material.ca_pem)
    public(f"{TLS_DIR}/node.pem", material.cert_pem)
    secret(f"{TLS_DIR}/node-key.pem", "tls-key", material.key_pem)
    public("/etc/consul.d/agent.hcl", render_template("consul.hcl.j2", ctx))
    secret(
        "/etc/consul.d/secrets.hcl", "consul-secrets", with_secrets and render_template("consul-secrets.hcl.j2", ctx)
    )
    public("/etc/nomad.d/agent.hcl", render_template("nomad.hcl.j2", ctx))
    secret("/etc/nomad.d/secrets.hcl", "nomad-secrets", with_secrets and render_template("nomad-secrets.hcl.j2", ctx))
    public("/etc/systemd/resolved.conf.d/consul.conf", render_template("resolved-consul.conf.j2", ctx))
    public("/etc/systemd/system/consul.service.d/conditions.conf", _static("consul-conditions.conf"))
    public("/etc/systemd/system/nomad.service.d/wants-consul.conf", _static("nomad-wants-consul.conf"))
    if server:
        public("/etc/vault.d/vault.hcl", render_template("vault.hcl.j2", ctx))
        secret("/etc/vault.d/vault.env", "vault-env", with_secrets and render_template("vault.env.j2", ctx))
        public("/etc/systemd/system/vault.service.d/wants-consul.conf", _static("vault-wants-consul.conf"))
        public("/etc/logrotate.d/vault-audit", _static("vault-audit.logrotate"))
    else:
        public("/etc/hashistack/tasks.nft", _static("hashistack-tasks.nft"))
        public("/etc/hashistack/ingress.nft", _static("hashistack-ingress.nft"))
        public("/etc/systemd/system/hashistack-task-firewall.service", _static("hashistack-task-firewall.service"))
        public("/etc/sysctl.d/60-bridge-netfilter.conf", _static("bridge-netfilter.conf"))
        public("/etc/modules-load.d/br_netfilter.conf", _static("br-netfilter-module.conf"))
        if isinstance(cluster.delivery, SsmSecrets):
            # AWS: Nomad drains the client when stopped (nomad.hcl.j2), which the autoscaling group's
            # termination does through hashistack-asg-drain; systemd waits for the drain.
            public("/etc/systemd/system/nomad.service.d/drain.conf", _static("nomad-drain.conf"))
            public(ASG_DRAIN_PATH, _static("hashistack-asg-drain.sh"), "0755")
            public("/etc/systemd/system/hashistack-asg-drain.service", _static("hashistack-asg-drain.service"))
    return files


def ssm_scope(node: NodeSpec) -> str:
    """Servers have their own parameters; all clients share one set (one shared client certificate)."""
    return node.name if node.role is Role.SERVER else "clients"


def ssm_parameter_name(delivery: SsmSecrets, node: NodeSpec, secret_name: str) -> str:
    return f"{delivery.prefix.rstrip('/')}/{ssm_scope(node)}/{secret_name}"


def secret_parameters(cluster: ClusterSpec, node: NodeSpec, material: NodeMaterial) -> dict[str, str]:
    """Parameter Store name -> value of each secret file of the node (SsmSecrets only)."""
    delivery = cluster.delivery
    if not isinstance(delivery, SsmSecrets):
        raise TypeError("secret parameters exist only with SsmSecrets delivery")
    return {
        ssm_parameter_name(delivery, node, f.secret_name): f.content
        for f in node_files(cluster, node, material)
        if f.secret
    }


class _Dumper(yaml.SafeDumper):
    """Multi-line strings as literal blocks, so the user-data reads like the files it writes."""


_Dumper.add_representer(
    str,
    lambda dumper, value: dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None),
)


def user_data(cluster: ClusterSpec, node: NodeSpec, material: NodeMaterial) -> str:
    """The node's #cloud-config. Deterministic: same inputs, byte-identical output."""
    ssm = isinstance(cluster.delivery, SsmSecrets)
    files = node_files(cluster, node, material, with_secrets=not ssm)
    written = [f for f in files if not (ssm and f.secret)]
    if ssm:
        manifest = "".join(
            f"{ssm_parameter_name(cluster.delivery, node, f.secret_name)}\t{f.path}\n" for f in files if f.secret
        )
        written.append(NodeFile(SSM_MANIFEST_PATH, manifest, "0600"))
    # No `packages`: the bootstrap installs the release's packages itself, and only what the image
    # lacks (a baked image holds them all: components/nodes/node_image.py).
    document: dict = {
        # Root-only until the bootstrap hands each directory to its agent's group.
        "write_files": [
            {"path": f.path, "content": f.content, "owner": "root:root", "permissions": f.mode} for f in written
        ],
        "runcmd": [[BOOTSTRAP_PATH]],
    }
    if node.name:
        document["hostname"] = node.name
    if cluster.ssh_authorized_keys:
        document["ssh_authorized_keys"] = list(cluster.ssh_authorized_keys)
    return "#cloud-config\n" + yaml.dump(document, Dumper=_Dumper, sort_keys=True, width=4096)
