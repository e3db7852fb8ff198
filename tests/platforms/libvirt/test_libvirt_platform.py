"""The libvirt platform under mocks: inventory, per-node user-data, private pool, the server chain."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from components.nodes.node_image import image_path, manifest_path, recipe
from components.platforms.libvirt.base_image import cache_dir, cached_path
from components.platforms.libvirt.stylesheets import domain_xslt, pool_xslt, volume_xslt
from scripts.stack_files import stack_settings

from conftest import QEMU_GID, is_secret, run_program, unwrap

DOMAIN = "libvirt:index/domain:Domain"
CLOUDINIT = "libvirt:index/cloudInitDisk:CloudInitDisk"
VOLUME = "libvirt:index/volume:Volume"
HEALTH = "pulumi-python:dynamic/hashistack:ServerHealth"


@pytest.fixture(scope="module")
def dev():
    return run_program("dev", preview=True)


def _count(monitor, typ: str) -> int:
    return len(monitor.of_type(typ))


@pytest.mark.parametrize("clients", [1, 50])
def test_one_vm_per_node(clients):
    monitor = run_program("dev", {"clientCount": clients}, preview=True)
    nodes = 3 + clients
    assert _count(monitor, DOMAIN) == nodes
    assert _count(monitor, CLOUDINIT) == nodes
    assert _count(monitor, VOLUME) == nodes + 1  # + the shared base image
    assert _count(monitor, "libvirt:index/network:Network") == 1
    assert _count(monitor, "libvirt:index/pool:Pool") == 1
    assert _count(monitor, HEALTH) == 3


def test_every_vm_boots_its_own_user_data_with_its_own_certificate(dev):
    certs = {r.name: r.outputs["certPem"] for r in dev.of_type("tls:index/locallySignedCert:LocallySignedCert")}
    disks = dev.of_type(CLOUDINIT)
    assert len(disks) == 4
    for disk in disks:
        node = disk.name.removeprefix("cluster-").removesuffix("-cloudinit")
        assert is_secret(disk.inputs["userData"]), f"{disk.urn}: user-data with keys in plain text"
        document = yaml.safe_load(unwrap(disk.inputs["userData"]))
        files = {f["path"]: f["content"] for f in document["write_files"]}
        owner = f"cluster-{node}" if node.startswith("server") else "cluster-client"
        assert files["/etc/hashistack/tls/node.pem"] == certs[owner], disk.urn
        network = yaml.safe_load(disk.inputs["networkConfig"])
        address = network["ethernets"]["primary"]["addresses"][0]
        assert document.get("hostname") == node
        expected = {
            "server-0": "192.168.142.10/24",
            "server-1": "192.168.142.11/24",
            "server-2": "192.168.142.12/24",
            "client-0": "192.168.142.20/24",
        }
        assert address == expected[node], disk.urn


def test_vm_shape(dev):
    domains = {r.name: r.inputs for r in dev.of_type(DOMAIN)}
    assert domains["cluster-server-0"]["memory"] == 2048 and domains["cluster-server-0"]["vcpu"] == 1
    assert domains["cluster-client-0"]["memory"] == 3072 and domains["cluster-client-0"]["vcpu"] == 2
    for name, inputs in domains.items():
        assert inputs["autostart"] is True, name
        assert inputs["consoles"][0]["type"] == "pty", name
        assert inputs["name"] == f"hashistack-dev-{name.removeprefix('cluster-')}", name


def test_pool_is_private_and_project_named(dev):
    """The directory admits root and QEMU's group only; every volume but the cloud-init disks (no
    hook in terraform-provider-libvirt v0.8.1) is 0600. The stylesheets themselves are run through
    xsltproc in tests/platforms/libvirt/test_libvirt_stylesheets.py."""
    (pool,) = dev.of_type("libvirt:index/pool:Pool")
    assert pool.inputs["target"]["path"] == "/var/lib/libvirt/hashistack/dev"
    assert pool.inputs["xml"]["xslt"] == pool_xslt(QEMU_GID)
    volumes = dev.of_type(VOLUME)
    assert len(volumes) == 5 and all(v.inputs["xml"]["xslt"] == volume_xslt() for v in volumes)


def test_the_stock_base_image_is_the_checked_local_file():
    """Never a URL for the provider to stream unverified (v0.8.1 libvirt/volume_image.go)."""
    stock = run_program("dev", {"nodeImage": "stock"}, preview=True)
    (base,) = [v for v in stock.of_type(VOLUME) if v.name == "cluster-base-image-f1652d29d497"]
    settings = stack_settings("dev")
    assert base.inputs["source"] == str(
        cached_path(settings.libvirt.base_image, settings.libvirt.base_image_sha256, cache_dir())
    )
    assert base.inputs["name"] == "hashistack-dev-ubuntu-24.04-f1652d29d497.qcow2"


def test_the_dev_stack_boots_the_baked_image_named_by_its_inputs(dev):
    """Pulumi.dev.yaml asks for the baked image: the volume is `make image`'s file in the image cache,
    named (volume and resource) by its recipe, so a version bump is a new volume beside the old one."""
    baked = recipe(stack_settings("dev"))
    (base,) = [v for v in dev.of_type(VOLUME) if v.name == f"cluster-base-image-{baked.name}"]
    assert base.inputs["source"] == str(image_path(cache_dir(), baked))
    assert base.inputs["name"] == f"hashistack-dev-{baked.name}.qcow2"
    bumped = run_program("dev", {"nomadVersion": "2.0.8"}, preview=True)
    names = {v.inputs["name"] for v in bumped.of_type(VOLUME)}
    assert f"hashistack-dev-{baked.name}.qcow2" not in names
    assert f"hashistack-dev-{recipe(stack_settings('dev', {'nomadVersion': '2.0.8'})).name}.qcow2" in names


def test_an_up_without_the_baked_image_stops_and_names_the_stale_ones(tmp_path, monkeypatch):
    """The preview names the image without it; an `up` needs it, and says how to build it and what the
    images it finds instead were built from."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    wanted = recipe(stack_settings("dev", {"nomadVersion": "2.0.8"}))
    old = recipe(stack_settings("dev"))
    images = tmp_path / "hashistack/images"
    images.mkdir(parents=True)
    image_path(images, old).write_bytes(b"QFI\xfb")
    manifest_path(image_path(images, old)).write_text(json.dumps({"inputs": old.inputs}))
    run_program("dev", {"nomadVersion": "2.0.8"}, preview=True)
    with pytest.raises(Exception, match=re.escape(f"nodeImage: 'baked' needs the image {wanted.name}.qcow2")) as error:
        run_program("dev", {"nomadVersion": "2.0.8"}, preview=False)
    assert "make image STACK=dev" in str(error.value)
    assert (
        f"Stale images of other inputs there:\n  - {old.name}.qcow2, built with: versions.nomad: 2.0.7 → 2.0.8"
        in str(error.value)
    )


