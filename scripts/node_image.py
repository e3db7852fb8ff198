"""`make image`: the stack's baked node image for libvirt, built with virt-customize (libguestfs-tools).

    python -m scripts.node_image --stack dev            # build it unless the cache has it
    python -m scripts.node_image --stack dev --if-baked  # the same, only when the stack boots baked images

The image is the stack's own stock image (libvirtBaseImage, checked against its SHA-256) with the boot
script run in it as ROLE=image (components/nodes/node_image.py): the same package sources, signing key and
checksums as a node's first boot. virt-customize runs the script inside the image from a small appliance VM
with the network, as root in the image, without booting it: no cloud-init runs, so no instance identity is
made, and the script removes the little the packages leave (seal_image). Why virt-customize: it works on
the cloud image itself, the very file the stock path boots, so the baked image differs from it by exactly
what the boot would install; mmdebstrap and diskimage-builder build a new root from scratch, another
image than the one the stock path runs. It needs no root (only a readable host kernel).

Before the image is published into the cache (next to the stock image, ~/.cache/hashistack/images), one
read-only look inside checks that it holds the CNI manifest and Envoy's archive, and none of: a bootstrap env, the Vault
package's self-signed key, SSH host keys, cloud-init state, a machine ID. Its inputs go beside it as
<name>.json, from which a stale image's differences are told (components/platforms/libvirt/base_image.py).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from components.config.settings import NodeImage, Platform
from components.nodes.node_config import BOOTSTRAP_ENV_PATH as ENV_PATH
from components.nodes.node_config import BOOTSTRAP_PATH
from components.nodes.node_image import BOOTSTRAP_SCRIPT, ImageRecipe, image_path, manifest_path, recipe
from components.platforms.libvirt.base_image import BaseImageError, cache_dir, local_image
from scripts.stack_files import stack_settings

# What may not be in a published image: paths that must be absent. The machine ID must be there and
# empty, and D-Bus's copy absent or empty (seal_image in the boot script says why).
ABSENT = (ENV_PATH, BOOTSTRAP_PATH, "/opt/vault/tls", "/var/lib/cloud/instances", "/var/lib/systemd/random-seed")
CNI_MANIFEST = "/opt/cni/bin/.hashistack-cni-plugins"
# The appliance: enough memory for apt and dpkg, both host cores.
APPLIANCE_MEMORY_MIB = 2048
# The stock cloud images' root filesystems have little free space; grown to this before the bake.
IMAGE_SIZE = "8G"


class ImageBuildError(RuntimeError):
    pass


def _run(command: list[str], env: dict[str, str] | None = None, stdin: str | None = None) -> str:
    done = subprocess.run(command, input=stdin, capture_output=True, text=True, env={**os.environ, **(env or {})},
                          check=False)  # fmt: skip
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-40:])
        raise ImageBuildError(f"{command[0]} exited {done.returncode}:\n{tail}")
    return done.stdout


def appliance_env(tcg: bool) -> dict[str, str]:
    """libguestfs's own appliance, not libvirt's; on software emulation when KVM cannot be used."""
    env = {"LIBGUESTFS_BACKEND": "direct"}
    if tcg:
        env["LIBGUESTFS_BACKEND_SETTINGS"] = "force_tcg"
    return env


def copy_base(base: Path, base_format: str, staging: Path, env: dict[str, str], grow_root: bool) -> None:
    """A qcow2 copy of the stock image with room for what the bake installs: a cloud image's root, its
    first partition in Ubuntu's and Debian's, grown by virt-resize (cloud-init grows it again to the
    node's disk at boot); a bare filesystem (the boot test's, which has its room) copied as it is."""
    if grow_root:
        _run(["qemu-img", "create", "-q", "-f", "qcow2", str(staging), IMAGE_SIZE])
        _run(["virt-resize", "--quiet", f"--format={base_format}", "--output-format=qcow2", "--expand", "/dev/sda1",
              str(base), str(staging)], env)  # fmt: skip
    else:
        _run(["qemu-img", "convert", "-f", base_format, "-O", "qcow2", str(base), str(staging)])


def bake(staging: Path, recipe_: ImageRecipe, env: dict[str, str], work: Path) -> None:
    """Runs the boot script as ROLE=image inside the image."""
    env_file = work / "bootstrap.env"
    env_file.write_text(recipe_.bootstrap_env())
    _run(["virt-customize", "--format=qcow2", "-a", str(staging), "--memsize", str(APPLIANCE_MEMORY_MIB),
                 "--smp", str(min(os.cpu_count() or 1, 2)), "--no-logfile",
                 "--mkdir", "/etc/hashistack", "--upload", f"{env_file}:{ENV_PATH}", "--chmod", f"0600:{ENV_PATH}",
                 "--mkdir", str(Path(BOOTSTRAP_PATH).parent), "--upload", f"{BOOTSTRAP_SCRIPT}:{BOOTSTRAP_PATH}",
                 "--chmod", f"0700:{BOOTSTRAP_PATH}", "--run-command", BOOTSTRAP_PATH], env)  # fmt: skip


def inspection_script(recipe_: ImageRecipe) -> str:
    """guestfish commands printing one `name=value` line per fact the published image is checked for."""
    lines = [f"echo absent:{path}=\nexists {path}" for path in ABSENT]
    lines += [
        "echo ssh_host_keys=\nglob-expand /etc/ssh/ssh_host_*",
        "echo machine_id=\n-cat /etc/machine-id",
        "echo machine_id_file=\nis-file /etc/machine-id",
        "echo dbus_machine_id=\n-cat /var/lib/dbus/machine-id",
        f"echo cni_manifest=\n-head-n 1 {CNI_MANIFEST}",
        f"echo envoy_archive=\nexists {recipe_.envoy_archive}",
    ]
    return "\n".join(lines) + "\n"


def inspection_problems(output: str, recipe_: ImageRecipe) -> list[str]:
    """What the published image may not hold, from the output of inspection_script(): each fact's
    `name=` line, then guestfish's answer lines (none from a value-less answer). A fact with no answer
    at all counts as failed, never as passed."""
    facts: dict[str, list[str]] = {}
    current = None
    for line in output.splitlines():
        if line.endswith("="):  # no answer ends so: paths, true/false, a machine ID, a version
            current = line[:-1]
            facts[current] = []
        elif current is not None:
            facts[current].append(line)
    wanted = [f"absent:{path}" for path in ABSENT] + [
        "ssh_host_keys", "machine_id", "machine_id_file", "dbus_machine_id", "cni_manifest", "envoy_archive",
    ]  # fmt: skip
    problems = [f"{name.removeprefix('absent:')} is not checked" for name in wanted if name not in facts]
    for path in ABSENT:
        if facts.get(f"absent:{path}", ["false"]) != ["false"]:
            problems.append(f"{path} is in the image")
    if facts.get("ssh_host_keys"):
        problems.append(f"SSH host keys are in the image: {', '.join(facts['ssh_host_keys'])}")
    # systemd's first boot (a missing or "uninitialized" /etc/machine-id) enables every unit by preset.
    first_boot = "systemd's first boot would enable every unit in the image by preset; it must be there, empty"
    if facts.get("machine_id", []) == ["uninitialized"]:
        problems.append(f"/etc/machine-id says uninitialized: {first_boot}")
    elif facts.get("machine_id", []) not in ([], [""]):
        problems.append(f"a machine ID is in the image: {facts['machine_id']}")
    if "machine_id_file" in facts and facts["machine_id_file"] != ["true"]:
        problems.append(f"/etc/machine-id is missing: {first_boot}")
    if facts.get("dbus_machine_id", []) not in ([], [""]):
        problems.append(
            f"a D-Bus machine ID is in the image, which systemd would give every node: {facts['dbus_machine_id']}"
        )
    if "cni_manifest" in facts and facts["cni_manifest"] != [recipe_.versions.cni_plugins]:
        problems.append(
            f"the CNI plugins are not v{recipe_.versions.cni_plugins}: {CNI_MANIFEST} says {facts['cni_manifest']}"
        )
    if "envoy_archive" in facts and facts["envoy_archive"] != ["true"]:
        problems.append(f"Envoy is not in the image: no {recipe_.envoy_archive}")
    return problems


def build(
    base: Path,
    base_format: str,
    recipe_: ImageRecipe,
    directory: Path,
    *,
    grow_root: bool = True,
    tcg: bool = False,
    log: Callable[[str], None] = print,
) -> Path:
    """The baked image of `recipe_` in `directory` (built over `base` unless already there)."""
    target = image_path(directory, recipe_)
    if target.is_file():
        log(f"image: {target} (cached)")
        return target
    directory.mkdir(parents=True, exist_ok=True)
    env = appliance_env(tcg)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=".build-", dir=directory) as work_name:
        work = Path(work_name)
        staging = work / target.name
        log(f"image: building {target.name} over {base} with virt-customize{' (TCG)' if tcg else ''}")
        copy_base(base, base_format, staging, env, grow_root)
        # The script exits 0 only at its end (set -e, its ERR trap); virt-customize shows its output and
        # fails when it does not.
        bake(staging, recipe_, env, work)
        inspected = _run(
            ["guestfish", "--ro", "--format=qcow2", "-a", str(staging), "-i"], env, inspection_script(recipe_)
        )
        problems = inspection_problems(inspected, recipe_)
        if problems:
            raise ImageBuildError("the image is not fit to publish: " + "; ".join(problems))
        seconds = round(time.monotonic() - started)
        manifest_path(staging).write_text(json.dumps({"inputs": recipe_.inputs, "build_seconds": seconds},
                                                     indent=2, sort_keys=True) + "\n")  # fmt: skip
        manifest_path(staging).rename(manifest_path(target))
        staging.rename(target)
    log(f"image: built {target.name} in {seconds} s")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stack", default="dev")
    parser.add_argument("--if-baked", action="store_true", help="do nothing unless the stack's nodeImage is baked")
    parser.add_argument("--tcg", action="store_true", help="software emulation (a host whose /dev/kvm hangs)")
    args = parser.parse_args(argv)
    settings = stack_settings(args.stack)
    if settings.platform is not Platform.LIBVIRT:
        print(f"image: stack {args.stack} is on {settings.platform.value}: `pulumi up` builds its image "
              "(EC2 Image Builder) when nodeImage is baked")  # fmt: skip
        return 0
    if args.if_baked and settings.node_image is not NodeImage.BAKED:
        return 0
    missing = [tool for tool in ("virt-customize", "virt-resize", "guestfish", "qemu-img") if not shutil.which(tool)]
    if missing:
        print(f"image: missing {', '.join(missing)}: sudo apt-get install libguestfs-tools qemu-utils", file=sys.stderr)
        return 2
    libvirt = settings.libvirt
    try:
        base = Path(local_image(libvirt.base_image, libvirt.base_image_sha256, preview=False, log=print))
        build(base, "qcow2", recipe(settings), cache_dir(), tcg=args.tcg)
    except (BaseImageError, ImageBuildError) as error:
        print(f"image: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
