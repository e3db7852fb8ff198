"""scripts/check_host.py (`make check-host`) and scripts/install-host.sh (`make prereqs`).

Each check runs against `FakeHost`, which answers file reads, commands, fetches and the user's groups
from tables, so every PASS, FAIL and INFO branch is driven without touching this machine. The package
index check runs the real HTTPS client against a local server; the script itself runs once for real
on this machine, whatever it has; install-host.sh runs against stubbed apt-get, dpkg-query and id.
"""

from __future__ import annotations

import gzip
import http.server
import ipaddress
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from fake_https import make_pki, serve_https

import scripts.check_host as ch
from components.config.settings import Platform
from components.platforms.libvirt.network import resource_prefix
from scripts.stack_files import stack_settings

from conftest import ROOT, shellcheck_path

URI = "qemu:///system"
REQUIREMENTS = ch.load_requirements()
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"  # Debian's default PATH for a user: no sbin


class FakeHost:
    """The host as tables: absent entries behave as on a machine that lacks them."""

    def __init__(self, **tables):
        self.env = {"PATH": SYSTEM_PATH, "HOME": "/home/alice", **tables.pop("env", {})}
        self.home = Path(self.env["HOME"])
        self.uid, self.user = tables.pop("uid", 1000), "alice"
        self.primary_gid = 1000
        self.session_gids = frozenset(tables.pop("session_gids", {1000}))
        self.files: dict[str, str] = tables.pop("files", {})
        self.executables: set[str] = set(tables.pop("executables", ()))
        self.commands: dict[tuple[str, ...], ch.Ran] = tables.pop("commands", {})
        self.urls: dict[str, bytes | ch.FetchError] = tables.pop("urls", {})
        self.groups: dict[str, ch.Group] = tables.pop("groups", {})
        self.rw: set[str] = set(tables.pop("rw", ()))
        self.modes: dict[str, str] = tables.pop("modes", {})
        self.sizes: dict[str, int] = tables.pop("sizes", {})
        self.filesystems: dict[str, tuple[int, int]] = tables.pop("filesystems", {})
        self.denied: set[str] = set(tables.pop("denied", ()))
        assert not tables, f"unknown tables {tables}"
        self.ran: list[list[str]] = []

    def read_text(self, path):
        if path not in self.files:
            raise FileNotFoundError(path)
        return self.files[path]

    def which(self, command, extra_dirs=()):
        for directory in [*self.env["PATH"].split(":"), *extra_dirs]:
            if f"{directory}/{command}" in self.executables:
                return f"{directory}/{command}"
        return None

    def is_executable(self, path):
        return path in self.executables

    def run(self, argv, timeout=ch.COMMAND_TIMEOUT):
        self.ran.append(list(argv))
        key = (Path(argv[0]).name, *argv[1:])
        return self.commands.get(key, ch.Ran(1, "", f"error: no such command in the fake: {key}"))

    def fetch(self, url, timeout=ch.FETCH_TIMEOUT):
        answer = self.urls.get(url, ch.FetchError(url, "Name or service not known"))
        if isinstance(answer, Exception):
            raise answer
        return answer

    def exists(self, path):
        return path in self.files or path in self.modes or path in self.sizes

    def access(self, path, mode):
        return path in self.rw

    def describe(self, path):
        return self.modes[path]

    def size(self, path):
        return self.sizes[path]

    def free_space(self, path):
        if path in self.denied:
            raise PermissionError(13, "Permission denied", path)
        if path not in self.filesystems:
            raise FileNotFoundError(2, "No such file or directory", path)
        return self.filesystems[path]

    def group(self, name):
        return self.groups.get(name)


def virsh(*args, out="", err="", rc=0):
    """A command table entry for `virsh -c qemu:///system ARGS`."""
    return {("virsh", "-c", URI, *args): ch.Ran(rc, out, err)}


def dev(**overrides):
    return stack_settings("dev", overrides)


def network_xml(name, bridge, *ips):
    return f"<network><name>{name}</name><bridge name='{bridge}' stp='on'/>{''.join(ips)}</network>"


def route_table(*rows):
    """/proc/net/route text: (iface, destination, mask, flags) with addresses in the kernel's little-endian hex."""

    def hexed(address):
        return ipaddress.IPv4Address(address).packed[::-1].hex().upper()

    lines = ["Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT"]
    for iface, destination, mask, flags in rows:
        lines.append(f"{iface}\t{hexed(destination)}\t00000000\t{flags:04X}\t0\t0\t0\t{hexed(mask)}\t0\t0\t0")
    return "\n".join(lines) + "\n"


# --- the shared requirements list and install-host.sh ---------------------------------------------


def test_the_provider_runs_exactly_xsltproc_and_mkisofs_from_the_operators_path():
    """terraform-provider-libvirt v0.8.1 (pulumi-libvirt 0.5.4's provider/go.mod pins it): `git grep
    exec.Command v0.8.1 -- libvirt/` finds, outside libvirt/helper/test/, libvirt/utils_xslt.go
    (transformXML: `xsltproc`) and libvirt/cloudinit_def.go (createISO: `mkisofs`), nothing else."""
    provider = {r.command: r.package for r in REQUIREMENTS if r.run_by == "provider"}
    assert provider == {"xsltproc": "xsltproc", "mkisofs": "genisoimage"}
    why = {r.command: r.why for r in REQUIREMENTS}
    assert "v0.8.1 libvirt/utils_xslt.go" in why["xsltproc"]
    assert "v0.8.1 libvirt/cloudinit_def.go" in why["mkisofs"]


