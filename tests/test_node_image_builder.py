"""`make image`'s builder (scripts/node_image.py) against recording stand-ins of qemu-img, virt-resize,
virt-customize and guestfish: what it runs, in which order, what it puts in the image, and what it
refuses to publish. The real tools run in the boot test, which bakes its image with this same builder."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import pytest

from components.nodes.node_config import BOOTSTRAP_PATH
from components.nodes.node_image import BOOTSTRAP_SCRIPT, image_path, manifest_path, recipe
from scripts import node_image
from scripts.node_image import ABSENT, ImageBuildError, build, inspection_problems, inspection_script
from scripts.stack_files import stack_settings

RECIPE = recipe(stack_settings("dev"))
# What guestfish prints for inspection_script() on a well-sealed image (booleans as true/false, a
# missing file's `-cat` printing nothing to standard output).
CLEAN = "".join(f"absent:{path}=\nfalse\n" for path in ABSENT) + (
    "ssh_host_keys=\nmachine_id=\nmachine_id_file=\ntrue\ndbus_machine_id=\ncni_manifest=\n1.7.1\nenvoy_archive=\ntrue\n"
)
ENVOY_ARCHIVE = "/opt/hashistack/container-images/docker.io_envoyproxy_envoy_v1.37.4.tar"

FAKE = """#!/bin/bash
# Records its arguments; qemu-img makes its output file (virt-resize needs it made); virt-customize keeps a copy
# of what it uploads; guestfish prints $FAKE_INSPECTION and records its commands.
echo "$(basename "$0") $*" >>"$FAKE_LOG"
[[ "$(basename "$0")" == qemu-img ]] ||
  echo "${LIBGUESTFS_BACKEND:-} ${LIBGUESTFS_BACKEND_SETTINGS:-}" >>"$FAKE_UPLOADS/environment"
