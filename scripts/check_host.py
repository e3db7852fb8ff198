"""Can this host run a stack? One line per prerequisite, before `pulumi up` finds out the slow way.

    python -m scripts.check_host --stack dev [--pulumi-version 3.272.0]

Each line is `PASS <name>: <what was found>`, `FAIL <name>: <what is wrong> — fix: <what to do>` or
`INFO <name>: ...` (a fact worth knowing that stops nothing); the exit status is 1 when any line FAILs.
`make check-host` runs it, and `make up` runs it before `pulumi up`.

Every check takes a `host` (file reads, commands, HTTPS fetches, the user and their groups), so the
tests drive each branch with a fake one; `RealHost` is the machine. The executables come from
scripts/host-requirements.tsv, which scripts/install-host.sh installs from: one list for both.
An aws stack needs only the Pulumi CLI here (and its nodes fetch their packages from AWS); a libvirt
stack needs everything the libvirt provider and libvirtd run, and room for its VMs.
"""

from __future__ import annotations

import argparse
import grp
import gzip
import ipaddress
import itertools
import os
import pwd
import re
import shutil
import ssl
import stat
import struct
import subprocess
import sys
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse
from xml.etree import ElementTree

from components.config.node_os import RELEASES
from components.config.settings import Platform, Settings, SettingsError
from components.nodes.node_config import Role
from components.nodes.node_plan import node_specs
from components.platforms.libvirt.base_image import cache_dir, cached_path
from components.platforms.libvirt.network import resource_prefix
from components.platforms.libvirt.nodes import CLIENT_DISK_BYTES, SERVER_DISK_BYTES
from scripts.stack_files import ROOT, stack_settings

REQUIREMENTS = Path(__file__).resolve().parent / "host-requirements.tsv"
MIB = 1024**2
GIB = 1024**3

# Memory: each VM costs its guest memory plus QEMU's own (the emulator process, its page tables and
# device buffers: a few hundred MiB per VM in practice), and the host keeps working meanwhile: the
# desktop or shell, libvirtd, and the Pulumi engine with its language host and six provider plugins
# (each a Go binary of 100-200 MiB resident).
QEMU_OVERHEAD_MIB = 256
HOST_RESERVE_MIB = 1536

# Disk: the node disks are thin qcow2 overlays on the base image (components/platforms/libvirt/nodes.py), so
# they start near empty and grow to at most SERVER_DISK_BYTES / CLIENT_DISK_BYTES. What a first `up`
# writes is far less: a server installs consul, nomad and vault (about 1 GiB unpacked, with apt's
# lists and cache) and keeps logs and Raft data; a client installs consul, nomad, Docker and the CNI
# plugins and pulls the demo jobs' images (Traefik, Prometheus, Grafana, a JDK image, Envoy: about
# 2-3 GiB). The allowances below cover that with room for logs; the base image is copied into the
# pool once (the Ubuntu 24.04 cloud image is about 600 MB) and, from a URL, first downloaded into the
# operator's cache (components/platforms/libvirt/base_image.py).
SERVER_DISK_ALLOWANCE = 3 * GIB
CLIENT_DISK_ALLOWANCE = 6 * GIB
BASE_IMAGE_ESTIMATE = 600 * MIB

# The nodes run the `nodeOs` release on amd64 (components/config/node_os.py), and
# cloudinit/hashistack-bootstrap.sh adds `deb [arch=$ARCH signed-by=...] $HASHICORP_APT_URL
# $VERSION_CODENAME main`, then installs `<pkg>=<version>-1`.
NODE_ARCH = "amd64"
PACKAGE_REVISION = "-1"

# Where libvirtd finds its helpers: it runs as root, with sbin on its PATH and dnsmasq's path built in;
# the operator's own PATH often lacks sbin (Debian's default user PATH does).
SYSTEM_DIRS = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
COMMAND_TIMEOUT = 20
FETCH_TIMEOUT = 20
RTF_UP = 0x1


@dataclass(frozen=True)
class Result:
    status: str
    """PASS, FAIL or INFO."""
    name: str
    detail: str
    fix: str = ""

    def line(self) -> str:
        return f"{self.status} {self.name}: {self.detail}" + (f" — fix: {self.fix}" if self.fix else "")


def passed(name: str, detail: str) -> Result:
    return Result("PASS", name, detail)


def failed(name: str, detail: str, fix: str) -> Result:
    return Result("FAIL", name, detail, fix)


def info(name: str, detail: str) -> Result:
    return Result("INFO", name, detail)