def test_mkisofs_comes_from_genisoimage_not_xorriso():
    """Debian 12 packages (dpkg -c): genisoimage 9:1.1.11-3.4 ships /usr/bin/mkisofs -> genisoimage;
    xorriso 1.5.4-4 ships only xorriso, osirrox, xorrecord and xorrisofs, with no maintainer script
    registering a mkisofs alternative. The old list's xorriso left the provider without mkisofs."""
    packages = {r.package for r in REQUIREMENTS}
    assert "genisoimage" in packages and "xorriso" not in packages


def test_libvirtd_needs_what_debian_only_recommends():
    """Debian 12 libvirt-daemon-system 9.0.0-4+deb12u2 only Recommends dnsmasq-base (libvirt's network
    driver, src/network/bridge_driver.c, runs dnsmasq for the NAT network's DNS), and qemu-system-x86
    1:7.2+dfsg-7+deb12u18 only Recommends qemu-utils (qemu-img, which libvirt's storage driver,
    src/storage/storage_util.c, runs for a qcow2 volume with a backing store): a host installed with
    --no-install-recommends lacks both unless they are named."""
    by_command = {r.command: (r.package, r.run_by) for r in REQUIREMENTS}
    assert by_command["dnsmasq"] == ("dnsmasq-base", "libvirtd")
    assert by_command["qemu-img"] == ("qemu-utils", "libvirtd")
    assert by_command["qemu-system-x86_64"] == ("qemu-system-x86", "libvirtd")
    assert by_command["libvirtd"] == ("libvirt-daemon-system", "libvirtd")
    assert by_command["virsh"] == ("libvirt-clients", "operator")


def test_a_malformed_requirements_line_is_refused(tmp_path):
    bad = tmp_path / "requirements.tsv"
    bad.write_text("# comment\nmkisofs\tgenisoimage\tsomeone\twhy\n")
    with pytest.raises(ValueError, match=r"requirements.tsv:2: want command<TAB>package"):
        ch.load_requirements(bad)


