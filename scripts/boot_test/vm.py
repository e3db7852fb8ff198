"""One QEMU virtual machine of the boot test: a copy-on-write disk over the cached image, the node's
NoCloud seed, QEMU's user network shaped like the dev stack's libvirt network, the serial console
in a file, SSH forwarded from a local port."""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

QEMU = "qemu-system-x86_64"
CONSOLE_VERDICT = re.compile(r"^hashistack-bootstrap: (done|FAILED .*)$", re.MULTILINE)
PROBE_SECONDS = 20


@dataclass(frozen=True)
class Image:
    rootfs: Path
    kernel: Path
    initrd: Path
    package_ca: Path
    """The directory of the CA the image trusts for the boot test's package server (ca.pem, ca.key)."""
    format: str = "raw"
    """The root disk's format: raw for the debootstrap image, qcow2 for the baked one."""


def dns_address(network: ipaddress.IPv4Network) -> ipaddress.IPv4Address:
    """Where QEMU's user network answers DNS ("DNS must be different from host", net/slirp.c)."""
    return network[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def kvm_usable(image: Image, work: Path) -> bool:
    """KVM only if a probe boot answers: the kernel prints its banner and QEMU exits (an initrd with
    no init panics, and -no-reboot turns the reboot into an exit). /dev/kvm can exist and hang."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False
    console = work / "kvm-probe.log"
    command = [QEMU, "-accel", "kvm", "-m", "256", "-display", "none", "-no-reboot", "-serial", f"file:{console}",
               "-kernel", str(image.kernel), "-append", "console=ttyS0 rdinit=/nonexistent panic=-1"]  # fmt: skip
    try:
        subprocess.run(command, timeout=PROBE_SECONDS, capture_output=True, check=False)
    except subprocess.TimeoutExpired:
        return False
    return console.exists() and "Linux version" in console.read_text(errors="replace")


def seed_iso(directory: Path, files: dict[str, str]) -> Path:
    """The NoCloud seed: a volume labelled `cidata` with user-data, meta-data, network-config and
    vendor-data (cloud-init's NoCloud datasource reads these names)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (directory / name).write_text(content)
    iso = directory.with_suffix(".iso")
    subprocess.run(["genisoimage", "-quiet", "-output", str(iso), "-volid", "cidata", "-joliet", "-rock", *files],
                   cwd=directory, check=True)  # fmt: skip
    return iso


class Machine:
    def __init__(self, name: str, image: Image, work: Path, network: ipaddress.IPv4Network, address: str, kvm: bool,
                 memory_mib: int, vcpus: int):  # fmt: skip
        self.name = name
        self.console = work / f"{name}.console.log"
        self.disk = work / f"{name}.qcow2"
        self.ssh_port = free_port()
        self.started = 0.0
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", image.format, "-b", str(image.rootfs),
                        str(self.disk)], check=True)  # fmt: skip
        # The user network has the libvirt network's addresses: its first host address routes, as in
        # the libvirt network-config. QEMU refuses to resolve on that same address, so DNS is on the
        # second one (dns_address), which the boot test writes into the network-config instead. SSH
        # is forwarded to the node's fixed address (QEMU's default is the address its DHCP would give).
        netdev = (f"user,id=net0,net={network},host={network[1]},dns={dns_address(network)},"
                  f"hostfwd=tcp:127.0.0.1:{self.ssh_port}-{address}:22")  # fmt: skip
        self.command = [QEMU, "-machine", "q35", "-accel", "kvm" if kvm else "tcg", "-cpu", "host" if kvm else "max",
                        "-smp", str(vcpus), "-m", str(memory_mib), "-display", "none", "-no-reboot",
                        "-serial", f"file:{self.console}", "-kernel", str(image.kernel), "-initrd", str(image.initrd),
                        "-append", "root=LABEL=root rw console=ttyS0",
                        "-drive", f"file={self.disk},if=virtio,format=qcow2",
                        "-netdev", netdev, "-device", "virtio-net-pci,netdev=net0"]  # fmt: skip
        self.process: subprocess.Popen | None = None

    def boot(self, seed: Path) -> None:
        self.command += ["-drive", f"file={seed},if=virtio,format=raw,readonly=on"]
        self.started = time.monotonic()
        self.process = subprocess.Popen(self.command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def console_text(self) -> str:
        return self.console.read_text(errors="replace") if self.console.exists() else ""

    def wait_for_verdict(self, timeout: float) -> str | None:
        """The boot script's last console line ("hashistack-bootstrap: done" or "... FAILED ..."), or
        None when QEMU exits or `timeout` passes first."""
        deadline = self.started + timeout
        while time.monotonic() < deadline:
            found = CONSOLE_VERDICT.search(self.console_text())
            if found:
                return found.group(0)
            if self.process and self.process.poll() is not None:
                return None
            time.sleep(2)
        return None

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class Ssh:
    """Commands on the VM as the image's default user (cloud-init's `debian`, with sudo) with the
    boot test's own key, which the node's user-data authorises (sshAuthorizedKeys)."""

    def __init__(self, key: Path, port: int):
        self.base = ["ssh", "-i", str(key), "-p", str(port), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
                     "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=5",
                     "debian@127.0.0.1"]  # fmt: skip

    def wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if subprocess.run([*self.base, "true"], capture_output=True, check=False).returncode == 0:
                return True
            time.sleep(3)
        return False

    def run(self, command: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([*self.base, command], input=stdin, capture_output=True, text=True, check=False,
                              timeout=120)  # fmt: skip


def ssh_key(directory: Path) -> tuple[Path, str]:
    key = directory / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "hashistack-boot-test", "-f", str(key)],
                   check=True)  # fmt: skip
    return key, key.with_suffix(".pub").read_text().strip()


HOST_TOOLS = Path(__file__).with_name("host-tools.tsv")


def host_tools() -> dict[str, str]:
    """Executable (or file) -> the Debian package that provides it (host-tools.tsv)."""
    rows = (line.split("\t") for line in HOST_TOOLS.read_text().splitlines() if line and not line.startswith("#"))
    return {command: package for command, package in rows}


def missing_tools() -> list[str]:
    """The Debian packages of the host tools that are not installed."""

    def present(tool: str) -> bool:
        return Path(tool).exists() if tool.startswith("/") else bool(shutil.which(tool))

    return sorted({package for tool, package in host_tools().items() if not present(tool)})