@dataclass(frozen=True)
class Requirement:
    command: str
    package: str
    run_by: str
    """`provider` (from the operator's PATH), `libvirtd` (system directories) or `operator`."""
    why: str


def load_requirements(path: Path = REQUIREMENTS) -> list[Requirement]:
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) != 4 or fields[2] not in ("provider", "libvirtd", "operator"):
            raise ValueError(f"{path.name}:{number}: want command<TAB>package<TAB>provider|libvirtd|operator<TAB>why")
        rows.append(Requirement(*fields))
    return rows


# --- the host -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ran:
    returncode: int
    stdout: str
    stderr: str


class FetchError(Exception):
    def __init__(self, url: str, reason: str, status: int | None = None):
        super().__init__(f"{url}: {reason}")
        self.url, self.reason, self.status = url, reason, status


@dataclass(frozen=True)
class Group:
    gid: int
    members: tuple[str, ...]


class RealHost:
    """This machine, through subprocess, urllib and os."""

    def __init__(self, environ: Mapping[str, str] | None = None, ssl_context: ssl.SSLContext | None = None):
        self.env = dict(os.environ if environ is None else environ)
        self.home = Path(self.env.get("HOME") or Path.home())
        self.uid = os.getuid()
        self.user = pwd.getpwuid(self.uid).pw_name
        self.primary_gid = os.getgid()
        # The groups this process (this login session) holds: a group added since is not among them.
        self.session_gids = frozenset(os.getgroups()) | {os.getegid()}
        self._ssl_context = ssl_context or ssl.create_default_context()

    def read_text(self, path: str) -> str:
        return Path(path).read_text()

    def which(self, command: str, extra_dirs: Sequence[str] = ()) -> str | None:
        return shutil.which(command, path=os.pathsep.join([self.env.get("PATH", ""), *extra_dirs]))

    def is_executable(self, path: str) -> bool:
        return os.path.isfile(path) and os.access(path, os.X_OK)

    def run(self, argv: Sequence[str], timeout: float = COMMAND_TIMEOUT) -> Ran:
        # English messages to match on; no update check (and its network call) from the Pulumi CLI.
        env = {**self.env, "LC_ALL": "C", "PULUMI_SKIP_UPDATE_CHECK": "true"}
        try:
            done = subprocess.run(
                list(argv), capture_output=True, text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL
            )
        except FileNotFoundError:
            return Ran(127, "", f"{argv[0]}: command not found")
        except subprocess.TimeoutExpired:
            return Ran(124, "", f"`{' '.join(argv)}` did not answer within {timeout:g} s")
        return Ran(done.returncode, done.stdout, done.stderr)

    def fetch(self, url: str, timeout: float = FETCH_TIMEOUT) -> bytes:
        # No proxy from the environment: the nodes behind libvirt's NAT use none, so a repository this
        # host reaches only through a proxy is one the nodes cannot reach.
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=self._ssl_context)
        )
        request = urllib.request.Request(url, headers={"User-Agent": "hashistack-check-host"})
        try:
            with opener.open(request, timeout=timeout) as response:
                return response.read()
        except urllib.error.HTTPError as error:
            raise FetchError(url, f"HTTP {error.code} {error.reason}", error.code) from None
        except urllib.error.URLError as error:
            raise FetchError(url, str(error.reason)) from None
        except TimeoutError:
            raise FetchError(url, f"no answer within {timeout:g} s") from None
        except OSError as error:
            raise FetchError(url, str(error)) from None

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def access(self, path: str, mode: int) -> bool:
        return os.access(path, mode)

    def describe(self, path: str) -> str:
        """`crw-rw---- root:kvm`, like ls -l."""
        st = os.stat(path)
        try:
            owner = pwd.getpwuid(st.st_uid).pw_name
        except KeyError:
            owner = str(st.st_uid)
        try:
            group = grp.getgrgid(st.st_gid).gr_name
        except KeyError:
            group = str(st.st_gid)
        return f"{stat.filemode(st.st_mode)} {owner}:{group}"

    def size(self, path: str) -> int:
        return os.stat(path).st_size

    def free_space(self, path: str) -> tuple[int, int]:
        """(filesystem id, bytes free to an unprivileged user) of an existing path; OSError otherwise."""
        device = os.stat(path).st_dev
        fs = os.statvfs(path)
        return device, fs.f_bavail * fs.f_frsize

    def group(self, name: str) -> Group | None:
        # Through NSS: /etc/group, and a directory service where the host uses one.
        try:
            entry = grp.getgrnam(name)
        except KeyError:
            return None
        return Group(entry.gr_gid, tuple(entry.gr_mem))


