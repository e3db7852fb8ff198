"""The boot script run as on a first boot: tests/nodes/boot/bootstrap.bats through bats-core (Debian package
`bats`), in a private mount namespace with recording stubs (tests/nodes/boot/sandbox.sh); the AWS clients'
autoscaling watch against the same stubs (tests/nodes/boot/asg-drain.bats). Each node's files
come from its real user-data, rendered here. The script's own text passes shellcheck in
tests/nodes/test_node_config.py; this runs it."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import yaml
from test_node_config import ASG_CLIENT, AWS, CLIENT_MATERIAL, LIBVIRT, LIBVIRT_CLIENT, MATERIAL, SERVER

from components.config.settings import PackageSource
from components.nodes.node_config import BOOTSTRAP_PATH, user_data
from components.nodes.node_image import BOOTSTRAP_SCRIPT, recipe
from scripts.stack_files import stack_settings

from conftest import shellcheck_path

MIRROR = PackageSource(
    "https://nexus.example.com/repository/hashicorp",
    "0123456789ABCDEF0123456789ABCDEF01234567",
    "https://nexus.example.com/repository/cni-plugins",
    "https://registry.example.com:5000",
)
BOOT = Path(__file__).resolve().parent / "boot"
NODES = {
    "server-inline": (LIBVIRT, SERVER, MATERIAL),
    "client-inline": (LIBVIRT, LIBVIRT_CLIENT, CLIENT_MATERIAL),
    "client-ssm": (replace(LIBVIRT, delivery=AWS.delivery), ASG_CLIENT, CLIENT_MATERIAL),
    "server-mirror": (replace(LIBVIRT, package_source=MIRROR), SERVER, MATERIAL),
    "client-mirror": (replace(LIBVIRT, package_source=MIRROR), LIBVIRT_CLIENT, CLIENT_MATERIAL),
}


def test_the_boot_script_under_bats(tmp_path):
    for tool in ("bats", "jq", "unshare"):
        assert shutil.which(tool), f"{tool} is missing: scripts/install-test-tools.sh installs it (Debian)"
    for name, (cluster, node, material) in NODES.items():
        document = yaml.safe_load(user_data(cluster, node, material))
        (tmp_path / f"{name}.json").write_text(json.dumps(document["write_files"]))
    # What scripts/node_image.py puts in an image before it runs the script there.
    for name, mirror in (("image", ""), ("image-mirror", MIRROR.docker_hub_mirror)):
        bake = recipe(stack_settings("dev", {"nodeImage": "baked", "dockerHubMirror": mirror}))
        (tmp_path / f"{name}.json").write_text(json.dumps([
            {"path": "/etc/hashistack/bootstrap.env", "content": bake.bootstrap_env(), "permissions": "0600"},
            {"path": BOOTSTRAP_PATH, "content": BOOTSTRAP_SCRIPT.read_text(), "permissions": "0700"},
        ]))  # fmt: skip
    run_bats("bootstrap.bats", passing=24, timeout=300, NODES=str(tmp_path))


def run_bats(suite: str, passing: int, timeout: float, **env: str) -> None:
    """Runs tests/nodes/boot/<suite> with a clean PATH; every one of its `passing` tests must pass."""
    result = subprocess.run(
        ["bats", "--tap", str(BOOT / suite)],
        env={"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("\nok ") + result.stdout.startswith("ok ") == passing, result.stdout


def test_the_asg_drain_watch_under_bats():
    """cloudinit/hashistack-asg-drain.sh (AWS clients) against stubbed curl, systemctl and sleep:
    tests/nodes/boot/asg-drain.bats, whose states are those of
    https://docs.aws.amazon.com/autoscaling/ec2/userguide/retrieving-target-lifecycle-state-through-imds.html"""
    assert shutil.which("bats"), "bats is missing: scripts/install-test-tools.sh installs it (Debian)"
    run_bats("asg-drain.bats", passing=4, timeout=120)


def test_the_harness_passes_shellcheck():
    # The .bats files too: shellcheck knows bats (SC2314: a bare `! command` before a test's last line asserts nothing).
    scripts = [BOOT / "sandbox.sh", BOOT / "stubs" / "stub.sh", *sorted((BOOT / "stubs" / "handlers").glob("*.sh")),
               *sorted(BOOT.glob("*.bats"))]  # fmt: skip
    result = subprocess.run([shellcheck_path(), "-x", *map(str, scripts)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
