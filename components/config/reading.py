"""Reading the stack's config into Settings: the only module that reads `pulumi.Config`.

Defaults live in Pulumi.yaml's config schema (the engine applies them), so every key is required
here. Every rule is checked before any resource is declared and all problems are reported together,
each naming the key, the bad value and what is allowed.
"""

from __future__ import annotations

import base64
import difflib
import ipaddress
import json
import os
import re
from collections.abc import Callable, Mapping
from enum import Enum
from pathlib import Path
from urllib.parse import ParseResult, urlparse

import pulumi

from components.config.node_os import NodeOs
from components.config.settings import (
    CLIENT_HOST_OFFSET,
    DEFINITION_SUFFIX,
    JOB_SUFFIX,
    JOBS_DIR,
    PROJECT,
    SERVER_HOST_OFFSET,
    AwsSettings,
    LibvirtSettings,
    NodeImage,
    NodeSize,
    PackageSource,
    Platform,
    Problem,
    Settings,
    SettingsError,
    TlsSettings,
    Versions,
)

_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_EXACT_VERSION = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")
_AWS_REGION = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d$")
_KEY_FINGERPRINT = re.compile(r"^[0-9A-F]{40}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# AWS: "Inbound or outbound rules per security group", 60 by default, counted per address family (VPC
# quotas). The servers' group holds 17 rules of the cluster's own and 4 per apiAllowedCidrs range
# (SSH and the three APIs): tests/platforms/aws/test_aws_firewall.py counts them.
SECURITY_GROUP_RULES = 60
MAX_API_ALLOWED_CIDRS = (SECURITY_GROUP_RULES - 17) // 4
_INSTANCE_TYPE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9-]+$")
_SSH_KEY_TYPES = (
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
)
_RFC1918 = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))
# RFC 5737 ranges, used in Pulumi.aws.yaml so a fresh clone previews; nobody's real address.
_DOCUMENTATION = tuple(ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"))
SUPPORTED_FLOORS: dict[str, tuple[tuple[int, int, int], str]] = {
    # The lines that still get Community Edition fixes (../shared/audits/turn3/versions.md A.1):
    # hashicorp/nomad .release/versions.hcl marks only 2.0.x ce_active; Consul's 1.21/1.22 patch lines
    # are Enterprise only (hashicorp/consul#23614); a Vault CE line ends at the next release.
    "consulVersion": ((2, 0, 0), "the oldest Consul line with Community Edition fixes"),
    "nomadVersion": (
        (2, 0, 4),
        "older Nomad lets a job get round the Docker hardening: CVE-2026-14891 and CVE-2026-14896, fixed in "
        "2.0.4 (hashicorp/nomad CHANGELOG.md@v2.0.5)",
    ),
    "vaultVersion": ((2, 1, 0), "the oldest Vault line with Community Edition fixes"),
}
"""Version setting -> (the oldest version allowed, why)."""

MIN_SERVER_MEMORY_MIB = 1536
MIN_CLIENT_MEMORY_MIB = 2048
MIN_SERVER_VCPUS = 1
MIN_CLIENT_VCPUS = 2
MAX_CLIENTS = 1000
# Instance sizes below 2 GiB of memory cannot run the agents next to any workload.
_TOO_SMALL_INSTANCE_SIZES = ("nano", "micro")


# The project's config keys, as in Pulumi.yaml. Any other `hashistack:` key is a typo.
KNOWN_KEYS = frozenset(
    {
        "platform",
        "serverCount",
        "acceptNoFaultTolerance",
        "clientCount",
        "clientNodeClass",
        "datacenter",
        "region",
        "domain",
        "ingressDomain",
        "networkCidr",
        "subnetCidrs",
        "apiAllowedCidrs",
        "consulVersion",
        "nomadVersion",
        "vaultVersion",
        "envoyVersion",
        "cniPluginsVersion",
        "consulCniVersion",
        "hashicorpAptUrl",
        "hashicorpKeyFingerprint",
        "cniPluginsUrl",
        "dockerHubMirror",
        "caValidityHours",
        "certValidityHours",
        "certEarlyRenewalHours",
        "sshAuthorizedKeys",
        "nodeOs",
        "nodeImage",
        "jobs",
        "libvirtUri",
        "libvirtPoolDir",
        "libvirtBaseImage",
        "libvirtBaseImageSha256",
        "libvirtOperatorSshKeys",
        "serverMemoryMib",
        "serverVcpus",
        "clientMemoryMib",
        "clientVcpus",
        "awsServerInstanceType",
        "awsClientInstanceType",
    }
)
AWS_REGION_KEY = "aws:region"

Lookup = Callable[[str], "str | None"]


def _https_url(value: str) -> ParseResult | None:
    """`value` parsed, when it is an https URL with a host and no query, fragment or space."""
    parsed = urlparse(value)
    if parsed.scheme != "https" or not parsed.hostname or parsed.query or parsed.fragment or " " in value:
        return None
    return parsed


class _Reader:
    """Reads raw config strings into typed values, collecting problems instead of raising."""

    def __init__(self, lookup: Lookup):
        self._lookup = lookup
        self.problems: list[Problem] = []

    def problem(self, key: str, value: object, allowed: str) -> None:
        self.problems.append(Problem(key, value, allowed))

    def has_problem(self, key: str) -> bool:
        return any(p.key == key for p in self.problems)

    def raw(self, key: str) -> str | None:
        value = self._lookup(key)
        if value is None:
            self.problem(key, None, "is required (its default is in Pulumi.yaml's config schema)")
        return value

    def string(self, key: str) -> str:
        return self.raw(key) or ""

    def integer(self, key: str, low: int, high: int | None = None) -> int:
        raw = self.raw(key)
        if raw is None:
            return low
        try:
            value = int(raw)
        except ValueError:
            self.problem(key, raw, "must be a whole number")
            return low
        if value < low or (high is not None and value > high):
            allowed = f"from {low} to {high}" if high is not None else f"at least {low}"
            self.problem(key, value, f"must be {allowed}")
        return value

    def boolean(self, key: str) -> bool:
        raw = self.raw(key)
        if raw is None or raw.lower() in ("true", "false"):
            return raw is not None and raw.lower() == "true"
        self.problem(key, raw, "must be true or false")
        return False

    def string_list(self, key: str) -> list[str]:
        raw = self.raw(key)
        if raw is None:
            return []
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.problem(key, raw, "must be a list of strings, e.g. ['10.0.0.0/16']")
            return []
        return value

    def choice(self, key: str, enum: type[Enum]) -> Enum | None:
        raw = self.string(key)
        try:
            return enum(raw)
        except ValueError:
            self.problem(key, raw, f"must be one of {', '.join(e.value for e in enum)}")
            return None

    def dns_label(self, key: str) -> str:
        value = self.string(key)
        if not _DNS_LABEL.match(value):
            self.problem(key, value, "must be a DNS label: lowercase letters, digits and '-', 1-63 characters")
        return value

    def dns_name(self, key: str) -> str:
        value = self.string(key)
        if len(value) > 253 or not all(_DNS_LABEL.match(label) for label in value.split(".")):
            self.problem(key, value, "must be a DNS name: dot-separated DNS labels (lowercase letters, digits, '-')")
        return value

    def version(self, key: str) -> str:
        value = self.string(key)
        floor = SUPPORTED_FLOORS.get(key)
        if not _EXACT_VERSION.match(value):
            self.problem(key, value, "must be an exact version MAJOR.MINOR.PATCH, e.g. 1.2.3 (no ranges, no 'v')")
        elif floor and tuple(int(p) for p in value.split(".")) < floor[0]:
            self.problem(key, value, f"must be {'.'.join(map(str, floor[0]))} or newer ({floor[1]})")
        return value

    def https_url(self, key: str) -> str:
        value = self.string(key)
        if _https_url(value) is None:
            self.problem(
                key, value, "must be an https URL without query or fragment, e.g. https://apt.example.com/hashicorp"
            )
        return value.rstrip("/")

    def registry_mirror(self, key: str) -> str:
        """Empty, or an https URL of a host alone: Docker's daemon refuses a mirror URL with a path, a
        query or a fragment (moby registry/config.go ValidateMirror, the 20.10 line Debian 12 ships)."""
        value = self.string(key)
        if not value:
            return ""
        parsed = _https_url(value)
        if parsed is None or parsed.path not in ("", "/") or parsed.username:
            self.problem(key, value, "must be empty (Docker Hub) or an https URL of a host and port alone, "
                         "e.g. https://mirror.gcr.io or https://registry.internal:5000")  # fmt: skip
        return value.rstrip("/")

    def key_fingerprint(self, key: str) -> str:
        value = self.string(key)
        if not _KEY_FINGERPRINT.match(value):
            self.problem(key, value, "must be a key fingerprint: 40 hexadecimal digits in capitals, no spaces")
        return value

    def private_network(self, key: str, value: str) -> ipaddress.IPv4Network | None:
        try:
            network = ipaddress.IPv4Network(value)
        except ValueError:
            self.problem(
                key, value, "must be an IPv4 network in CIDR notation with no host bits set, e.g. 10.42.0.0/16"
            )
            return None
        if not any(network.subnet_of(private) for private in _RFC1918):
            self.problem(key, value, "must be a private range inside 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16")
            return None
        return network


def parse_settings(
    lookup: Lookup, stack: str, config_keys: frozenset[str] = frozenset(), preview: bool = True
) -> Settings:
    """Builds Settings from raw config strings (`lookup("serverCount") -> "3"`), or raises SettingsError.

    `config_keys` are the project keys present in the stack's config, checked for typos; `preview`
    relaxes the one rule that only matters when resources are really created.
    """
    read = _Reader(lookup)
    for key in sorted(config_keys - KNOWN_KEYS):
        close = difflib.get_close_matches(key, KNOWN_KEYS, n=1)
        hint = f"did you mean {close[0]}?" if close else "see the configuration reference in README.md"
        read.problem(key, lookup(key), f"is not a setting of this project; {hint}")

    platform = read.choice("platform", Platform)
    server_count = read.integer("serverCount", 1)
    accept_no_fault_tolerance = read.boolean("acceptNoFaultTolerance")
    allowed_server_counts = (1, 3, 5) if accept_no_fault_tolerance else (3, 5)
    if not read.has_problem("serverCount") and server_count not in allowed_server_counts:
        read.problem(
            "serverCount",
            server_count,
            "must be 3 or 5 (an odd quorum); 1 only with acceptNoFaultTolerance: true, "
            "a cluster that loses its data and availability with that one server",
        )
    client_count = read.integer("clientCount", 0, MAX_CLIENTS)
    client_node_class = read.dns_label("clientNodeClass")

    datacenter = read.dns_label("datacenter")
    region = read.dns_label("region")
    domain = read.dns_name("domain")
    ingress_domain = read.dns_name("ingressDomain")
    network_cidr = read.private_network("networkCidr", read.string("networkCidr"))

    versions = Versions(
        consul=read.version("consulVersion"),
        nomad=read.version("nomadVersion"),
        vault=read.version("vaultVersion"),
        envoy=read.version("envoyVersion"),
        cni_plugins=read.version("cniPluginsVersion"),
        consul_cni=read.version("consulCniVersion"),
    )
    package_source = PackageSource(
        read.https_url("hashicorpAptUrl"),
        read.key_fingerprint("hashicorpKeyFingerprint"),
        read.https_url("cniPluginsUrl"),
        read.registry_mirror("dockerHubMirror"),
    )
    node_os = read.choice("nodeOs", NodeOs) or NodeOs.UBUNTU_24_04
    node_image = read.choice("nodeImage", NodeImage) or NodeImage.STOCK
    tls = _read_tls(read)
    ssh_keys = read.string_list("sshAuthorizedKeys")
    for key in ssh_keys:
        if "PRIVATE KEY" in key:
            # Never echo any of it: the value is someone's private key.
            read.problem(
                "sshAuthorizedKeys", "<a private key>", "must be a public key (the .pub file), never a private one"
            )
        elif not _is_ssh_public_key(key):
            shown = key if len(key) <= 40 else key[:37] + "..."
            read.problem(
                "sshAuthorizedKeys", shown, "must be an OpenSSH public key line: 'ssh-ed25519 AAAA... comment'"
            )

    jobs = read.string_list("jobs")
    available = sorted(
        p.name.removesuffix(suffix) for suffix in (JOB_SUFFIX, DEFINITION_SUFFIX) for p in JOBS_DIR.glob(f"*{suffix}")
    )
    for job in jobs:
        if job not in available:
            read.problem(
                "jobs",
                job,
                f"must name a file in jobs/ (without {JOB_SUFFIX} or {DEFINITION_SUFFIX}): one of {', '.join(available)}",
            )
    if len(set(jobs)) != len(jobs):
        read.problem("jobs", jobs, "must not name a job twice")

    libvirt = aws = None
    if platform is Platform.LIBVIRT:
        libvirt = _read_libvirt(read, stack, network_cidr, server_count, client_count)
        if not ssh_keys and read.boolean("libvirtOperatorSshKeys"):
            ssh_keys = operator_public_keys(Path(os.environ.get("HOME") or Path.home()))
    elif platform is Platform.AWS:
        aws = _read_aws(read, network_cidr, preview)

    if read.problems:
        raise SettingsError(read.problems)
    return Settings(
        stack=stack,
        platform=platform,
        server_count=server_count,
        client_count=client_count,
        client_node_class=client_node_class,
        datacenter=datacenter,
        region=region,
        domain=domain,
        ingress_domain=ingress_domain,
        network_cidr=network_cidr,
        versions=versions,
        package_source=package_source,
        tls=tls,
        ssh_authorized_keys=tuple(k.strip() for k in ssh_keys),
        node_os=node_os,
        node_image=node_image,
        jobs=tuple(jobs),
        libvirt=libvirt,
        aws=aws,
    )


def operator_public_keys(home: Path) -> list[str]:
    """The public keys in ~/.ssh/*.pub that are well-formed, in file-name order; others are ignored
    (a .pub file may hold anything), and none is fine: the nodes then have no SSH login."""
    keys = []
    for path in sorted((home / ".ssh").glob("*.pub")):
        try:
            line = path.read_text().strip()
        except (OSError, UnicodeDecodeError):
            continue
        if _is_ssh_public_key(line):
            keys.append(line)
    return keys


def _is_ssh_public_key(line: str) -> bool:
    """`TYPE BASE64 [comment]` whose blob is well-formed and names the same key type."""
    parts = line.strip().split(maxsplit=2)
    if len(parts) < 2 or parts[0] not in _SSH_KEY_TYPES:
        return False
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except ValueError:
        return False
    length = int.from_bytes(blob[:4], "big")
    return blob[4 : 4 + length] == parts[0].encode()


def _read_tls(read: _Reader) -> TlsSettings:
    ca_validity = read.integer("caValidityHours", 24)
    validity = read.integer("certValidityHours", 24)
    early_renewal = read.integer("certEarlyRenewalHours", 0)
    if validity > ca_validity:
        read.problem("certValidityHours", validity, f"must not exceed caValidityHours ({ca_validity})")
    if early_renewal >= validity:
        read.problem("certEarlyRenewalHours", early_renewal, f"must be less than certValidityHours ({validity})")
    return TlsSettings(ca_validity, validity, early_renewal)


def _read_libvirt(
    read: _Reader, stack: str, network: ipaddress.IPv4Network | None, server_count: int, client_count: int
) -> LibvirtSettings:
    if network is not None:
        needed = CLIENT_HOST_OFFSET + client_count + 1  # + broadcast
        if server_count > CLIENT_HOST_OFFSET - SERVER_HOST_OFFSET or network.num_addresses < needed:
            smallest = 32 - (needed - 1).bit_length()
            read.problem(
                "networkCidr",
                str(network),
                f"must hold {needed} addresses for {server_count} servers (from .{SERVER_HOST_OFFSET}) and "
                f"{client_count} clients (from .{CLIENT_HOST_OFFSET}): a /{smallest} or larger",
            )
    uri = read.string("libvirtUri")
    if not re.match(r"^[a-z][a-z0-9+]*://", uri):
        read.problem("libvirtUri", uri, "must be a libvirt connection URI, e.g. qemu:///system")
    elif urlparse(uri).netloc:
        # The gates reach the VMs on the NAT network, the pool's group and the console logs are this
        # host's: the daemon must be this host's too.
        read.problem("libvirtUri", uri, "must name this host's libvirt daemon (no host part), e.g. qemu:///system")
    base_image = read.string("libvirtBaseImage")
    sha256 = read.string("libvirtBaseImageSha256")
    parsed = urlparse(base_image)
    if parsed.scheme == "http":
        read.problem(
            "libvirtBaseImage", base_image, "must be an https URL (plain http can be tampered with) or a local file"
        )
    elif parsed.scheme == "https":
        if not parsed.netloc:
            read.problem("libvirtBaseImage", base_image, "must be an https URL with a host, or a local file")
        if not sha256:
            read.problem(
                "libvirtBaseImageSha256",
                sha256,
                "is required for an https libvirtBaseImage: its SHA-256 from SHA256SUMS",
            )
    elif Path(base_image).expanduser().is_file():
        # The provider opens the path as given (volume_image.go newImage): no `~` for it.
        base_image = str(Path(base_image).expanduser().resolve())
    else:
        read.problem("libvirtBaseImage", base_image, "must be an https URL or the path of an existing file")
    if sha256 and not _SHA256.match(sha256):
        read.problem("libvirtBaseImageSha256", sha256, "must be a SHA-256: 64 lowercase hexadecimal digits")
    pool_dir = read.string("libvirtPoolDir")
    if not pool_dir.startswith("/") or pool_dir.rstrip("/") in (
        "",
        "/var",
        "/var/lib",
        "/var/lib/libvirt",
        "/home",
        "/tmp",
    ):
        read.problem(
            "libvirtPoolDir",
            pool_dir,
            "must be an absolute directory of its own (the stack name is appended), e.g. /var/lib/libvirt/hashistack",
        )
    return LibvirtSettings(
        uri=uri,
        base_image=base_image,
        base_image_sha256=sha256,
        pool_dir=f"{pool_dir.rstrip('/')}/{stack}",
        server_size=NodeSize(
            read.integer("serverMemoryMib", MIN_SERVER_MEMORY_MIB), read.integer("serverVcpus", MIN_SERVER_VCPUS)
        ),
        client_size=NodeSize(
            read.integer("clientMemoryMib", MIN_CLIENT_MEMORY_MIB), read.integer("clientVcpus", MIN_CLIENT_VCPUS)
        ),
    )


def _read_aws(read: _Reader, network: ipaddress.IPv4Network | None, preview: bool) -> AwsSettings:
    region = read.string(AWS_REGION_KEY)
    if region and not _AWS_REGION.match(region):
        read.problem(AWS_REGION_KEY, region, "must be an AWS region name, e.g. eu-central-1")
    if network is not None and not 16 <= network.prefixlen <= 28:
        read.problem("networkCidr", str(network), "must be between a /16 and a /28 (the sizes an AWS VPC allows)")

    subnets: list[ipaddress.IPv4Network] = []
    for raw in read.string_list("subnetCidrs"):
        subnet = read.private_network("subnetCidrs", raw)
        if subnet is None:
            continue
        if network is not None and not subnet.subnet_of(network):
            read.problem("subnetCidrs", raw, f"must lie inside networkCidr ({network})")
        elif not 16 <= subnet.prefixlen <= 28:
            read.problem("subnetCidrs", raw, "must be between a /16 and a /28 (the sizes an AWS subnet allows)")
        elif overlap := next((s for s in subnets if s.overlaps(subnet)), None):
            read.problem("subnetCidrs", raw, f"must not overlap another subnet ({overlap})")
        else:
            subnets.append(subnet)
    if not subnets and not read.has_problem("subnetCidrs"):
        read.problem("subnetCidrs", [], "must list at least one subnet (one per availability zone)")

    allowed: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for raw in read.string_list("apiAllowedCidrs"):
        try:
            cidr = ipaddress.ip_network(raw)
        except ValueError:
            read.problem(
                "apiAllowedCidrs", raw, "must be a network in CIDR notation with no host bits set, e.g. 203.0.113.7/32"
            )
            continue
        if cidr.prefixlen == 0:
            read.problem(
                "apiAllowedCidrs",
                raw,
                "must not be the whole internet; list the ranges your operators and CI connect from",
            )
        elif not preview and any(cidr.subnet_of(d) for d in _DOCUMENTATION if d.version == cidr.version):
            read.problem(
                "apiAllowedCidrs",
                raw,
                "is a documentation range (RFC 5737) from the example stack; set your own range before `pulumi up`",
            )
        else:
            allowed.append(cidr)
    if not allowed and not read.has_problem("apiAllowedCidrs"):
        read.problem(
            "apiAllowedCidrs", [], "is required on aws: the ranges allowed to reach the Nomad, Consul and Vault APIs"
        )
    for version in (4, 6):
        ranges = [str(c) for c in allowed if c.version == version]
        if len(ranges) > MAX_API_ALLOWED_CIDRS:
            read.problem(
                "apiAllowedCidrs",
                ranges,
                f"may hold at most {MAX_API_ALLOWED_CIDRS} IPv{version} ranges: each adds 4 rules to the servers' "
                f"security group, which AWS limits to {SECURITY_GROUP_RULES} per address family; use wider ranges",
            )

    instance_types = []
    for key in ("awsServerInstanceType", "awsClientInstanceType"):
        value = read.string(key)
        if not _INSTANCE_TYPE.match(value):
            read.problem(key, value, "must be an EC2 instance type such as t3.medium")
        elif value.split(".")[1] in _TOO_SMALL_INSTANCE_SIZES:
            read.problem(key, value, "must have 2 GiB of memory or more (no nano or micro sizes)")
        instance_types.append(value)
    return AwsSettings(region, tuple(subnets), tuple(allowed), *instance_types)


def load_settings() -> Settings:
    """Reads this stack's configuration through `pulumi.Config` and validates it."""
    config = pulumi.Config()
    aws = pulumi.Config("aws")

    def lookup(key: str) -> str | None:
        return aws.get("region") if key == AWS_REGION_KEY else config.get(key)

    return parse_settings(
        lookup,
        stack=pulumi.get_stack(),
        config_keys=_present_project_keys(),
        preview=pulumi.runtime.is_dry_run(),
    )


def _present_project_keys() -> frozenset[str]:
    # The SDK has no public listing of config keys; the runtime's map holds what the engine passed.
    from pulumi.runtime import config as runtime_config

    present: Mapping[str, object] = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    prefix = f"{PROJECT}:"
    return frozenset(k[len(prefix) :] for k in present if k.startswith(prefix))