# --- libvirt, asked through virsh ------------------------------------------------------------------


class Virsh:
    """virsh against the stack's URI. Once virsh could not connect at all, later queries fail at once
    with that reason instead of each waiting for the daemon again."""

    def __init__(self, host, uri: str):
        self.host, self.uri = host, uri
        self.path = host.which("virsh")
        self.unreachable: str | None = None if self.path else "virsh is missing (package libvirt-clients)"
        self.error = self.unreachable or ""
        """Why the last query failed."""

    def query(self, *args: str) -> str | None:
        if self.unreachable:
            self.error = self.unreachable
            return None
        ran = self.host.run([self.path, "-c", self.uri, *args])
        if ran.returncode != 0:
            self.error = _last_error(ran.stderr) or f"virsh {' '.join(args)} exited {ran.returncode}"
            # virsh says "failed to connect to the hypervisor" before the reason for any connection
            # failure; a timeout or a missing binary (RealHost.run: 124, 127) is as final.
            if ran.returncode in (124, 127) or "failed to connect to the hypervisor" in ran.stderr:
                self.unreachable = self.error
            return None
        return ran.stdout

    def names(self, *args: str) -> list[str] | None:
        out = self.query(*args)
        return None if out is None else [line.strip() for line in out.splitlines() if line.strip()]


def _last_error(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    return lines[-1].removeprefix("error: ") if lines else ""


def is_local(uri: str) -> bool:
    return (urlparse(uri).hostname or "localhost") in ("localhost", "127.0.0.1", "::1")


def is_session(uri: str) -> bool:
    """A per-user daemon (qemu:///session): the VMs run as the operator, no group needed."""
    return urlparse(uri).path.rstrip("/") == "/session"


# --- the checks -----------------------------------------------------------------------------------


def check_pulumi(host, version: str, stack: str) -> Result:
    want = f"v{version}"
    fix = f"make prereqs STACK={stack} (installs the Pulumi CLI {want} into ~/.pulumi)"
    # scripts/pulumi.sh puts ~/.pulumi/bin first on PATH, so that one wins where it exists.
    own = str(host.home / ".pulumi" / "bin" / "pulumi")
    path = own if host.is_executable(own) else host.which("pulumi")
    if not path:
        return failed("pulumi-cli", "no `pulumi` in ~/.pulumi/bin or on PATH", fix)
    ran = host.run([path, "version"])
    found = ran.stdout.strip()
    if ran.returncode != 0:
        return failed("pulumi-cli", f"`{path} version` failed: {_last_error(ran.stderr) or ran.returncode}", fix)
    if found != want:
        return failed("pulumi-cli", f"{path} is {found or 'of no version'}, the program pins {want}", fix)
    return passed("pulumi-cli", f"{path} is {want}")


def check_executables(host, requirements: Iterable[Requirement]) -> list[Result]:
    results = []
    for req in requirements:
        # The provider runs its commands from the Pulumi engine's PATH (the operator's); libvirtd from its own.
        extra = SYSTEM_DIRS if req.run_by == "libvirtd" else ()
        found = host.which(req.command, extra)
        if found:
            results.append(passed(req.command, f"{found} (package {req.package})"))
        else:
            where = "on PATH nor in the system directories" if req.run_by == "libvirtd" else "on PATH"
            results.append(failed(req.command, f"not found {where}; {req.why}", f"sudo apt-get install {req.package}"))
    return results


def check_libvirt_daemon(host, virsh: Virsh, stack: str) -> Result:
    name = "libvirt-daemon"
    if not virsh.path:
        return failed(
            name,
            f"cannot ask libvirtd at {virsh.uri}: virsh is missing",
            "sudo apt-get install libvirt-daemon-system libvirt-clients (or make prereqs STACK=" + stack + ")",
        )
    out = virsh.query("version")
    if out is None:
        error = virsh.error
        # The system socket is for root and group libvirt; where polkit guards it instead, the refusal
        # reads "authentication unavailable: no polkit agent available".
        if "Permission denied" in error or "polkit" in error or "authentication unavailable" in error:
            fix = "join group libvirt (see the libvirt-group line), then log out and back in"
        elif "No such file or directory" in error or "Connection refused" in error:
            fix = "sudo systemctl enable --now libvirtd (package libvirt-daemon-system)"
        else:
            fix = f"check `systemctl status libvirtd` and libvirtUri ({virsh.uri})"
        return failed(name, f"libvirtd does not answer at {virsh.uri}: {error}", fix)
    hypervisor = re.search(r"^Running hypervisor:\s*(.+)$", out, re.MULTILINE)
    return passed(
        name, f"libvirtd answers at {virsh.uri}" + (f" (running hypervisor: {hypervisor[1]})" if hypervisor else "")
    )


def check_libvirt_group(host, uri: str) -> Result:
    name = "libvirt-group"
    relogin = "log out and back in (or `newgrp libvirt`), then run make up again"
    if not is_local(uri):
        return info(name, f"libvirtUri {uri} is another host's daemon: who may use it is set there")
    if is_session(uri):
        return passed(name, f"{uri} is your own per-user daemon: no group needed")
    if host.uid == 0:
        return passed(name, f"running as root, which may use {uri} without a group")
    group = host.group("libvirt")
    if group is None:
        return failed(
            name,
            "this host has no group libvirt (libvirt-daemon-system creates it)",
            f"sudo apt-get install libvirt-daemon-system && sudo usermod -aG libvirt $USER, then {relogin}",
        )
    if group.gid in host.session_gids:
        return passed(name, f"{host.user} is in group libvirt in this session, which may use {uri}")
    if host.user in group.members or host.primary_gid == group.gid:
        return failed(
            name, f"{host.user} is in group libvirt in /etc/group, but this session started before that", relogin
        )
    return failed(
        name,
        f"{host.user} is not in group libvirt, which {uri} requires",
        f"sudo usermod -aG libvirt $USER, then {relogin}",
    )


def _cpu_flags(host) -> set[str]:
    try:
        text = host.read_text("/proc/cpuinfo")
    except OSError:
        return set()
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.partition(":")[2].split())
    return flags