def _stubs(tmp_path, *, groups_now="alice users", libvirt_line="libvirt:x:120:"):
    """A PATH in front of the real one: apt-get, dpkg-query, sudo, usermod record or pretend; id and
    getent describe alice (uid 1000), whose groups are `groups_now`; curl and python3 need no work."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir()
    stubs = {
        "apt-get": f'echo "apt-get $*" >>{log}',
        "dpkg-query": "exit 1",  # nothing is installed
        "sudo": 'exec "$@"',
        "usermod": f'echo "usermod $*" >>{log}',
        "python3": "exit 0",  # ensurepip is there
        "curl": "exit 0",
        "id": f'case "$1" in -u) echo 1000 ;; -un) echo alice ;; -nG) echo "{groups_now}" ;; esac',
        "getent": f'[ "$2" = libvirt ] && echo "{libvirt_line}"',
    }
    for name, body in stubs.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    home = tmp_path / "home"
    (home / ".pulumi" / "bin").mkdir(parents=True)
    (home / ".pulumi" / "bin" / "pulumi").write_text("#!/bin/sh\necho v3.272.0\n")
    (home / ".pulumi" / "bin" / "pulumi").chmod(0o755)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "HOME": str(home)}
    return env, log


def _install_host(env):
    return subprocess.run(
        [str(ROOT / "scripts" / "install-host.sh"), "3.272.0", "libvirt"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_install_host_installs_the_shared_list_and_asks_for_a_new_login(tmp_path):
    env, log = _stubs(tmp_path, groups_now="alice users libvirt-qemu")
    result = _install_host(env)
    assert result.returncode == 1, result.stderr
    calls = log.read_text().splitlines()
    installs = [c for c in calls if c.startswith("apt-get") and " install " in c]
    assert len(installs) == 1, calls
    assert installs[0].split()[-len({r.package for r in REQUIREMENTS}) :] == sorted({r.package for r in REQUIREMENTS})
    # libvirt-qemu is not libvirt (the old `grep -w libvirt` took it for one).
    assert "usermod -aG libvirt alice" in calls
    assert (
        "added you (alice) to group libvirt; log out and back in (or `newgrp libvirt`), then run make up again"
        in result.stderr
    )


def test_install_host_tells_a_member_whose_session_is_older_to_log_in_again(tmp_path):
    env, log = _stubs(tmp_path, libvirt_line="libvirt:x:120:bob,alice")
    result = _install_host(env)
    assert result.returncode == 1
    assert not any(c.startswith("usermod") for c in log.read_text().splitlines())
    assert "this session started before that; log out and back in (or `newgrp libvirt`)" in result.stderr


def test_install_host_is_done_for_a_member_of_libvirt(tmp_path):
    env, _ = _stubs(tmp_path, groups_now="alice libvirt")
    result = _install_host(env)
    assert result.returncode == 0, result.stderr


def test_install_host_first_brings_what_make_itself_needs(tmp_path):
    """A stock host may lack python3-venv (ensurepip, for `python3 -m venv`) and curl (the Pulumi installer)."""
    env, log = _stubs(tmp_path, groups_now="alice libvirt")
    bin_dir = Path(env["PATH"].split(":")[0])
    (bin_dir / "curl").unlink()
    (bin_dir / "python3").write_text("#!/bin/sh\nexit 1\n")  # no ensurepip
    for tool in ("bash", "env", "dirname", "grep", "cut", "sed", "sort", "tr"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    result = _install_host({**env, "PATH": str(bin_dir)})
    assert result.returncode == 0, result.stderr
    assert log.read_text().splitlines()[1] == "apt-get install -y -q python3-venv curl ca-certificates"


def test_install_host_reads_its_packages_from_the_shared_file_only():
    script = (ROOT / "scripts" / "install-host.sh").read_text()
    assert "host-requirements.tsv" in script
    code = "\n".join(line for line in script.splitlines() if not line.lstrip().startswith("#"))
    for package in {r.package for r in REQUIREMENTS}:
        assert package not in code, f"install-host.sh names {package}; the list lives in host-requirements.tsv"


def test_install_host_passes_shellcheck():
    result = subprocess.run(
        [shellcheck_path(), "--severity=style", str(ROOT / "scripts" / "install-host.sh")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout


def test_make_up_runs_check_host_after_prereqs_and_before_pulumi():
    plan = subprocess.run(
        ["make", "-n", "up", "STACK=dev"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    steps = [
        next(i for i, line in enumerate(plan) if marker in line)
        for marker in ("install-host.sh", "check_host", "pulumi.sh")
    ]
    assert steps == sorted(steps), plan
    assert "-m scripts.check_host --stack dev --pulumi-version 3.272.0" in plan[steps[1]]


# --- the checks -------------------------------------------------------------------------------------


def test_pulumi_cli_at_the_pinned_version_passes():
    own = "/home/alice/.pulumi/bin/pulumi"
    host = FakeHost(executables={own, "/usr/bin/pulumi"}, commands={("pulumi", "version"): ch.Ran(0, "v3.272.0\n", "")})
    assert ch.check_pulumi(host, "3.272.0", "dev") == ch.passed("pulumi-cli", f"{own} is v3.272.0")
    assert host.ran == [[own, "version"]], "~/.pulumi/bin comes first, as in scripts/pulumi.sh"
    on_path = FakeHost(executables={"/usr/bin/pulumi"}, commands={("pulumi", "version"): ch.Ran(0, "v3.272.0\n", "")})
    assert ch.check_pulumi(on_path, "3.272.0", "dev").status == "PASS"


def test_pulumi_cli_missing_wrong_or_broken_fails():
    missing = ch.check_pulumi(FakeHost(), "3.272.0", "dev")
    assert missing.line() == (
        "FAIL pulumi-cli: no `pulumi` in ~/.pulumi/bin or on PATH — fix: make prereqs STACK=dev "
        "(installs the Pulumi CLI v3.272.0 into ~/.pulumi)"
    )
    old = FakeHost(executables={"/usr/bin/pulumi"}, commands={("pulumi", "version"): ch.Ran(0, "v3.100.0\n", "")})
    assert ch.check_pulumi(old, "3.272.0", "dev").detail == "/usr/bin/pulumi is v3.100.0, the program pins v3.272.0"
    broken = FakeHost(executables={"/usr/bin/pulumi"}, commands={("pulumi", "version"): ch.Ran(2, "", "boom\n")})
    assert ch.check_pulumi(broken, "3.272.0", "dev").detail == "`/usr/bin/pulumi version` failed: boom"


def test_executables_are_looked_for_where_their_runner_looks():
    everything = {f"/usr/bin/{r.command}" for r in REQUIREMENTS}
    results = ch.check_executables(FakeHost(executables=everything), REQUIREMENTS)
    assert [r.status for r in results] == ["PASS"] * len(REQUIREMENTS)
    assert results[1].line() == "PASS mkisofs: /usr/bin/mkisofs (package genisoimage)"
    # libvirtd (root) finds dnsmasq in /usr/sbin, off a user's PATH; the provider finds nothing there.
    sbin = {"/usr/sbin/dnsmasq", "/usr/sbin/mkisofs"}
    found = {r.name: r for r in ch.check_executables(FakeHost(executables=sbin), REQUIREMENTS)}
    assert found["dnsmasq"].status == "PASS"
    assert found["mkisofs"].status == "FAIL" and found["mkisofs"].detail.startswith("not found on PATH;")
    assert found["mkisofs"].fix == "sudo apt-get install genisoimage"
    assert found["qemu-img"].fix == "sudo apt-get install qemu-utils"


def test_libvirt_daemon_answers():
    host = FakeHost(
        executables={"/usr/bin/virsh"},
        commands=virsh("version", out="Compiled against library: libvirt 9.0.0\nRunning hypervisor: QEMU 7.2.0\n"),
    )
    assert ch.check_libvirt_daemon(host, ch.Virsh(host, URI), "dev").line() == (
        "PASS libvirt-daemon: libvirtd answers at qemu:///system (running hypervisor: QEMU 7.2.0)"
    )


@pytest.mark.parametrize(
    ("stderr", "fix"),
    [
        (
            "error: Failed to connect socket to '/var/run/libvirt/libvirt-sock': Permission denied",
            "join group libvirt (see the libvirt-group line), then log out and back in",
        ),
        (
            "error: authentication unavailable: no polkit agent available to authenticate action "
            "'org.libvirt.unix.manage'",
            "join group libvirt (see the libvirt-group line), then log out and back in",
        ),
        (
            "error: Failed to connect socket to '/var/run/libvirt/libvirt-sock': No such file or directory",
            "sudo systemctl enable --now libvirtd (package libvirt-daemon-system)",
        ),
        ("error: internal error: something else", "check `systemctl status libvirtd` and libvirtUri (qemu:///system)"),
    ],
)
def test_libvirt_daemon_that_does_not_answer_fails_with_its_reason(stderr, fix):
    host = FakeHost(
        executables={"/usr/bin/virsh"},
        commands=virsh("version", err="error: failed to connect to the hypervisor\n" + stderr + "\n", rc=1),
    )
    result = ch.check_libvirt_daemon(host, ch.Virsh(host, URI), "dev")
    assert (result.status, result.fix) == ("FAIL", fix)
    assert result.detail == f"libvirtd does not answer at qemu:///system: {stderr.removeprefix('error: ')}"


def test_libvirt_daemon_without_virsh_fails():
    host = FakeHost()
    result = ch.check_libvirt_daemon(host, ch.Virsh(host, URI), "dev")
    assert result.line() == (
        "FAIL libvirt-daemon: cannot ask libvirtd at qemu:///system: virsh is missing — fix: sudo apt-get install "
        "libvirt-daemon-system libvirt-clients (or make prereqs STACK=dev)"
    )


LIBVIRT = ch.Group(120, ("bob",))


def test_libvirt_group_passes_for_a_member_root_or_a_session_daemon():
    member = FakeHost(groups={"libvirt": LIBVIRT}, session_gids={1000, 120})
    assert ch.check_libvirt_group(member, URI).status == "PASS"
    assert ch.check_libvirt_group(FakeHost(uid=0), URI).detail.startswith("running as root")
    assert ch.check_libvirt_group(FakeHost(), "qemu:///session").status == "PASS"
    assert ch.check_libvirt_group(FakeHost(), "qemu+ssh://kvm.example/system").status == "INFO"


def test_libvirt_group_added_but_not_in_this_session_asks_for_a_new_login():
    host = FakeHost(groups={"libvirt": ch.Group(120, ("bob", "alice"))}, session_gids={1000})
    assert ch.check_libvirt_group(host, URI).line() == (
        "FAIL libvirt-group: alice is in group libvirt in /etc/group, but this session started before that — "
        "fix: log out and back in (or `newgrp libvirt`), then run make up again"
    )


def test_libvirt_group_missing_membership_or_group_fails():
    outsider = ch.check_libvirt_group(FakeHost(groups={"libvirt": LIBVIRT}), URI)
    assert outsider.status == "FAIL" and outsider.fix.startswith("sudo usermod -aG libvirt $USER, then log out")
    no_group = ch.check_libvirt_group(FakeHost(), URI)
    assert no_group.status == "FAIL" and no_group.fix.startswith("sudo apt-get install libvirt-daemon-system")


def test_kvm_present_passes_whoever_may_open_it():
    mine = FakeHost(modes={"/dev/kvm": "crw-rw---- root:kvm"}, rw={"/dev/kvm"})
    assert ch.check_kvm(mine, URI).line() == "PASS kvm: /dev/kvm (crw-rw---- root:kvm) is read/writable by alice"
    # qemu:///system starts QEMU as libvirt-qemu (group kvm: Debian 12 libvirt-daemon-system 9.0.0-4+deb12u2
    # postinst, `adduser ... --ingroup kvm libvirt-qemu`), not as the operator.
    system = ch.check_kvm(FakeHost(modes={"/dev/kvm": "crw-rw---- root:kvm"}), URI)
    assert system.status == "PASS" and "runs the VMs as libvirt's QEMU user" in system.detail


def test_kvm_closed_to_a_session_daemons_user_fails():
    result = ch.check_kvm(FakeHost(modes={"/dev/kvm": "crw-rw---- root:kvm"}), "qemu:///session")
    assert (result.status, result.fix) == ("FAIL", "sudo usermod -aG kvm $USER, then log out and back in")


def test_kvm_missing_fails_with_the_cause_the_cpu_shows():
    vmx = FakeHost(files={"/proc/cpuinfo": "processor\t: 0\nflags\t\t: fpu vme vmx sse\n"})
    assert ch.check_kvm(vmx, URI).fix.startswith("sudo modprobe kvm_intel")
    svm = FakeHost(files={"/proc/cpuinfo": "flags\t\t: fpu svm\n"})
    assert ch.check_kvm(svm, URI).fix.startswith("sudo modprobe kvm_amd")
    neither = ch.check_kvm(FakeHost(files={"/proc/cpuinfo": "flags\t\t: fpu sse\n"}), URI)
    assert neither.status == "FAIL" and "firmware" in neither.fix
    assert ch.check_kvm(FakeHost(), "qemu+ssh://kvm.example/system").status == "INFO"


def test_apparmor_is_reported_and_never_fails():
    on = ch.check_apparmor(FakeHost(files={"/sys/module/apparmor/parameters/enabled": "Y\n"}), URI)
    assert on.status == "PASS" and "attaches its disks as files of its pool" in on.detail
    off = ch.check_apparmor(FakeHost(files={"/sys/module/apparmor/parameters/enabled": "N\n"}), URI)
    assert off.status == "INFO"
    assert ch.check_apparmor(FakeHost(), URI).status == "INFO"


def meminfo(available_mib):
    return {"/proc/meminfo": f"MemTotal:       32000000 kB\nMemAvailable:   {available_mib * 1024} kB\n"}


# dev: 3 servers of 2048 MiB and 1 client of 3072 MiB (Pulumi.dev.yaml), each + QEMU, + the host.
DEV_MEMORY_MIB = 3 * (2048 + ch.QEMU_OVERHEAD_MIB) + (3072 + ch.QEMU_OVERHEAD_MIB) + ch.HOST_RESERVE_MIB


def test_memory_enough_passes_and_too_little_fails():
    settings = dev()
    host = FakeHost(files=meminfo(DEV_MEMORY_MIB))
    assert ch.check_memory(host, settings, ch.Virsh(host, URI)).line() == (
        f"PASS memory: {DEV_MEMORY_MIB} MiB available ≥ {DEV_MEMORY_MIB} MiB needed (3 server(s) x (2048 + 256 "
        "for QEMU) + 1 client(s) x (3072 + 256 for QEMU) + 1536 for the host and Pulumi)"
    )
    short = FakeHost(files=meminfo(DEV_MEMORY_MIB - 1))
    result = ch.check_memory(short, settings, ch.Virsh(short, URI))
    assert result.status == "FAIL" and "clientMemoryMib" in result.fix
    assert ch.check_memory(FakeHost(), settings, ch.Virsh(FakeHost(), URI)).status == "FAIL"


def test_memory_of_the_stacks_running_vms_is_not_asked_for_twice():
    running = "hashistack-dev-server-0\nhashistack-dev-client-0\nother-vm\n"
    host = FakeHost(
        files=meminfo(DEV_MEMORY_MIB - 2048 - 3072 - 2 * ch.QEMU_OVERHEAD_MIB),
        executables={"/usr/bin/virsh"},
        commands=virsh("list", "--name", out=running),
    )
    result = ch.check_memory(host, dev(), ch.Virsh(host, URI))
    assert result.status == "PASS" and "2 of the stack's VMs run already" in result.detail


POOL = "/var/lib/libvirt/hashistack/dev"
CACHE = "/home/alice/.cache/hashistack/images"
# dev: base image + 3 servers + 1 client in the pool.
DEV_POOL = ch.BASE_IMAGE_ESTIMATE + 3 * ch.SERVER_DISK_ALLOWANCE + ch.CLIENT_DISK_ALLOWANCE


def test_disk_counts_the_pool_and_the_download_on_one_filesystem():
    room = DEV_POOL + ch.BASE_IMAGE_ESTIMATE
    host = FakeHost(filesystems={"/var/lib": (1, room), "/home/alice": (1, room)})
    result = ch.check_disk(host, dev(), ch.Virsh(host, URI))
    assert result.status == "PASS", result.detail
    assert result.detail.startswith("16.2 GiB free on the filesystem of /home/alice and /var/lib, 16.2 GiB needed")
    host.filesystems = {"/var/lib": (1, room - 1), "/home/alice": (1, room - 1)}
    short = ch.check_disk(host, dev(), ch.Virsh(host, URI))
    assert short.status == "FAIL" and "libvirtPoolDir" in short.fix


def test_disk_on_separate_filesystems_and_a_cached_image():
    settings = dev()
    cached = str(ch.cached_path(settings.libvirt.base_image, settings.libvirt.base_image_sha256, Path(CACHE)))
    host = FakeHost(
        # The pool directory is closed to the operator (0710): its parent answers for its filesystem.
        denied={"/var/lib/libvirt/hashistack"},
        filesystems={"/var/lib/libvirt": (1, DEV_POOL), "/home/alice": (2, 0)},
        sizes={cached: ch.BASE_IMAGE_ESTIMATE},
    )
    result = ch.check_disk(host, settings, ch.Virsh(host, URI))
    assert result.status == "PASS", result.detail
    assert "download" not in result.detail and "/var/lib/libvirt," in result.detail


def test_disk_short_for_an_existing_stack_is_only_information():
    host = FakeHost(
        filesystems={"/": (1, 0)},
        executables={"/usr/bin/virsh"},
        commands=virsh("pool-info", "hashistack-dev", out="Name: hashistack-dev\n"),
    )
    result = ch.check_disk(host, dev(), ch.Virsh(host, URI))
    assert result.status == "INFO" and "exists already" in result.detail


def test_routes_are_read_from_proc_net_route():
    """The kernel's /proc/net/route (net/ipv4/fib_trie.c fib_route_seq_show): hex fields in host byte order."""
    text = route_table(
        ("eth0", "0.0.0.0", "0.0.0.0", 0x3),
        ("eth0", "192.168.1.0", "255.255.255.0", 0x1),
        ("tun0", "10.8.0.0", "255.255.0.0", 0x0),
    )
    routes = ch.host_routes(FakeHost(files={"/proc/net/route": text}))
    assert routes == [("eth0", ipaddress.IPv4Network("0.0.0.0/0")), ("eth0", ipaddress.IPv4Network("192.168.1.0/24"))]


