"""Settings validation: every rule, through the parser and through the whole program."""

from __future__ import annotations

import base64
import ipaddress

import pytest

from components.config.reading import KNOWN_KEYS
from components.config.settings import Platform, SettingsError
from scripts.stack_files import stack_settings

from conftest import ClusterMocks, RecordingMonitor, run_program, stack_config


def parse(stack: str, overrides: dict | None = None, preview: bool = False):
    return stack_settings(stack, overrides, preview)


# (stack, overrides, key named in the message, bad value shown, fragment of what is allowed)
BAD = [
    ("dev", {"platform": "gcp"}, "platform", "'gcp'", "one of aws, libvirt"),
    ("dev", {"serverCount": 4}, "serverCount", "4", "3 or 5"),
    ("dev", {"serverCount": 1}, "serverCount", "1", "acceptNoFaultTolerance"),
    ("dev", {"serverCount": 0}, "serverCount", "0", "at least 1"),
    ("dev", {"serverCount": "three"}, "serverCount", "'three'", "whole number"),
    ("dev", {"acceptNoFaultTolerance": "yes"}, "acceptNoFaultTolerance", "'yes'", "true or false"),
    ("dev", {"clientCount": -1}, "clientCount", "-1", "from 0 to 1000"),
    ("dev", {"clientCount": 1001}, "clientCount", "1001", "from 0 to 1000"),
    ("dev", {"datacenter": "DC_1"}, "datacenter", "'DC_1'", "DNS label"),
    ("dev", {"region": "eu west"}, "region", "'eu west'", "DNS label"),
    ("dev", {"domain": "consul."}, "domain", "'consul.'", "DNS name"),
    ("dev", {"domain": "-consul"}, "domain", "'-consul'", "DNS name"),
    ("dev", {"ingressDomain": "apps_local"}, "ingressDomain", "'apps_local'", "DNS name"),
    ("dev", {"networkCidr": "10.42.0.0/33"}, "networkCidr", "'10.42.0.0/33'", "CIDR notation"),
    ("dev", {"networkCidr": "10.42.0.1/24"}, "networkCidr", "'10.42.0.1/24'", "no host bits"),
    ("dev", {"networkCidr": "8.8.8.0/24"}, "networkCidr", "'8.8.8.0/24'", "private range"),
    ("dev", {"networkCidr": "10.42.0.0/28"}, "networkCidr", "'10.42.0.0/28'", "a /27 or larger"),
    ("dev", {"networkCidr": "10.42.0.0/24", "clientCount": 300}, "networkCidr", "'10.42.0.0/24'", "a /23 or larger"),
    ("dev", {"consulVersion": "1.21"}, "consulVersion", "'1.21'", "exact version"),
    ("dev", {"vaultVersion": "v1.20.0"}, "vaultVersion", "'v1.20.0'", "exact version"),
    ("dev", {"hashicorpAptUrl": "http://apt.example.com"}, "hashicorpAptUrl", "'http://apt.example.com'", "https URL"),
    ("dev", {"hashicorpAptUrl": "https://"}, "hashicorpAptUrl", "'https://'", "https URL"),
    (
        "dev",
        {"cniPluginsUrl": "http://mirror.example.com/cni"},
        "cniPluginsUrl",
        "'http://mirror.example.com/cni'",
        "https URL",
    ),
    (
        "dev",
        {"hashicorpAptUrl": "https://a.example/x?y=1"},
        "hashicorpAptUrl",
        "'https://a.example/x?y=1'",
        "without query",
    ),
    (
        "dev",
        {"hashicorpKeyFingerprint": "798A EC65"},
        "hashicorpKeyFingerprint",
        "'798A EC65'",
        "40 hexadecimal digits",
    ),
    (
        "dev",
        {"hashicorpKeyFingerprint": "798aec654e5c15428c8e42eeaa16fcbca621e701"},
        "hashicorpKeyFingerprint",
        "'798aec654e5c15428c8e42eeaa16fcbca621e701'",
        "in capitals",
    ),
    ("dev", {"envoyVersion": "latest"}, "envoyVersion", "'latest'", "exact version"),
    # Docker 20.10 (Debian 12) refuses a mirror with a path at start (moby registry/config.go ValidateMirror).
    (
        "dev",
        {"dockerHubMirror": "https://mirror.example.com/dockerhub"},
        "dockerHubMirror",
        "'https://mirror.example.com/dockerhub'",
        "host and port alone",
    ),
    (
        "dev",
        {"dockerHubMirror": "http://mirror.example.com"},
        "dockerHubMirror",
        "'http://mirror.example.com'",
        "empty (Docker Hub) or an https URL",
    ),
    (
        "dev",
        {"dockerHubMirror": "https://u:p@mirror.example.com"},
        "dockerHubMirror",
        "'https://u:p@mirror.example.com'",
        "https URL of a host",
    ),
    (
        "dev",
        {"dockerHubMirror": "https://mirror.example.com?x=1"},
        "dockerHubMirror",
        "'https://mirror.example.com?x=1'",
        "https URL of a host",
    ),
    (
        "dev",
        {"dockerHubMirror": "https://mirror.example.com#x"},
        "dockerHubMirror",
        "'https://mirror.example.com#x'",
        "https URL of a host",
    ),
    (
        "dev",
        {"dockerHubMirror": "https://mirror .example.com"},
        "dockerHubMirror",
        "'https://mirror .example.com'",
        "https URL of a host",
    ),
    ("dev", {"cniPluginsVersion": "1.7.x"}, "cniPluginsVersion", "'1.7.x'", "exact version"),
    ("dev", {"nomadVersion": "1.10.3"}, "nomadVersion", "'1.10.3'", "2.0.4 or newer (older Nomad lets a job get round"),
    ("dev", {"nomadVersion": "2.0.3"}, "nomadVersion", "'2.0.3'", "CVE-2026-14891 and CVE-2026-14896"),
    ("aws", {"consulVersion": "1.21.2"}, "consulVersion", "'1.21.2'", "2.0.0 or newer (the oldest Consul line"),
    ("dev", {"vaultVersion": "2.0.9"}, "vaultVersion", "'2.0.9'", "2.1.0 or newer (the oldest Vault line"),
    ("dev", {"caValidityHours": 12}, "caValidityHours", "12", "at least 24"),
    ("dev", {"certValidityHours": 100000}, "certValidityHours", "100000", "must not exceed caValidityHours"),
    ("dev", {"certEarlyRenewalHours": 8760}, "certEarlyRenewalHours", "8760", "less than certValidityHours"),
    ("dev", {"libvirtUri": "system"}, "libvirtUri", "'system'", "connection URI"),
    ("dev", {"nodeOs": "debian-11"}, "nodeOs", "'debian-11'", "ubuntu-24.04, debian-12"),
    ("dev", {"nodeImage": "golden"}, "nodeImage", "'golden'", "stock, baked"),
    ("dev", {"libvirtUri": "qemu+ssh://kvm1/system"}, "libvirtUri", "'qemu+ssh://kvm1/system'", "this host's"),
    (
        "dev",
        {"libvirtBaseImage": "http://example.org/noble.img"},
        "libvirtBaseImage",
        "http://example.org",
        "https URL",
    ),
    ("dev", {"libvirtBaseImage": "https:///noble.img"}, "libvirtBaseImage", "https:///noble.img", "with a host"),
    (
        "dev",
        {"libvirtBaseImage": "/nonexistent/noble.img"},
        "libvirtBaseImage",
        "/nonexistent/noble.img",
        "existing file",
    ),
    (
        "dev",
        {"sshAuthorizedKeys": ["ssh-ed25519 not base64!"]},
        "sshAuthorizedKeys",
        "'ssh-ed25519 not base64!'",
        "OpenSSH public key",
    ),
    (
        "dev",
        {"sshAuthorizedKeys": ["-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n"]},
        "sshAuthorizedKeys",
        "'<a private key>'",
        "never a private one",
    ),
    (
        "dev",
        {"jobs": ["traefik", "wordpress"]},
        "jobs",
        "'wordpress'",
        "(without .nomad.hcl or .nomadgen.toml): one of",
    ),
    ("dev", {"clientNodeClass": "GPU nodes"}, "clientNodeClass", "'GPU nodes'", "must be a DNS label"),
    ("dev", {"jobs": ["traefik", "traefik"]}, "jobs", "['traefik', 'traefik']", "must not name a job twice"),
    ("dev", {"libvirtPoolDir": "pool"}, "libvirtPoolDir", "'pool'", "absolute directory of its own"),
    (
        "dev",
        {"libvirtPoolDir": "/var/lib/libvirt"},
        "libvirtPoolDir",
        "'/var/lib/libvirt'",
        "absolute directory of its own",
    ),
    ("dev", {"serverMemoryMib": 1024}, "serverMemoryMib", "1024", "at least 1536"),
    ("dev", {"clientMemoryMib": 1024}, "clientMemoryMib", "1024", "at least 2048"),
    ("dev", {"serverVcpus": 0}, "serverVcpus", "0", "at least 1"),
    ("dev", {"clientVcpus": 1}, "clientVcpus", "1", "at least 2"),
    ("dev", {"serverCont": 3}, "serverCont", "'3'", "did you mean serverCount"),
    ("aws", {"aws:region": None}, "aws:region", "None", "is required"),
    ("aws", {"aws:region": "eu-central"}, "aws:region", "'eu-central'", "AWS region name"),
    (
        "aws",
        {"networkCidr": "10.0.0.0/8", "subnetCidrs": ["10.0.0.0/20"]},
        "networkCidr",
        "'10.0.0.0/8'",
        "/16 and a /28",
    ),
    ("aws", {"subnetCidrs": []}, "subnetCidrs", "[]", "at least one subnet"),
    ("aws", {"subnetCidrs": "10.42.0.0/20"}, "subnetCidrs", "'10.42.0.0/20'", "list of strings"),
    ("aws", {"subnetCidrs": ["10.43.0.0/20"]}, "subnetCidrs", "'10.43.0.0/20'", "inside networkCidr"),
    ("aws", {"subnetCidrs": ["10.42.0.0/20", "10.42.8.0/24"]}, "subnetCidrs", "'10.42.8.0/24'", "must not overlap"),
    ("aws", {"subnetCidrs": ["100.64.0.0/20"]}, "subnetCidrs", "'100.64.0.0/20'", "private range"),
    ("aws", {"subnetCidrs": ["10.42.0.0/29"]}, "subnetCidrs", "'10.42.0.0/29'", "/16 and a /28"),
    ("aws", {"apiAllowedCidrs": []}, "apiAllowedCidrs", "[]", "is required on aws"),
    ("aws", {"apiAllowedCidrs": ["0.0.0.0/0"]}, "apiAllowedCidrs", "'0.0.0.0/0'", "not be the whole internet"),
    ("aws", {"apiAllowedCidrs": ["::/0"]}, "apiAllowedCidrs", "'::/0'", "not be the whole internet"),
    ("aws", {"apiAllowedCidrs": ["my office"]}, "apiAllowedCidrs", "'my office'", "CIDR notation"),
    ("aws", {"awsServerInstanceType": "t3.micro"}, "awsServerInstanceType", "'t3.micro'", "2 GiB"),
    ("aws", {"awsClientInstanceType": "large"}, "awsClientInstanceType", "'large'", "EC2 instance type"),
]