def check_kvm(host, uri: str) -> Result:
    name = "kvm"
    if not is_local(uri):
        return info(name, f"libvirtUri {uri} is another host's daemon: /dev/kvm is checked there")
    if not host.exists("/dev/kvm"):
        flags = _cpu_flags(host) & {"vmx", "svm"}
        if flags:
            module = "kvm_intel" if "vmx" in flags else "kvm_amd"
            return failed(
                name,
                f"no /dev/kvm although the CPU has {'/'.join(sorted(flags))}: the kvm module is not loaded",
                f"sudo modprobe {module} (and look at `dmesg | grep -i kvm` if it refuses)",
            )
        return failed(
            name,
            "no /dev/kvm and the CPU shows no vmx/svm flag: hardware virtualisation is off or hidden",
            "enable VT-x/AMD-V in the firmware settings, or nested virtualisation if this host is itself a VM",
        )
    mode = host.describe("/dev/kvm")
    if host.access("/dev/kvm", os.R_OK | os.W_OK):
        return passed(name, f"/dev/kvm ({mode}) is read/writable by {host.user}")
    if is_session(uri):
        return failed(
            name,
            f"/dev/kvm ({mode}) is not read/writable by {host.user}, and {uri} runs the VMs as you",
            "sudo usermod -aG kvm $USER, then log out and back in",
        )
    # qemu:///system starts QEMU as its own user: libvirt-qemu, whose primary group is kvm, on
    # Debian/Ubuntu (libvirt-daemon-system's postinst), so the operator's access does not matter.
    return passed(name, f"/dev/kvm ({mode}) exists; {uri} runs the VMs as libvirt's QEMU user, not as {host.user}")


def check_apparmor(host, uri: str) -> Result:
    name = "apparmor"
    if not is_local(uri):
        return info(name, f"libvirtUri {uri} is another host's daemon: its AppArmor is its own")
    try:
        enabled = host.read_text("/sys/module/apparmor/parameters/enabled").strip()
    except OSError:
        return info(name, "no AppArmor on this host: libvirt confines the VMs by user and file ownership only")
    if enabled == "Y":
        return passed(
            name,
            "AppArmor is on; libvirt gives each VM a profile of its own (virt-aa-helper) that allows the "
            "disks attached to it, and the stack attaches its disks as files of its pool: keep it on",
        )
    return info(name, f"AppArmor is loaded but off ({enabled}): the VMs run without a profile")