case "$(basename "$0")" in
  qemu-img) if [[ "$1" == create ]]; then : >"${@: -2:1}"; else : >"${@: -1}"; fi ;;
  virt-resize) [[ -e "${@: -1}" ]] || exit 1 ;;  # it writes into the disk qemu-img created
  virt-customize)
    while (($#)); do
      [[ "$1" != --upload ]] || cp "${2%%:*}" "$FAKE_UPLOADS/$(basename "${2##*:}")"
      shift
    done
    [[ -z "${FAKE_BAKE_STATUS:-}" ]] || { seq 1 50 | sed 's/^/line /'; echo "E: Unable to locate package consul" >&2; }
    exit "${FAKE_BAKE_STATUS:-0}" ;;
  guestfish) cat >"$FAKE_UPLOADS/guestfish.in"; printf '%s' "$FAKE_INSPECTION" ;;
esac
"""


@pytest.fixture
def tools(tmp_path, monkeypatch):
    bin_dir, uploads = tmp_path / "bin", tmp_path / "uploads"
    bin_dir.mkdir()
    uploads.mkdir()
    for tool in ("qemu-img", "virt-resize", "virt-customize", "guestfish"):
        (bin_dir / tool).write_text(FAKE)
        (bin_dir / tool).chmod(stat.S_IRWXU)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_LOG", str(tmp_path / "calls.log"))
    monkeypatch.setenv("FAKE_UPLOADS", str(uploads))
    monkeypatch.setenv("FAKE_INSPECTION", CLEAN)
    monkeypatch.delenv("LIBGUESTFS_BACKEND_SETTINGS", raising=False)
    return tmp_path


def calls(tools: Path) -> list[str]:
    log = tools / "calls.log"
    return log.read_text().splitlines() if log.exists() else []


def test_a_cloud_image_is_grown_then_baked_by_the_boot_script_then_inspected_then_published(tools):
    base = tools / "stock.img"
    base.write_bytes(b"")
    out = tools / "cache/images"  # made, parents and all
    logged = []
    built = build(base, "qcow2", RECIPE, out, log=logged.append)
    assert logged[0] == f"image: building {built.name} over {base} with virt-customize"
    assert re.fullmatch(rf"image: built {re.escape(built.name)} in \d+ s", logged[1]) and len(logged) == 2
    # The appliance's settings reach every libguestfs tool through the environment; KVM unless told.
    assert (tools / "uploads/environment").read_text().splitlines() == ["direct "] * 3
    assert built == image_path(out, RECIPE) and built.is_file()
    manifest = json.loads(manifest_path(built).read_text())
    assert manifest["inputs"] == RECIPE.inputs and isinstance(manifest["build_seconds"], int)
    assert [line.split()[0] for line in calls(tools)] == ["qemu-img", "virt-resize", "virt-customize", "guestfish"]
    create, resize, customize, inspect = calls(tools)
    assert create.startswith("qemu-img create -q -f qcow2 ") and create.endswith(f" {node_image.IMAGE_SIZE}")
    assert f"--format=qcow2 --output-format=qcow2 --expand /dev/sda1 {base} " in resize
    staging = customize.split()[3]
    assert Path(staging).parent.parent == out and Path(staging).parent.name.startswith(".build-")
    assert create == f"qemu-img create -q -f qcow2 {staging} {node_image.IMAGE_SIZE}"
    assert resize == f"virt-resize --quiet --format=qcow2 --output-format=qcow2 --expand /dev/sda1 {base} {staging}"
    env_file = Path(staging).parent / "bootstrap.env"
    assert customize == (
        f"virt-customize --format=qcow2 -a {staging} --memsize {node_image.APPLIANCE_MEMORY_MIB} "
        f"--smp {min(os.cpu_count() or 1, 2)} --no-logfile --mkdir /etc/hashistack "
        f"--upload {env_file}:{node_image.ENV_PATH} --chmod 0600:{node_image.ENV_PATH} --mkdir /usr/local/sbin "
        f"--upload {BOOTSTRAP_SCRIPT}:{BOOTSTRAP_PATH} --chmod 0700:{BOOTSTRAP_PATH} --run-command {BOOTSTRAP_PATH}"
    )
    # The nodes' own script and the recipe's settings (ROLE=image) are what runs in the image.
    assert (tools / "uploads/hashistack-bootstrap").read_bytes() == BOOTSTRAP_SCRIPT.read_bytes()
    assert (tools / "uploads/bootstrap.env").read_text() == RECIPE.bootstrap_env()
    assert inspect == f"guestfish --ro --format=qcow2 -a {staging} -i"
    assert (tools / "uploads/guestfish.in").read_text() == inspection_script(RECIPE)
    assert {p.name for p in out.iterdir()} == {built.name, manifest_path(built).name}, "the work directory is gone"


def test_a_bare_filesystem_is_copied_as_it_is_and_the_appliance_can_be_told_to_emulate(tools, monkeypatch):
    seen = {}
    real_run = node_image._run

    def run(command, env=None, stdin=None):
        seen.setdefault(command[0], env)
        return real_run(command, env, stdin)

    monkeypatch.setattr(node_image, "_run", run)
    base = tools / "rootfs.ext4"
    base.write_bytes(b"")
    (tools / "images").mkdir()  # an existing cache, as after another image
    logged = []
    build(base, "raw", RECIPE, tools / "images", grow_root=False, tcg=True, log=logged.append)
    assert logged[0].endswith(" with virt-customize (TCG)")
    assert (tools / "uploads/environment").read_text().splitlines() == ["direct force_tcg"] * 2
    assert calls(tools)[0].startswith(f"qemu-img convert -f raw -O qcow2 {base} ")
    assert not any(line.startswith("virt-resize") for line in calls(tools))
    assert seen["virt-customize"] == {"LIBGUESTFS_BACKEND": "direct", "LIBGUESTFS_BACKEND_SETTINGS": "force_tcg"}
    assert node_image.appliance_env(False) == {"LIBGUESTFS_BACKEND": "direct"}


def test_a_cached_image_is_used_without_running_anything(tools):
    out = tools / "images"
    out.mkdir()
    image_path(out, RECIPE).write_bytes(b"baked")
    logged = []
    assert build(tools / "absent.img", "qcow2", RECIPE, out, log=logged.append) == image_path(out, RECIPE)
    assert calls(tools) == [] and logged == [f"image: {image_path(out, RECIPE)} (cached)"]


@pytest.mark.parametrize(
    "failure, message",
    [
        ({"FAKE_BAKE_STATUS": "1"}, "virt-customize exited 1"),
        ({"FAKE_INSPECTION": CLEAN.replace("absent:/opt/vault/tls=\nfalse", "absent:/opt/vault/tls=\ntrue")},
         "the image is not fit to publish: /opt/vault/tls is in the image$"),
    ],
    ids=["bake fails", "a key is left"],
)  # fmt: skip
def test_an_image_that_fails_is_never_published(tools, monkeypatch, failure, message):
    for key, value in failure.items():
        monkeypatch.setenv(key, value)
    base = tools / "stock.img"
    base.write_bytes(b"")
    out = tools / "images"
    with pytest.raises(ImageBuildError, match=message) as error:
        build(base, "qcow2", RECIPE, out, log=lambda _: None)
    if "FAKE_BAKE_STATUS" in failure:  # the last 40 lines of what it printed, its error last
        assert str(error.value).splitlines()[1:] == [f"line {n}" for n in range(12, 51)] + [
            "E: Unable to locate package consul"
        ]
    assert list(out.iterdir()) == [], "neither the image nor its work directory stays"


def test_inspection_names_everything_that_would_make_two_nodes_alike():
    assert inspection_problems(CLEAN, RECIPE) == []
    assert inspection_problems(CLEAN.replace("machine_id=\n", "machine_id=\n\n", 1), RECIPE) == [], "an empty file"
    # A missing or "uninitialized" machine ID makes the first boot systemd's, which enables every unit.
    first_boot = "systemd's first boot would enable every unit in the image by preset; it must be there, empty"
    assert inspection_problems(CLEAN.replace("machine_id=\n", "machine_id=\nuninitialized\n", 1), RECIPE) == [
        f"/etc/machine-id says uninitialized: {first_boot}"
    ]
    assert inspection_problems(CLEAN.replace("machine_id_file=\ntrue", "machine_id_file=\nfalse"), RECIPE) == [
        f"/etc/machine-id is missing: {first_boot}"
    ]
    # D-Bus's copy: absent, or the link to the empty /etc/machine-id (guestfish's cat follows it), or else shared.
    assert inspection_problems(CLEAN.replace("dbus_machine_id=\n", "dbus_machine_id=\n\n"), RECIPE) == []
    assert inspection_problems(CLEAN.replace("dbus_machine_id=\n", "dbus_machine_id=\n273c712b\n"), RECIPE) == [
        "a D-Bus machine ID is in the image, which systemd would give every node: ['273c712b']"
    ]
    for path in ABSENT:
        left = CLEAN.replace(f"absent:{path}=\nfalse", f"absent:{path}=\ntrue")
        assert inspection_problems(left, RECIPE) == [f"{path} is in the image"], path
    keys = CLEAN.replace("ssh_host_keys=\n", "ssh_host_keys=\n/etc/ssh/ssh_host_ed25519_key\n/etc/ssh/x.pub\n")
    assert inspection_problems(keys, RECIPE) == [
        "SSH host keys are in the image: /etc/ssh/ssh_host_ed25519_key, /etc/ssh/x.pub"
    ]
    machine = CLEAN.replace("machine_id=\n", "machine_id=\n4c4c4544004a\n", 1)
    assert inspection_problems(machine, RECIPE) == ["a machine ID is in the image: ['4c4c4544004a']"]
    assert inspection_problems(CLEAN.replace("cni_manifest=\n1.7.1\n", "cni_manifest=\n"), RECIPE) == [
        "the CNI plugins are not v1.7.1: /opt/cni/bin/.hashistack-cni-plugins says []"
    ]
    # A check whose answer is missing altogether counts as failed, never as passed.
    assert inspection_problems(CLEAN.replace(f"absent:{ABSENT[0]}=\nfalse\n", ""), RECIPE) == [
        f"{ABSENT[0]} is not checked"
    ]
    for fact in ("ssh_host_keys", "machine_id", "dbus_machine_id"):
        assert inspection_problems(CLEAN.replace(f"\n{fact}=\n", "\n"), RECIPE) == [f"{fact} is not checked"]
    assert inspection_problems(CLEAN.replace("machine_id_file=\ntrue\n", ""), RECIPE) == [
        "machine_id_file is not checked"
    ]
    assert inspection_problems(CLEAN.replace("cni_manifest=\n1.7.1\n", ""), RECIPE) == ["cni_manifest is not checked"]
    assert inspection_problems(CLEAN.replace("envoy_archive=\ntrue\n", "envoy_archive=\nfalse\n"), RECIPE) == [
        f"Envoy is not in the image: no {ENVOY_ARCHIVE}"
    ]
    assert inspection_problems(CLEAN.replace("envoy_archive=\ntrue\n", ""), RECIPE) == ["envoy_archive is not checked"]
    # What guestfish may print before the first fact belongs to none.
    assert inspection_problems("Welcome to guestfish\ntrue\n" + CLEAN, RECIPE) == []


def test_the_inspection_asks_guestfish_about_each_path():
    script = inspection_script(RECIPE)
    for path in ABSENT:
        assert f"echo absent:{path}=\nexists {path}\n" in script
    assert script.endswith(
        "echo ssh_host_keys=\nglob-expand /etc/ssh/ssh_host_*\necho machine_id=\n-cat /etc/machine-id\n"
        "echo machine_id_file=\nis-file /etc/machine-id\necho dbus_machine_id=\n-cat /var/lib/dbus/machine-id\n"
        "echo cni_manifest=\n-head-n 1 /opt/cni/bin/.hashistack-cni-plugins\n"
        f"echo envoy_archive=\nexists {ENVOY_ARCHIVE}\n"
    )


# -- `make image` itself ------------------------------------------------------------------------------
@pytest.fixture
def make_image(monkeypatch, tmp_path):
    """main() with the tools found and the stock image and the build recorded, not run."""
    calls = {}
    monkeypatch.setattr(node_image.shutil, "which", lambda tool: f"/usr/bin/{tool}")
    monkeypatch.setattr(node_image, "cache_dir", lambda: tmp_path)

    def local_image(source, sha256, **options):
        calls["base"] = (source, sha256, options)
        return str(tmp_path / "stock.img")

    def build(base, base_format, recipe_, directory, **options):
        calls["build"] = (base, base_format, recipe_.name, directory, options)
        return directory / f"{recipe_.name}.qcow2"

    monkeypatch.setattr(node_image, "local_image", local_image)
    monkeypatch.setattr(node_image, "build", build)
    return calls


def test_make_image_bakes_the_stacks_recipe_over_its_checked_stock_image(make_image, tmp_path):
    assert node_image.main(["--tcg"]) == 0, "the dev stack unless told"
    settings = stack_settings("dev")
    # Downloaded (never a preview's placeholder) and checked as for a stock `up`, with its progress shown.
    options = {"preview": False, "log": print}
    assert make_image["base"] == (settings.libvirt.base_image, settings.libvirt.base_image_sha256, options)
    assert make_image["build"] == (tmp_path / "stock.img", "qcow2", RECIPE.name, tmp_path, {"tcg": True})
    assert node_image.main(["--stack", "dev", "--if-baked"]) == 0
    assert make_image["build"][4] == {"tcg": False}, "a baked stack is built with --if-baked too"


def test_make_image_does_nothing_for_a_stock_stack_when_asked_if_baked(make_image, tmp_path, monkeypatch):
    monkeypatch.setattr(node_image, "stack_settings", lambda stack: stack_settings(stack, {"nodeImage": "stock"}))
    assert node_image.main(["--stack", "dev", "--if-baked"]) == 0
    assert make_image == {}


def test_make_image_on_aws_says_where_the_image_is_built(make_image, capsys):
    assert node_image.main(["--stack", "aws"]) == 0
    assert "EC2 Image Builder" in capsys.readouterr().out and make_image == {}


@pytest.mark.parametrize("tool", ["virt-customize", "virt-resize", "guestfish", "qemu-img"])
def test_make_image_names_the_missing_tools(make_image, monkeypatch, capsys, tool):
    monkeypatch.setattr(node_image.shutil, "which", lambda name: None if name in (tool, "guestfish") else name)
    assert node_image.main(["--stack", "dev"]) == 2
    missing = ", ".join(dict.fromkeys(t for t in ("virt-customize", "virt-resize", "guestfish", "qemu-img")
                                      if t in (tool, "guestfish")))  # fmt: skip
    assert f"image: missing {missing}: sudo apt-get install libguestfs-tools qemu-utils" in capsys.readouterr().err
    assert make_image == {}


@pytest.mark.parametrize("error", [node_image.BaseImageError("libvirtBaseImage: no answer"),
                                   ImageBuildError("the image is not fit to publish: x")])  # fmt: skip
def test_make_image_ends_a_failure_with_its_one_line_message(make_image, monkeypatch, capsys, error):
    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(node_image, "local_image" if isinstance(error, node_image.BaseImageError) else "build", fail)
    assert node_image.main(["--stack", "dev"]) == 1
    assert capsys.readouterr().err == f"image: {error}\n"