def test_network_free_passes_and_the_default_route_does_not_count():
    host = FakeHost(
        files={
            "/proc/net/route": route_table(
                ("eth0", "0.0.0.0", "0.0.0.0", 3), ("eth0", "192.168.1.0", "255.255.255.0", 1)
            )
        },
        executables={"/usr/bin/virsh"},
        commands={
            **virsh("net-list", "--all", "--name", out="default\n\n"),
            **virsh(
                "net-dumpxml",
                "default",
                out=network_xml("default", "virbr0", "<ip address='192.168.122.1' netmask='255.255.255.0'/>"),
            ),
        },
    )
    assert ch.check_network(host, dev(), ch.Virsh(host, URI)).line() == (
        "PASS network-cidr: networkCidr 192.168.142.0/24 overlaps no route of this host and no other libvirt network"
    )


def test_network_overlapping_a_route_or_another_libvirt_network_fails_with_a_free_range():
    """libvirt network XML (libvirt docs, formatnetwork.html "Addressing"): <ip address=... netmask=...>
    or prefix=...; family='ipv6' for IPv6, which cannot collide with an IPv4 range."""
    host = FakeHost(
        files={
            "/proc/net/route": route_table(
                ("docker0", "192.168.142.0", "255.255.255.0", 1), ("virbr5", "192.168.140.0", "255.255.252.0", 1)
            )
        },
        executables={"/usr/bin/virsh"},
        commands={
            **virsh("net-list", "--all", "--name", out="lab\n"),
            **virsh(
                "net-dumpxml",
                "lab",
                out=network_xml(
                    "lab",
                    "virbr5",
                    "<ip address='192.168.140.1' prefix='22'/>",
                    "<ip family='ipv6' address='fd00::1' prefix='64'/>",
                ),
            ),
        },
    )
    result = ch.check_network(host, dev(), ch.Virsh(host, URI))
    assert result.detail == (
        "networkCidr 192.168.142.0/24 overlaps libvirt network lab (192.168.140.0/22); the route to 192.168.142.0/24 on docker0"
    )
    free = ipaddress.IPv4Network(re.search(r"networkCidr (\S+) --stack dev", result.fix)[1])
    assert free.prefixlen == 24 and not free.overlaps(ipaddress.IPv4Network("192.168.140.0/22"))