def check_memory(host, settings: Settings, virsh: Virsh) -> Result:
    name = "memory"
    if not is_local(settings.libvirt.uri):
        return info(name, f"libvirtUri {settings.libvirt.uri} is another host's daemon: its memory is checked there")
    try:
        meminfo = host.read_text("/proc/meminfo")
        available_mib = int(re.search(r"^MemAvailable:\s+(\d+) kB", meminfo, re.MULTILINE)[1]) // 1024
    except (OSError, TypeError):
        return failed(name, "cannot read MemAvailable from /proc/meminfo", "run on a Linux host (kernel 3.14 or newer)")
    # A re-run: the stack's running VMs already hold their memory, which MemAvailable no longer counts.
    running = set(virsh.names("list", "--name") or ())
    prefix = resource_prefix(settings)
    sizes = {Role.SERVER: settings.libvirt.server_size, Role.CLIENT: settings.libvirt.client_size}
    pending = {Role.SERVER: 0, Role.CLIENT: 0}
    for node in node_specs(settings).values():
        if f"{prefix}-{node.name}" not in running:
            pending[node.role] += 1
    needed = HOST_RESERVE_MIB + sum(
        count * (sizes[role].memory_mib + QEMU_OVERHEAD_MIB) for role, count in pending.items()
    )
    parts = [
        f"{count} {role.value}(s) x ({sizes[role].memory_mib} + {QEMU_OVERHEAD_MIB} for QEMU)"
        for role, count in pending.items()
        if count
    ]
    how = " + ".join([*parts, f"{HOST_RESERVE_MIB} for the host and Pulumi"])
    already = settings.server_count + settings.client_count - sum(pending.values())
    if already:
        how += f"; {already} of the stack's VMs run already"
    if available_mib >= needed:
        return passed(name, f"{available_mib} MiB available ≥ {needed} MiB needed ({how})")
    return failed(
        name,
        f"{available_mib} MiB available < {needed} MiB needed ({how})",
        f"free memory, or shrink the stack: serverMemoryMib, clientMemoryMib, clientCount "
        f"(e.g. pulumi config set hashistack:clientMemoryMib 2048 --stack {settings.stack})",
    )


def _filesystem_of(host, path: str) -> tuple[str, int, int]:
    """(nearest existing ancestor we may look at, filesystem id, bytes free) for a path that may not exist yet."""
    current = Path(path)
    while True:
        try:
            device, free = host.free_space(str(current))
            return str(current), device, free
        except (FileNotFoundError, PermissionError, NotADirectoryError):
            if current.parent == current:
                raise
            current = current.parent


def _gib(size: int) -> str:
    return f"{size / GIB:.1f} GiB"


def check_disk(host, settings: Settings, virsh: Virsh) -> Result:
    name = "disk"
    lv = settings.libvirt
    servers, clients = settings.server_count, settings.client_count
    needs: list[tuple[str, int, str]] = []  # (path, bytes, what for)
    if lv.base_image.startswith("https://"):
        cached = str(cached_path(lv.base_image, lv.base_image_sha256, cache_dir(host.env)))
        if host.exists(cached):
            image = host.size(cached)
        else:
            image = BASE_IMAGE_ESTIMATE
            needs.append((str(Path(cached).parent), image, "the base image download"))
    else:
        image = host.size(lv.base_image)
    if is_local(lv.uri):
        pool = image + servers * SERVER_DISK_ALLOWANCE + clients * CLIENT_DISK_ALLOWANCE
        needs.append(
            (
                lv.pool_dir,
                pool,
                f"the pool: base image {_gib(image)} + {servers} server(s) x {_gib(SERVER_DISK_ALLOWANCE)} "
                f"+ {clients} client(s) x {_gib(CLIENT_DISK_ALLOWANCE)}",
            )
        )
    # Needs on one filesystem add up.
    by_fs: dict[int, dict] = {}
    for path, size, what in needs:
        try:
            seen, device, free = _filesystem_of(host, path)
        except OSError as error:
            return failed(name, f"cannot find free space for {path}: {error}", "check that the path is usable")
        entry = by_fs.setdefault(device, {"free": free, "needed": 0, "at": [], "for": []})
        entry["needed"] += size
        entry["at"] += [] if seen in entry["at"] else [seen]
        entry["for"].append(f"{what} in {path}")
    if not by_fs:
        return info(name, f"libvirtUri {lv.uri} is another host's daemon: its pool's free space is checked there")
    ceiling = servers * SERVER_DISK_BYTES + clients * CLIENT_DISK_BYTES
    summary = []
    short = []
    for fs in by_fs.values():
        line = (
            f"{_gib(fs['free'])} free on the filesystem of {' and '.join(fs['at'])}, "
            f"{_gib(fs['needed'])} needed for {' and '.join(fs['for'])}"
        )
        summary.append(line)
        if fs["free"] < fs["needed"]:
            short.append(line)
    note = f"; the thin node disks may grow to {ceiling // GIB} GiB in all"
    if not short:
        return passed(name, "; ".join(summary) + note)
    if is_local(lv.uri) and virsh.query("pool-info", resource_prefix(settings)) is not None:
        return info(
            name,
            "; ".join(short)
            + f" — the stack's pool {resource_prefix(settings)} exists already, so part of it is in use",
        )
    return failed(
        name,
        "; ".join(short) + note,
        "free space there, or set libvirtPoolDir to a larger filesystem "
        f"(pulumi config set hashistack:libvirtPoolDir /srv/hashistack --stack {settings.stack})",
    )


