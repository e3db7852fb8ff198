"""The boot test's stand-in Docker Hub (scripts/boot_test/registry.py): Debian's docker-registry with the
stand-in Envoy pushed into it, pulled here with the very skopeo command the bake runs
(cloudinit/hashistack-bootstrap.sh, save_envoy), into an archive `docker load` reads: manifest.json's
RepoTags name the image as Nomad asks Docker for it (the docker-archive layout: containers/image
docker/internal/tarfile)."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tarfile

import pytest

from scripts.boot_test.pki import ThrowawayCa
from scripts.boot_test.registry import Registry
from scripts.boot_test.vm import free_port


@pytest.fixture
def registry(tmp_path):
    for tool in ("docker-registry", "umoci", "skopeo"):
        assert shutil.which(tool), f"{tool} is missing: scripts/install-test-tools.sh installs it (Debian)"
    ca = ThrowawayCa(tmp_path / "ca")
    served = ca.issue("registry", [], ["127.0.0.1"])
    running = Registry(tmp_path / "registry", free_port(), served.cert_path, served.key_path, tmp_path / "ca/ca.pem")
    yield running, tmp_path
    running.close()


def test_the_bake_pulls_the_standin_envoy_into_an_archive_named_as_nomad_asks(registry):
    running, tmp_path = registry
    assert running.push_standin_envoy("docker.io/envoyproxy/envoy:v1.37.4", tmp_path) == "envoyproxy/envoy:v1.37.4"
    archive = tmp_path / "docker.io_envoyproxy_envoy_v1.37.4.tar"
    # The bake trusts the registry through the system's CAs (the boot test's image trusts this CA);
    # here through --src-cert-dir, which push_standin_envoy filled.
    subprocess.run(["skopeo", "copy", "--quiet", "--src-cert-dir", str(tmp_path / "registry-certs"),
                    f"docker://127.0.0.1:{running.port}/envoyproxy/envoy:v1.37.4",
                    f"docker-archive:{archive}:docker.io/envoyproxy/envoy:v1.37.4"], check=True)  # fmt: skip
    with tarfile.open(archive) as tar:
        (manifest,) = json.load(tar.extractfile("manifest.json"))
        assert manifest["RepoTags"] == ["docker.io/envoyproxy/envoy:v1.37.4"]
        (layer,) = manifest["Layers"]
        # The layer holds the one file. Read as a stream: as it arrives here it ends without a tar's
        # zero blocks (one header and the file's bytes), which Python's random-access reader refuses;
        # the boot test's `docker load` of it is the check that Docker takes it.
        with tarfile.open(fileobj=io.BytesIO(tar.extractfile(layer).read()), mode="r|") as files:
            assert next(iter(files)).name == "usr/local/bin/envoy"
    # skopeo writes no archive over a non-empty one: why every attempt of the bake starts without it.
    again = subprocess.run(["skopeo", "copy", "--quiet", "--src-cert-dir", str(tmp_path / "registry-certs"),
                            f"docker://127.0.0.1:{running.port}/envoyproxy/envoy:v1.37.4",
                            f"docker-archive:{archive}:docker.io/envoyproxy/envoy:v1.37.4"],
                           capture_output=True, text=True)  # fmt: skip
    assert again.returncode != 0 and "doesn't support modifying existing images" in again.stderr


def test_a_tag_the_registry_lacks_is_refused(registry):
    running, tmp_path = registry
    running.push_standin_envoy("docker.io/envoyproxy/envoy:v1.37.4", tmp_path)
    missing = subprocess.run(["skopeo", "inspect", "--cert-dir", str(tmp_path / "registry-certs"),
                              f"docker://127.0.0.1:{running.port}/envoyproxy/envoy:v1.99.0"],
                             capture_output=True, text=True)  # fmt: skip
    assert missing.returncode != 0 and "manifest unknown" in missing.stderr