def test_network_of_the_stack_itself_is_no_collision():
    own = resource_prefix(dev())
    host = FakeHost(
        files={"/proc/net/route": route_table(("virbr1", "192.168.142.0", "255.255.255.0", 1))},
        executables={"/usr/bin/virsh"},
        commands={
            **virsh("net-list", "--all", "--name", out=f"{own}\n"),
            **virsh("net-dumpxml", own, out=network_xml(own, "virbr1", "<ip address='192.168.142.1' prefix='24'/>")),
        },
    )
    result = ch.check_network(host, dev(), ch.Virsh(host, URI))
    assert result.status == "PASS" and result.detail.endswith("the stack's own network hashistack-dev exists on virbr1")


def test_network_without_libvirt_is_information_or_a_hinted_collision():
    clear = FakeHost(files={"/proc/net/route": route_table()})
    result = ch.check_network(clear, dev(), ch.Virsh(clear, URI))
    assert result.status == "INFO" and "virsh is missing" in result.detail
    bridged = FakeHost(files={"/proc/net/route": route_table(("virbr1", "192.168.142.0", "255.255.255.0", 1))})
    result = ch.check_network(bridged, dev(), ch.Virsh(bridged, URI))
    assert result.status == "FAIL" and "if it is hashistack-dev's own, libvirt could not say so" in result.detail