def host_routes(host) -> list[tuple[str, ipaddress.IPv4Network]]:
    """(interface, network) of each IPv4 route that is up, from /proc/net/route (little-endian hex)."""
    routes = []
    for line in host.read_text("/proc/net/route").splitlines()[1:]:
        fields = line.split()
        if len(fields) < 8 or not int(fields[3], 16) & RTF_UP:
            continue
        destination = ipaddress.IPv4Address(struct.pack("<I", int(fields[1], 16)))
        mask = ipaddress.IPv4Address(struct.pack("<I", int(fields[7], 16)))
        routes.append((fields[0], ipaddress.IPv4Network(f"{destination}/{mask}", strict=False)))
    return routes


def libvirt_network(xml: str) -> tuple[str | None, list[ipaddress.IPv4Network]]:
    """(bridge name, IPv4 networks) of a `virsh net-dumpxml`."""
    root = ElementTree.fromstring(xml)
    bridge = root.find("bridge")
    networks = []
    for ip in root.findall("ip"):
        if ip.get("family", "ipv4") != "ipv4" or not ip.get("address"):
            continue
        mask = ip.get("prefix") or ip.get("netmask") or "24"  # libvirt's own default for a bare address
        networks.append(ipaddress.IPv4Interface(f"{ip.get('address')}/{mask}").network)
    return (bridge.get("name") if bridge is not None else None), networks


def _free_range(prefixlen: int, taken: Sequence[ipaddress.IPv4Network]) -> ipaddress.IPv4Network | None:
    for space in ("192.168.0.0/16", "10.0.0.0/8", "172.16.0.0/12"):
        base = ipaddress.IPv4Network(space)
        if prefixlen < base.prefixlen:
            continue
        for candidate in itertools.islice(base.subnets(new_prefix=prefixlen), 1, 4096):
            if not any(candidate.overlaps(t) for t in taken):
                return candidate
    return None


def check_network(host, settings: Settings, virsh: Virsh) -> Result:
    name = "network-cidr"
    cidr = settings.network_cidr
    own = resource_prefix(settings)
    local = is_local(settings.libvirt.uri)
    conflicts: list[str] = []
    taken: list[ipaddress.IPv4Network] = []
    unchecked: list[str] = []
    own_found, own_bridge = False, None
    colliding_bridges: set[str] = set()
    names = virsh.names("net-list", "--all", "--name")
    if names is None:
        unchecked.append(f"libvirt's networks could not be listed ({virsh.error})")
    for net in names or ():
        xml = virsh.query("net-dumpxml", net)
        if xml is None:
            unchecked.append(f"libvirt network {net} could not be read ({virsh.error})")
            continue
        bridge, networks = libvirt_network(xml)
        if net == own:  # this stack's own network, from an earlier `up`: no collision
            own_found, own_bridge = True, bridge
            continue
        taken += networks
        overlapping = [n for n in networks if n.overlaps(cidr)]
        conflicts += [f"libvirt network {net} ({n})" for n in overlapping]
        if overlapping and bridge:
            colliding_bridges.add(bridge)  # its route says the same again
    if local:
        try:
            routes = host_routes(host)
        except (OSError, ValueError) as error:
            routes = []
            unchecked.append(f"the host's routes could not be read ({error})")
        for iface, route in routes:
            # The default route says nothing about local ranges; the own network's bridge carries its own range.
            if route.prefixlen == 0 or iface == own_bridge:
                continue
            taken.append(route)
            if route.overlaps(cidr) and iface not in colliding_bridges:
                hint = ""
                if names is None and iface.startswith("virbr"):
                    hint = f" (a libvirt bridge: if it is {own}'s own, libvirt could not say so)"
                conflicts.append(f"the route to {route} on {iface}{hint}")
    if conflicts:
        free = _free_range(cidr.prefixlen, taken)
        return failed(
            name,
            f"networkCidr {cidr} overlaps {'; '.join(conflicts)}",
            f"pulumi config set hashistack:networkCidr {free} --stack {settings.stack} (free here), "
            "or remove what uses the range"
            if free
            else "choose a private range that nothing on this host uses",
        )
    clear = "no route of this host and no other libvirt network" if local else "no other libvirt network"
    if not local:
        clear += f" (libvirtUri {settings.libvirt.uri} is another host's daemon: its routes are checked there)"
    if own_found:
        clear += f"; the stack's own network {own} exists" + (f" on {own_bridge}" if own_bridge else "")
    if unchecked:
        return info(name, f"networkCidr {cidr} overlaps nothing seen, but {'; '.join(unchecked)}")
    return passed(name, f"networkCidr {cidr} overlaps {clear}")


