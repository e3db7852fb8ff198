"""The baked image's recipe (components/nodes/node_image.py): its inputs, its name, the settings the bake
runs with, and how a stale image is told apart."""

from __future__ import annotations

import json
import shlex
from dataclasses import replace

import pytest

from components.config.node_os import NodeOs
from components.config.settings import NodeImage
from components.nodes import node_image
from components.nodes.node_image import differences, image_path, manifest_path, recipe, stale_images
from scripts.stack_files import project_file, stack_settings

DEV = recipe(stack_settings("dev"))


def env_values(text: str) -> dict[str, str]:
    """bootstrap.env as bash reads it (each value shell-quoted)."""
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key] = " ".join(shlex.split(value)) if value else ""
    return values


def test_the_name_is_the_os_and_the_inputs_hash():
    assert DEV.name == f"hashistack-ubuntu-24.04-{DEV.digest[:12]}"
    assert len(DEV.digest) == 64 and DEV.name == recipe(stack_settings("dev")).name, "the same inputs, the same name"


@pytest.mark.parametrize(
    "overrides",
    [
        {"consulVersion": "2.0.5"},
        {"nomadVersion": "2.0.8"},
        {"vaultVersion": "2.1.2"},
        {"consulCniVersion": "2.0.4"},
        {"cniPluginsVersion": "1.7.2"},
        {"envoyVersion": "1.37.5"},
        {"hashicorpKeyFingerprint": "0123456789ABCDEF0123456789ABCDEF01234567"},
        {"nodeOs": "debian-12", "libvirtBaseImageSha256": "0" * 64},
        {"libvirtBaseImageSha256": "1" * 64},
    ],
    ids=lambda o: next(iter(o)),
)
def test_what_decides_the_contents_names_a_new_image(overrides):
    assert recipe(stack_settings("dev", overrides)).name != DEV.name


def test_the_package_sources_urls_do_not():
    """Where the bytes come from is not what they are (the key says whose they must be)."""
    same = stack_settings("dev", {
        "hashicorpAptUrl": "https://nexus.example.com/hashicorp",
        "cniPluginsUrl": "https://nexus.example.com/cni",
        "dockerHubMirror": "https://mirror.gcr.io",
    })  # fmt: skip
    assert recipe(same).name == DEV.name


def test_envoy_is_in_the_image_by_the_name_nomad_asks_docker_for():
    """The archive is named by the reference nodes' Nomad runs the sidecars with (nomad.hcl's
    connect.sidecar_image), and the bake pulls it through the mirror the clients' Docker uses."""
    assert DEV.inputs["container_images"] == ["docker.io/envoyproxy/envoy:v1.37.4"]
    values = env_values(recipe(stack_settings("dev", {"dockerHubMirror": "https://mirror.gcr.io"})).bootstrap_env())
    assert values["ENVOY_IMAGE"] == "docker.io/envoyproxy/envoy:v1.37.4"
    assert values["ENVOY_ARCHIVE"] == "/opt/hashistack/container-images/docker.io_envoyproxy_envoy_v1.37.4.tar"
    assert values["DOCKER_HUB_MIRROR"] == "https://mirror.gcr.io"


def test_the_script_and_the_env_template_are_inputs(tmp_path, monkeypatch):
    script = tmp_path / "hashistack-bootstrap.sh"
    script.write_text(node_image.BOOTSTRAP_SCRIPT.read_text() + "\n# changed\n")
    monkeypatch.setattr(node_image, "BOOTSTRAP_SCRIPT", script)
    assert replace(DEV).name != DEV.name
    template = tmp_path / "bootstrap.env.j2"
    template.write_text("changed\n")
    monkeypatch.setattr(node_image.node_config, "TEMPLATES", tmp_path)
    assert replace(DEV).inputs["env_sha256"] != DEV.inputs["env_sha256"]