def _ids(case):
    stack, overrides, key = case[:3]
    return f"{stack}-{key}-{'-'.join(str(v) for v in overrides.values())}"


@pytest.mark.parametrize("case", BAD, ids=[_ids(c) for c in BAD])
def test_bad_setting_stops_the_program_before_any_resource(case):
    stack, overrides, key, shown, allowed = case
    monitor = RecordingMonitor(ClusterMocks())
    with pytest.raises(SettingsError) as raised:
        run_program(stack, overrides, preview=True, monitor=monitor)
    problems = [p for p in raised.value.problems if p.key == key]
    assert problems, f"no problem names {key!r}; got: {raised.value}"
    assert any(shown in str(p) and allowed in str(p) for p in problems), str(raised.value)
    assert f"  - {key}: " in str(raised.value)
    assert monitor.registrations == [], [r.urn for r in monitor.registrations]


def test_several_problems_are_reported_together():
    with pytest.raises(SettingsError) as raised:
        parse("aws", {"serverCount": 2, "datacenter": "Main DC", "apiAllowedCidrs": ["0.0.0.0/0"]})
    assert [p.key for p in raised.value.problems] == ["serverCount", "datacenter", "apiAllowedCidrs"]


def test_documentation_range_is_refused_on_up_but_previews():
    example = stack_config("aws")["hashistack:apiAllowedCidrs"]
    assert "198.51.100.0/24" in example, "the example stack no longer uses the documentation range"
    assert parse("aws", preview=True).aws.api_allowed_cidrs == (ipaddress.ip_network("198.51.100.0/24"),)
    with pytest.raises(SettingsError, match=r"apiAllowedCidrs: '198\.51\.100\.0/24' — is a documentation range"):
        parse("aws", preview=False)
    assert parse("aws", {"apiAllowedCidrs": ["203.0.112.0/24"]}, preview=False).aws is not None