_CONFIG_KEYS = {
    "consul": "consulVersion",
    "nomad": "nomadVersion",
    "vault": "vaultVersion",
    "consul-cni": "consulCniVersion",
}


def wanted_packages(settings: Settings) -> dict[str, str]:
    """Package -> exact version, as cloudinit/hashistack-bootstrap.sh install_hashicorp_packages pins them."""
    v = settings.versions
    wanted = {"consul": v.consul, "nomad": v.nomad, "vault": v.vault}
    if settings.client_count:
        wanted["consul-cni"] = v.consul_cni
    return {package: version + PACKAGE_REVISION for package, version in wanted.items()}


def package_versions(index: str, packages: Iterable[str]) -> dict[str, set[str]]:
    """Package -> versions listed in a Debian `Packages` index, for the packages asked about."""
    wanted = set(packages)
    found: dict[str, set[str]] = {p: set() for p in wanted}
    package = None
    for line in index.splitlines():
        if line.startswith("Package:"):
            package = line.partition(":")[2].strip()
        elif line.startswith("Version:") and package in wanted:
            found[package].add(line.partition(":")[2].strip())
        elif not line.strip():
            package = None
    return found


def _newest(versions: Iterable[str]) -> str | None:
    releases = [v for v in versions if re.fullmatch(r"\d+\.\d+\.\d+-\d+", v)]
    return max(releases, key=lambda v: tuple(int(n) for n in re.findall(r"\d+", v)), default=None)


def check_package_source(host, settings: Settings) -> Result:
    name = "package-source"
    release = RELEASES[settings.node_os].codename
    base = f"{settings.package_source.apt_url}/dists/{release}/main/binary-{NODE_ARCH}"
    tried, index, url = [], None, None
    for file in ("Packages.gz", "Packages"):
        url = f"{base}/{file}"
        try:
            raw = host.fetch(url)
        except FetchError as error:
            tried.append(f"{url}: {error.reason}")
            if error.status == 404:  # a repository may publish only one of the two
                continue
            break
        try:
            index = (gzip.decompress(raw) if file.endswith(".gz") else raw).decode("utf-8", "replace")
        except (OSError, EOFError, zlib.error) as error:
            tried.append(f"{url}: not a gzip file ({error})")
            continue
        break
    if index is None:
        if len(tried) == 2 and all(": HTTP 404 " in t or ": not a gzip file" in t for t in tried):
            return failed(
                name,
                f"no {release}/main {NODE_ARCH} package index at hashicorpAptUrl: tried {'; '.join(tried)}",
                f"point hashicorpAptUrl at a repository that serves dists/{release}/main, "
                "like https://apt.releases.hashicorp.com",
            )
        if settings.platform is Platform.AWS:
            return info(name, f"not checked from this host (the nodes fetch from AWS): tried {'; '.join(tried)}")
        return failed(
            name,
            f"cannot get the package index: tried {'; '.join(tried)}; the nodes download their packages "
            "through this host's NAT (no proxy), so they would fail the same way",
            "check this host's network and DNS, or set hashicorpAptUrl to a mirror it reaches",
        )
    wanted = wanted_packages(settings)
    versions = package_versions(index, wanted)
    missing = []
    fixes = []
    for package, version in wanted.items():
        if version in versions[package]:
            continue
        newest = _newest(versions[package])
        missing.append(f"{package}={version}" + (f" (newest there: {newest})" if newest else " (no such package)"))
        if newest:
            fixes.append(
                f"pulumi config set hashistack:{_CONFIG_KEYS[package]} {newest.removesuffix(PACKAGE_REVISION)} "
                f"--stack {settings.stack}"
            )
    if missing:
        return failed(
            name,
            f"{url} lacks {', '.join(missing)}",
            " && ".join(fixes) if fixes else "point hashicorpAptUrl at a repository with these packages",
        )
    return passed(name, f"{', '.join(f'{p}={v}' for p, v in wanted.items())} listed in {url}")