def test_domains_use_file_disks_and_log_their_console_where_the_gates_read_it(tmp_path, monkeypatch):
    """On `up` (not preview) each node's console log exists, the operator's, before its domain; the
    domain's stylesheet names it, and each server's gate watches its own."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    up = run_program("dev", preview=False)
    domains = {r.name.removeprefix("cluster-"): r for r in up.of_type(DOMAIN)}
    gates = {r.name.removeprefix("cluster-").removesuffix("-healthy"): r for r in up.of_type(HEALTH)}
    for node, domain in domains.items():
        log = tmp_path / "state" / "hashistack" / "dev" / "console" / f"{node}.log"
        assert log.is_file() and log.stat().st_mode & 0o777 == 0o600, node
        assert domain.inputs["xml"]["xslt"] == domain_xslt("/var/lib/libvirt/hashistack/dev", str(log)), node
        if node.startswith("server"):
            assert gates[node].inputs["console_log"] == str(log), node
    assert sorted(gates) == ["server-0", "server-1", "server-2"]


def test_network_is_nat_with_fixed_addresses(dev):
    (network,) = dev.of_type("libvirt:index/network:Network")
    assert network.inputs["mode"] == "nat"
    assert network.inputs["addresses"] == ["192.168.142.0/24"]
    assert network.inputs["dhcp"]["enabled"] is False
    # No `local_only`: without a `domain` it changes nothing (v0.8.1 libvirt/network.go getDomainFromResource).
    assert network.inputs["dns"] == {"enabled": True}


def test_every_resource_uses_the_stack_uri_provider(dev):
    (provider,) = dev.of_type("pulumi:providers:libvirt")
    assert provider.inputs["uri"] == "qemu:///system"
    libvirt_resources = [r for r in dev.registrations if r.type.startswith("libvirt:")]
    assert libvirt_resources
    for registration in libvirt_resources:
        assert registration.provider.startswith(provider.urn), registration.urn


def test_servers_are_chained_behind_health_gates():
    """On every `up` after the first (tests/rollout/test_server_chain.py has the first, where they are not)."""
    dev = run_program("dev", preview=True, later=True)
    domains = {r.name: r for r in dev.of_type(DOMAIN)}
    gates = {r.name: r for r in dev.of_type(HEALTH)}
    assert sorted(gates) == ["cluster-server-0-healthy", "cluster-server-1-healthy", "cluster-server-2-healthy"]
    handovers = {r.name: r for r in dev.of_type("pulumi-python:dynamic/hashistack:ServerHandover")}
    for i in range(3):
        handover = handovers[f"cluster-server-{i}-handover"]
        assert handover.urn in domains[f"cluster-server-{i}"].dependencies, "the domain goes after its handover"
        previous = {gates[f"cluster-server-{i - 1}-healthy"].urn} if i else set()
        assert {g.urn for g in gates.values()} & handover.dependencies == previous
    for i in range(3):
        gate, domain = gates[f"cluster-server-{i}-healthy"], domains[f"cluster-server-{i}"]
        # The gate re-runs when its server is replaced: the machine's id is one of its inputs.
        assert gate.inputs["machine_id"] == domain.id, gate.urn
        assert domain.urn in gate.dependencies, gate.urn
        assert domain.delete_before_replace, f"{domain.urn}: a server keeps its name and address"
        for key in ("consul_token", "nomad_token", "vault_token", "vault_unseal_keys", "client_key_pem"):
            assert is_secret(gate.inputs[key]), f"{gate.urn}: {key} in plain text"
    # Vault is initialised on server-0 before its gate, which needs the keys to unseal it.
    init = dev.one("pulumi-python:dynamic/hashistack:VaultInit", "cluster-vault-init")
    assert domains["cluster-server-0"].urn in init.dependencies
    assert all(init.urn in gate.dependencies for gate in gates.values())
    assert not any(gate.urn in init.dependencies for gate in gates.values()), "no cycle: init before every gate"


def test_a_changed_user_data_replaces_the_disk(dev):
    disks = {r.name: r for r in dev.of_type(VOLUME)}
    cloudinits = {r.name: r for r in dev.of_type(CLOUDINIT)}
    for node in ("server-0", "client-0"):
        disk = disks[f"cluster-{node}-disk"]
        # A new cloud-init disk (new user-data) has a new id, which replaces the node's disk.
        assert disk.replacement_trigger == cloudinits[f"cluster-{node}-cloudinit"].id, disk.urn


def test_operator_outputs(dev):
    outputs = dev.stack_outputs
    assert unwrap(outputs["apiEndpoint"]) == "192.168.142.10"
    assert unwrap(outputs["ingressEndpoint"]) == "192.168.142.20"
    assert unwrap(outputs["urls"])["nomad"] == "https://192.168.142.10:4646"
    hosts = unwrap(outputs["hostsLines"])
    assert "192.168.142.10 server-0\n" in hosts
    apps = [
        "count-dashboard", "grafana", "hello-docker", "hello-java", "hello-vault", "p-es-cerebro", "prometheus", "traefik",
    ]  # fmt: skip
    assert f"192.168.142.20 {' '.join(f'{app}.hashistack.test' for app in apps)}\n" in hosts
    assert unwrap(outputs["appUrls"])["hello-vault"] == "http://hello-vault.hashistack.test"
    assert unwrap(outputs["sshCommands"])["client-0"] == "ssh ubuntu@192.168.142.20"


def test_a_package_mirror_reaches_every_node():
    """hashicorpAptUrl and hashicorpKeyFingerprint (an internal mirror, an air-gapped copy) end up in
    every node's bootstrap settings, the URL without its trailing slash."""
    mirror = {
        "hashicorpAptUrl": "https://nexus.example.com/repository/hashicorp/",
        "hashicorpKeyFingerprint": "0123456789ABCDEF0123456789ABCDEF01234567",
    }
    monitor = run_program("dev", mirror, preview=True)
    disks = monitor.of_type(CLOUDINIT)
    assert len(disks) == 4
    for disk in disks:
        files = {f["path"]: f["content"] for f in yaml.safe_load(unwrap(disk.inputs["userData"]))["write_files"]}
        env = files["/etc/hashistack/bootstrap.env"]
        assert "HASHICORP_APT_URL=https://nexus.example.com/repository/hashicorp\n" in env, disk.urn
        assert "HASHICORP_KEY_FINGERPRINT=0123456789ABCDEF0123456789ABCDEF01234567\n" in env, disk.urn