def test_ssh_keys_and_pool_dir():
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGtra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tr ops@laptop"
    settings = parse("dev", {"sshAuthorizedKeys": [key + "\n"]})
    assert settings.ssh_authorized_keys == (key,)
    assert settings.libvirt.pool_dir == "/var/lib/libvirt/hashistack/dev"


def test_single_server_needs_explicit_consent():
    settings = parse("dev", {"serverCount": 1, "acceptNoFaultTolerance": True})
    assert settings.server_count == 1


def test_base_image_may_be_a_local_file_and_the_provider_gets_its_absolute_path(tmp_path, monkeypatch):
    image = tmp_path / "noble.img"
    image.write_bytes(b"qcow2")
    assert parse("dev", {"libvirtBaseImage": str(image)}).libvirt.base_image == str(image)
    # The provider opens the path as given (terraform-provider-libvirt v0.8.1 libvirt/volume_image.go
    # newImage): it expands no `~`, so the settings do.
    monkeypatch.setenv("HOME", str(tmp_path))
    unchecked = parse("dev", {"libvirtBaseImage": "~/noble.img", "libvirtBaseImageSha256": ""}).libvirt
    assert (unchecked.base_image, unchecked.base_image_sha256) == (str(image), "")


def test_a_base_image_url_needs_its_checksum():
    with pytest.raises(SettingsError) as caught:
        parse("dev", {"libvirtBaseImageSha256": ""})
    assert [(p.key, p.allowed) for p in caught.value.problems] == [
        ("libvirtBaseImageSha256", "is required for an https libvirtBaseImage: its SHA-256 from SHA256SUMS")
    ]
    with pytest.raises(SettingsError, match=r"libvirtBaseImageSha256.*64 lowercase hexadecimal"):
        parse("dev", {"libvirtBaseImageSha256": "F1652D29"})