def check_cni_plugins(host, settings: Settings) -> Result:
    """The clients' CNI release at cniPluginsUrl: its `<tarball>.sha256` must be there and name the
    tarball, since the boot script downloads both and runs `sha256sum -c` (hashistack-bootstrap.sh,
    install_cni_plugins)."""
    name = "cni-plugins"
    version = settings.versions.cni_plugins
    tarball = f"cni-plugins-linux-{NODE_ARCH}-v{version}.tgz"
    url = f"{settings.package_source.cni_plugins_url}/v{version}/{tarball}.sha256"
    try:
        text = host.fetch(url).decode("utf-8", "replace")
    except FetchError as error:
        if error.status == 404:
            return failed(
                name,
                f"no CNI plugins v{version} at cniPluginsUrl: {url}: {error.reason}",
                "set cniPluginsVersion to a release that exists there, or point cniPluginsUrl at a mirror of "
                "https://github.com/containernetworking/plugins/releases/download",
            )
        if settings.platform is Platform.AWS:
            return info(name, f"not checked from this host (the nodes fetch from AWS): {url}: {error.reason}")
        return failed(
            name,
            f"cannot get {url}: {error.reason}; the clients download it through this host's NAT (no proxy)",
            "check this host's network and DNS, or set cniPluginsUrl to a mirror it reaches",
        )
    if not re.fullmatch(rf"[0-9a-f]{{64}} [ *]{re.escape(tarball)}", text.strip()):
        return failed(
            name,
            f"{url} is not a SHA-256 line for {tarball} (`<hash>  {tarball}`, as sha256sum -c reads): {text[:80]!r}",
            "point cniPluginsUrl at a mirror that keeps each release's .sha256 files unchanged",
        )
    return passed(name, f"{tarball} and its SHA-256 at {url}")


def run_checks(host, settings: Settings, pulumi_version: str, requirements: Sequence[Requirement]) -> list[Result]:
    results = [check_pulumi(host, pulumi_version, settings.stack)]
    if settings.platform is Platform.LIBVIRT:
        virsh = Virsh(host, settings.libvirt.uri)
        results += check_executables(host, requirements)
        results += [
            check_libvirt_daemon(host, virsh, settings.stack),
            check_libvirt_group(host, settings.libvirt.uri),
            check_kvm(host, settings.libvirt.uri),
            check_apparmor(host, settings.libvirt.uri),
            check_memory(host, settings, virsh),
            check_disk(host, settings, virsh),
            check_network(host, settings, virsh),
        ]
    results.append(check_package_source(host, settings))
    results.append(check_cni_plugins(host, settings))
    return results


def summary(stack: str, results: Sequence[Result], requirements: Sequence[Requirement]) -> str:
    counts = {s: sum(r.status == s for r in results) for s in ("FAIL", "PASS", "INFO")}
    head = f"check-host {stack}: {counts['FAIL']} FAIL, {counts['PASS']} PASS, {counts['INFO']} INFO"
    if not counts["FAIL"]:
        return f"{head} — this host can run `make up STACK={stack}`"
    commands = {r.command: r.package for r in requirements}
    packages = sorted({commands[r.name] for r in results if r.status == "FAIL" and r.name in commands})
    install = f" (`make prereqs STACK={stack}` installs {' '.join(packages)})" if packages else ""
    return f"{head} — fix the FAIL lines{install}, then run `make up STACK={stack}` again"


def pinned_sdk_version() -> str:
    """The Pulumi SDK pinned in requirements.txt: the CLI release the Makefile installs matches it."""
    found = re.search(r"^pulumi==(\S+)$", (ROOT / "requirements.txt").read_text(), re.MULTILINE)
    if not found:
        raise SystemExit("requirements.txt pins no pulumi==VERSION; pass --pulumi-version")
    return found[1]


def main(argv: Sequence[str] | None = None, host=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack", required=True, help="the stack to check the host for, e.g. dev")
    parser.add_argument("--pulumi-version", help="the CLI version the program pins (default: requirements.txt's SDK)")
    args = parser.parse_args(argv)
    requirements = load_requirements()
    try:
        settings = stack_settings(args.stack)
    except SettingsError as error:
        print(f"FAIL settings: {error} — fix: correct Pulumi.{args.stack}.yaml")
        return 1
    results = run_checks(host or RealHost(), settings, args.pulumi_version or pinned_sdk_version(), requirements)
    for result in results:
        print(result.line())
    print(summary(args.stack, results, requirements))
    return 1 if any(r.status == "FAIL" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