DOWN = "error: failed to connect to the hypervisor\nerror: Failed to connect socket to '/run/libvirt/libvirt-sock': No such file\n"


def test_virsh_gives_up_after_a_failed_connection_but_not_after_a_failed_query():
    """libvirt tools/virsh.c prints "failed to connect to the hypervisor" before the reason of any
    connection failure; a failed query on a working connection (a network removed meanwhile) is not one."""
    down = FakeHost(executables={"/usr/bin/virsh"}, commands=virsh("version", err=DOWN, rc=1))
    client = ch.Virsh(down, URI)
    assert client.query("version") is None and client.query("list", "--name") is None
    assert (
        len(down.ran) == 1 and client.error == "Failed to connect socket to '/run/libvirt/libvirt-sock': No such file"
    )
    up = FakeHost(
        files={"/proc/net/route": route_table()},
        executables={"/usr/bin/virsh"},
        commands={
            **virsh("net-list", "--all", "--name", out="gone\ndefault\n"),
            **virsh(
                "net-dumpxml",
                "default",
                out=network_xml("default", "virbr0", "<ip address='192.168.142.1' prefix='24'/>"),
            ),
        },
    )
    result = ch.check_network(up, dev(), ch.Virsh(up, URI))
    assert result.status == "FAIL" and "libvirt network default (192.168.142.0/24)" in result.detail


def test_the_stack_prefix_names_the_project_and_the_stack():
    """The stack's libvirt network and pool, and the prefix of its domains, as the check looks them up."""
    assert resource_prefix(dev()) == "hashistack-dev"


# --- the package index, over real HTTPS -------------------------------------------------------------


def packages_index(*entries):
    return "".join(f"Package: {p}\nVersion: {v}\nArchitecture: amd64\n\n" for p, v in entries)


DEV_PACKAGES = [("consul", "2.0.4-1"), ("nomad", "2.0.7-1"), ("vault", "2.1.1-1"), ("consul-cni", "2.0.3-1")]


@pytest.fixture(scope="module")
def apt_repo(tmp_path_factory):
    """A local HTTPS server standing in for hashicorpAptUrl; `routes` maps a path to (status, body)."""
    pki = make_pki(tmp_path_factory.mktemp("pki"))
    routes: dict[str, tuple[int, bytes]] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            status, body = routes.get(self.path, (404, b"not found"))
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    client = serve_https(server, pki)
    yield f"https://127.0.0.1:{server.server_address[1]}", routes, ch.RealHost(ssl_context=client)
    server.shutdown()
    server.server_close()