def test_dev_stack_settings():
    settings = parse("dev")
    assert settings.platform is Platform.LIBVIRT and settings.aws is None
    assert (settings.server_count, settings.client_count) == (3, 1)
    # Not k3s's default pod range 10.42.0.0/16 (k3s docs, --cluster-cidr), which the old default was in.
    assert settings.network_cidr == ipaddress.IPv4Network("192.168.142.0/24")
    assert not settings.network_cidr.overlaps(ipaddress.IPv4Network("10.42.0.0/16"))
    assert settings.libvirt.uri == "qemu:///system"
    # A dated release, pinned with its checksum (five independent pins agree on this one, e.g.
    # lima-vm/lima templates/_images/ubuntu-24.04.yaml's scheme; the archive host keeps dated releases).
    assert settings.libvirt.base_image == (
        "https://cloud-images-archive.ubuntu.com/releases/noble/release-20250704/ubuntu-24.04-server-cloudimg-amd64.img"
    )
    assert settings.libvirt.base_image_sha256 == "f1652d29d497fb7c623433705c9fca6525d1311b11294a0f495eed55c7639d1f"


def test_a_docker_hub_mirror_is_a_host_or_nothing():
    assert parse("dev").package_source.docker_hub_mirror == "", "Docker Hub itself by default"
    mirror = parse("dev", {"dockerHubMirror": "https://registry.internal:5000/"}).package_source.docker_hub_mirror
    assert mirror == "https://registry.internal:5000"
    assert parse("dev", {"dockerHubMirror": "https://mirror.gcr.io"}).package_source.docker_hub_mirror == (
        "https://mirror.gcr.io"
    )


def _public_key(comment: str) -> str:
    blob = base64.b64encode(b"\x00\x00\x00\x0bssh-ed25519" + b"\x00\x00\x00\x20" + bytes(32)).decode()
    return f"ssh-ed25519 {blob} {comment}"


def test_dev_nodes_take_the_operators_public_keys_unless_told_not_to(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / "id_rsa.pub").write_text(_public_key("me@rsa") + "\n")
    (tmp_path / ".ssh" / "id_ed25519.pub").write_text(_public_key("me@laptop") + "\n")
    (tmp_path / ".ssh" / "notes.pub").write_text("not a key\n")
    (tmp_path / ".ssh" / "id_ed25519").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    assert parse("dev").ssh_authorized_keys == (_public_key("me@laptop"), _public_key("me@rsa"))
    assert parse("dev", {"libvirtOperatorSshKeys": False}).ssh_authorized_keys == ()
    given = _public_key("team")
    assert parse("dev", {"sshAuthorizedKeys": [given]}).ssh_authorized_keys == (given,)
    assert parse("aws", preview=True).ssh_authorized_keys == (), "only libvirt nodes, on the operator's own host"


def test_aws_stack_settings():
    settings = parse("aws", preview=True)
    assert settings.platform is Platform.AWS and settings.libvirt is None
    assert (settings.server_count, settings.client_count) == (3, 3)
    assert settings.aws.region == "eu-central-1"
    assert len(settings.aws.subnet_cidrs) == 3


def test_settings_are_frozen():
    settings = parse("dev")
    with pytest.raises(AttributeError):
        settings.server_count = 5


def test_known_keys_are_exactly_the_schema():
    from conftest import PROJECT as project_file

    assert set(project_file["config"]) == KNOWN_KEYS