def test_the_bake_installs_what_either_role_needs_with_the_nodes_sources():
    values = env_values(DEV.bootstrap_env())
    assert values["ROLE"] == "image" and values["SECRETS_SOURCE"] == "none" and values["SSM_REGION"] == ""
    assert values["NODE_IP"] == ""
    assert (values["CONSUL_VERSION"], values["NOMAD_VERSION"], values["VAULT_VERSION"]) == ("2.0.4", "2.0.7", "2.1.1")
    assert (values["CONSUL_CNI_VERSION"], values["CNI_PLUGINS_VERSION"]) == ("2.0.3", "1.7.1")
    assert values["HASHICORP_APT_URL"] == "https://apt.releases.hashicorp.com"
    assert values["HASHICORP_KEY_FINGERPRINT"] == "798AEC654E5C15428C8E42EEAA16FCBCA621E701"
    assert values["CNI_PLUGINS_URL"] == "https://github.com/containernetworking/plugins/releases/download"
    # A client's packages and a server's: the same image boots both.
    assert values["RELEASE_PACKAGES"].split() == [
        "ca-certificates", "curl", "gnupg", "jq", "docker.io", "nftables", "openjdk-21-jre-headless",
    ]  # fmt: skip
    assert DEV.inputs["packages"] == values["RELEASE_PACKAGES"].split()
    debian = recipe(stack_settings("dev", {"nodeOs": "debian-12"}))
    assert "systemd-resolved" in env_values(debian.bootstrap_env())["RELEASE_PACKAGES"].split()


def test_the_aws_recipe_bakes_over_the_releases_official_images():
    aws = recipe(stack_settings("aws"))
    assert aws.base == "099720109477/ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*"
    assert recipe(stack_settings("dev"), base="debian-12-abc").base == "debian-12-abc"


def test_stale_images_are_those_of_other_inputs_each_with_what_differs(tmp_path):
    bumped = node_image.ImageRecipe(
        NodeOs.UBUNTU_24_04, DEV.base, replace(DEV.versions, nomad="2.0.8", vault="2.1.2"), DEV.package_source
    )
    for built in (DEV, bumped):
        image = image_path(tmp_path, built)
        image.write_bytes(b"")
        manifest_path(image).write_text(json.dumps({"inputs": built.inputs, "build_seconds": 1}))
    # Names either side of the wanted one's (which is left out, and the listing goes on after it).
    for stray in ("000000000000", "ffffffffffff"):
        (tmp_path / f"hashistack-ubuntu-24.04-{stray}.qcow2").write_bytes(b"")
    (tmp_path / "hashistack-debian-12-000000000000.qcow2").write_bytes(b"")  # another OS: not this one's
    assert stale_images(tmp_path, bumped) == {
        image_path(tmp_path, DEV): ["versions.nomad: 2.0.7 → 2.0.8", "versions.vault: 2.1.1 → 2.1.2"],
        tmp_path / "hashistack-ubuntu-24.04-000000000000.qcow2": ["no readable manifest beside it"],
        tmp_path / "hashistack-ubuntu-24.04-ffffffffffff.qcow2": ["no readable manifest beside it"],
    }
    assert manifest_path(image_path(tmp_path, DEV)) == tmp_path / f"{DEV.name}.json"


def test_differences_name_each_nested_key_that_differs():
    assert differences({"a": 1, "b": {"c": 2, "d": 3}}, {"a": 1, "b": {"c": 4, "d": 3}, "e": 5}) == [
        "b.c: 2 → 4",
        "e: None → 5",
    ]
    assert differences({"a": {"x": 1}}, {"a": 2}) == ["a: {'x': 1} → 2"]
    assert differences({"a": {"x": 1}, "b": {"y": 1}}, {"a": {"x": 2}, "b": {"y": 2}}) == ["a.x: 1 → 2", "b.y: 1 → 2"]


def test_the_dev_stack_boots_baked_images_and_the_schema_default_is_stock():
    assert stack_settings("dev").node_image is NodeImage.BAKED
    assert stack_settings("aws").node_image is NodeImage.STOCK
    assert project_file()["config"]["nodeImage"]["default"] == NodeImage.STOCK.value