INDEX = "/dists/noble/main/binary-amd64/Packages"


def test_package_index_with_every_pinned_version_passes(apt_repo):
    """The nodes' source line, cloudinit/hashistack-bootstrap.sh: `deb [arch=amd64 signed-by=...] URL noble main`,
    so apt reads URL/dists/noble/main/binary-amd64/Packages(.gz) (Debian repository format,
    wiki.debian.org/DebianRepository/Format, "Binary Packages Indices")."""
    url, routes, host = apt_repo
    routes.clear()
    routes[INDEX + ".gz"] = (200, gzip.compress(packages_index(("consul", "1.21.1-1"), *DEV_PACKAGES).encode()))
    result = ch.check_package_source(host, dev(hashicorpAptUrl=url))
    assert result.line() == (
        "PASS package-source: consul=2.0.4-1, nomad=2.0.7-1, vault=2.1.1-1, consul-cni=2.0.3-1 listed in "
        f"{url}{INDEX}.gz"
    )


def test_package_index_falls_back_to_the_uncompressed_file(apt_repo):
    url, routes, host = apt_repo
    routes.clear()
    routes[INDEX] = (200, packages_index(*DEV_PACKAGES).encode())
    assert ch.check_package_source(host, dev(hashicorpAptUrl=url)).status == "PASS"


def test_package_index_without_a_pinned_version_fails_with_the_newest(apt_repo):
    url, routes, host = apt_repo
    routes.clear()
    entries = [e for e in DEV_PACKAGES if e[0] != "vault"] + [
        ("vault", "1.19.5-1"),
        ("vault", "1.20.1-1"),
        ("vault", "1.20.1+ent-1"),
    ]
    routes[INDEX + ".gz"] = (200, gzip.compress(packages_index(*entries).encode()))
    result = ch.check_package_source(host, dev(hashicorpAptUrl=url, vaultVersion="2.1.1"))
    assert result.detail == f"{url}{INDEX}.gz lacks vault=2.1.1-1 (newest there: 1.20.1-1)"
    assert result.fix == "pulumi config set hashistack:vaultVersion 1.20.1 --stack dev"


def test_debian_12_nodes_read_the_bookworm_index(apt_repo):
    url, routes, host = apt_repo
    routes.clear()
    routes[INDEX.replace("noble", "bookworm") + ".gz"] = (200, gzip.compress(packages_index(*DEV_PACKAGES).encode()))
    assert ch.check_package_source(host, dev(hashicorpAptUrl=url, nodeOs="debian-12")).status == "PASS"
    assert ch.check_package_source(host, dev(hashicorpAptUrl=url)).status == "FAIL", "Ubuntu's noble index is not there"


def test_package_index_missing_fails(apt_repo):
    url, routes, host = apt_repo
    routes.clear()
    result = ch.check_package_source(host, dev(hashicorpAptUrl=url))
    assert result.status == "FAIL" and result.detail.startswith("no noble/main amd64 package index at hashicorpAptUrl")
    assert f"{url}{INDEX}: HTTP 404" in result.detail


def test_package_index_that_errors_is_no_missing_index(apt_repo):
    url, routes, host = apt_repo
    routes.clear()
    routes[INDEX + ".gz"] = (503, b"busy")
    result = ch.check_package_source(host, dev(hashicorpAptUrl=url))
    assert result.status == "FAIL" and result.detail.startswith(
        f"cannot get the package index: tried {url}{INDEX}.gz: HTTP 503"
    )


def test_package_index_unreachable_fails_for_libvirt_and_informs_for_aws(apt_repo):
    _, _, host = apt_repo
    closed = "https://127.0.0.1:9"  # discard port: nothing listens there
    libvirt = ch.check_package_source(host, dev(hashicorpAptUrl=closed))
    assert libvirt.status == "FAIL" and "through this host's NAT" in libvirt.detail
    assert f"tried {closed}{INDEX}.gz: " in libvirt.detail
    aws = stack_settings("aws", {"hashicorpAptUrl": closed})
    assert ch.check_package_source(host, aws).status == "INFO"


# --- the whole run --------------------------------------------------------------------------------


CNI_SHA = "/v1.7.1/cni-plugins-linux-amd64-v1.7.1.tgz.sha256"
CNI_LINE = f"{'ab' * 32}  cni-plugins-linux-amd64-v1.7.1.tgz\n".encode()


def all_good_host(settings):
    """A host where every check of the dev stack passes."""
    return FakeHost(
        executables={"/home/alice/.pulumi/bin/pulumi", *(f"/usr/bin/{r.command}" for r in REQUIREMENTS)},
        commands={
            ("pulumi", "version"): ch.Ran(0, "v3.272.0\n", ""),
            **virsh("version", out="Running hypervisor: QEMU 7.2.0\n"),
            **virsh("net-list", "--all", "--name", out=""),
        },
        groups={"libvirt": LIBVIRT},
        session_gids={1000, 120},
        files={"/sys/module/apparmor/parameters/enabled": "Y\n", "/proc/net/route": route_table(), **meminfo(32000)},
        modes={"/dev/kvm": "crw-rw---- root:kvm"},
        filesystems={"/": (1, 100 * ch.GIB)},
        urls={
            f"{settings.package_source.apt_url}{INDEX}.gz": gzip.compress(packages_index(*DEV_PACKAGES).encode()),
            f"{settings.package_source.cni_plugins_url}{CNI_SHA}": CNI_LINE,
        },
    )


def test_main_passes_on_a_ready_host_and_prints_one_line_per_check(capsys):
    host = all_good_host(dev())
    assert ch.main(["--stack", "dev", "--pulumi-version", "3.272.0"], host) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines[:-1]] == [
        "PASS pulumi-cli",
        *(f"PASS {r.command}" for r in REQUIREMENTS),
        "PASS libvirt-daemon",
        "PASS libvirt-group",
        "PASS kvm",
        "PASS apparmor",
        "PASS memory",
        "PASS disk",
        "PASS network-cidr",
        "PASS package-source",
        "PASS cni-plugins",
    ]
    assert lines[-1] == "check-host dev: 0 FAIL, 18 PASS, 0 INFO — this host can run `make up STACK=dev`"


def test_main_summary_names_the_packages_to_install(capsys):
    host = all_good_host(dev())
    host.executables -= {"/usr/bin/mkisofs", "/usr/bin/qemu-img"}
    assert ch.main(["--stack", "dev"], host) == 1
    assert capsys.readouterr().out.splitlines()[-1] == (
        "check-host dev: 2 FAIL, 16 PASS, 0 INFO — fix the FAIL lines (`make prereqs STACK=dev` installs "
        "genisoimage qemu-utils), then run `make up STACK=dev` again"
    )


def test_main_for_aws_checks_only_the_cli_and_the_packages(capsys):
    settings = stack_settings("aws")
    assert settings.platform is Platform.AWS
    host = all_good_host(settings)
    assert ch.main(["--stack", "aws"], host) == 0
    assert [line.split(":")[0] for line in capsys.readouterr().out.splitlines()[:-1]] == [
        "PASS pulumi-cli",
        "PASS package-source",
        "PASS cni-plugins",
    ]


def test_main_reports_bad_settings(capsys, monkeypatch):
    def bad(stack):
        return stack_settings(stack, {"serverCount": 2})

    monkeypatch.setattr(ch, "stack_settings", bad)
    assert ch.main(["--stack", "dev"], FakeHost()) == 1
    assert capsys.readouterr().out.startswith("FAIL settings: invalid stack configuration (1 problem(s))")


def test_the_pulumi_version_defaults_to_the_pinned_sdk():
    assert ch.pinned_sdk_version() == "3.272.0"


def test_the_real_check_on_this_machine_gives_a_verdict():
    """Whatever this machine has: one line per check, then the summary; non-zero exactly when a line FAILs."""
    result = subprocess.run(
        [sys.executable, "-m", "scripts.check_host", "--stack", "dev"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    *lines, verdict = result.stdout.splitlines()
    assert len(lines) == 1 + len(REQUIREMENTS) + 9, result.stdout + result.stderr
    assert all(re.match(r"^(PASS|FAIL|INFO) [a-z0-9_-]+: ", line) for line in lines), result.stdout
    assert all(" — fix: " in line for line in lines if line.startswith("FAIL")), result.stdout
    fails = sum(line.startswith("FAIL") for line in lines)
    assert verdict.startswith(f"check-host dev: {fails} FAIL, ")
    assert result.returncode == (1 if fails else 0), result.stderr


def test_the_cni_release_with_its_checksum_passes(apt_repo):
    """The boot script's download (install_cni_plugins): `<cniPluginsUrl>/v<version>/<tarball>` and
    `<tarball>.sha256`, then `sha256sum -c`, which reads `<hash>  <name>` lines."""
    url, routes, host = apt_repo
    routes.clear()
    routes[CNI_SHA] = (200, CNI_LINE)
    result = ch.check_cni_plugins(host, dev(cniPluginsUrl=url))
    assert result.line() == f"PASS cni-plugins: cni-plugins-linux-amd64-v1.7.1.tgz and its SHA-256 at {url}{CNI_SHA}"


def test_a_missing_cni_release_names_the_version_and_the_fix(apt_repo):
    url, routes, host = apt_repo
    routes.clear()
    result = ch.check_cni_plugins(host, dev(cniPluginsUrl=url))
    assert result.status == "FAIL"
    assert result.detail == f"no CNI plugins v1.7.1 at cniPluginsUrl: {url}{CNI_SHA}: HTTP 404 Not Found"
    assert result.fix.startswith("set cniPluginsVersion to a release that exists there")


def test_a_checksum_file_for_another_tarball_fails(apt_repo):
    url, routes, host = apt_repo
    routes.clear()
    routes[CNI_SHA] = (200, CNI_LINE.replace(b"v1.7.1.tgz", b"v1.7.0.tgz"))
    result = ch.check_cni_plugins(host, dev(cniPluginsUrl=url))
    assert result.status == "FAIL" and "is not a SHA-256 line for cni-plugins-linux-amd64-v1.7.1.tgz" in result.detail


def test_an_unreachable_cni_mirror_fails_for_libvirt_and_informs_for_aws(apt_repo):
    _, _, host = apt_repo
    closed = "https://127.0.0.1:9"
    libvirt = ch.check_cni_plugins(host, dev(cniPluginsUrl=closed))
    assert libvirt.status == "FAIL" and "through this host's NAT" in libvirt.detail
    assert ch.check_cni_plugins(host, stack_settings("aws", {"cniPluginsUrl": closed})).status == "INFO"
