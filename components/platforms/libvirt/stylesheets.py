"""The XSLT stylesheets the libvirt provider applies to the XML it generates, filled in for this host.

terraform-provider-libvirt v0.8.1 (libvirt/utils_xslt.go transformXML) runs the text given as
`xml.xslt` through `xsltproc --nomkdir --nonet --nowrite` before it defines a pool, a volume or a
domain. The stylesheets live in libvirt/*.xsl; the values only this host knows replace placeholders
in them here, XML-escaped, as the text of an `xsl:variable` (so a `{` in a path stays a character).
Changing any of them replaces the resource (every `xml.xslt` in v0.8.1 is ForceNew).

The console log scheme (for a local `qemu:///system`): each domain's serial console is also logged to
a file that the operator owns. libvirt's QEMU driver has virtlogd, running as root, write chardev
logs by default (libvirt v9.0.0 src/qemu/qemu_conf.c: stdio_handler "logd"; src/qemu/qemu_process.c
qemuProcessPrepareHostBackendChardevFileHelper). virtlogd opens the file with O_CREAT|O_APPEND and
keeps an existing file's owner and mode, but makes a missing one root's, mode 0600, and with
append="off" deletes the file first (src/logging/log_handler.c DEFAULT_MODE,
src/util/virrotatingfile.c virRotatingFileWriterNew). Neither the DAC driver nor AppArmor's helper
touches chardev log files (src/security/security_dac.c, src/security/virt-aa-helper.c), and QEMU only
gets a pipe. Hence: the operator creates the file before the domain starts, and the domain appends
to it. virtlogd rolls a log over at 2 MiB (virtlogd.conf max_size; src/logging/log_daemon_config.c):
the full file keeps its owner as <log>.0, the new one is root's, so a console past 2 MiB is the
operator's to read only up to there.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
from collections.abc import Mapping
from pathlib import Path
from xml.sax.saxutils import escape

import pulumi

from components import CHECKOUT
from components.platforms.libvirt.user_dirs import user_dir

STYLESHEETS = CHECKOUT / "libvirt"
QEMU_USER = "libvirt-qemu"
"""The user QEMU runs as on Debian and Ubuntu (libvirt's Debian packaging: debian/rules -Dqemu_user)."""
QEMU_GROUP = "libvirt-qemu"
"""A group every QEMU process of the system instance is in, on Debian and Ubuntu alike.

QEMU runs with the configured group plus all of its user's groups (libvirt v9.0.0
src/util/virutil.c virGetGroupList: getgrouplist of the user's primary group, plus the configured
gid; src/util/vircommand.c virExec). Debian configures `libvirt-qemu` (debian/rules
-Dqemu_group=libvirt-qemu in 9.0.0-4+deb12u2 and 11.3.0-3+deb13u3), Ubuntu `kvm` ("Set qemu-group to
kvm", Ubuntu's libvirt 6.0.0-0ubuntu1 changelog). Both packagings' postinst create the user with
primary group `kvm` and the group `libvirt-qemu` with the user as its only member (Debian
libvirt-daemon-system 9.0.0-4+deb12u2; Ubuntu's 6.0.0 packaging alike), so QEMU is in both groups
either way. `libvirt-qemu` is the tighter: people join `kvm` for /dev/kvm.
"""
_PLACEHOLDER = re.compile(r"__[A-Z_]+__")
# Control characters (most of which XML 1.0 cannot carry, and a newline it would not keep as is) and
# the surrogates of undecodable file names.
_NOT_XML = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff\ufffe\uffff]")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class QemuGroupError(pulumi.RunError):
    """QEMU's group is missing on this host, or QEMU's user is not in it."""


class ConsoleLogError(pulumi.RunError):
    """A console log file this user cannot keep reading."""


def qemu_group_gid(group: str = QEMU_GROUP, user: str = QEMU_USER) -> int:
    """The gid of `group`, checked to be one QEMU (running as `user`) is in: the pool directory is
    0710 root:`group`, so QEMU could not open its disks otherwise. This host's groups, so for a
    local libvirt URI only."""
    try:
        entry = grp.getgrnam(group)
    except KeyError:
        raise QemuGroupError(
            f"the group {group!r} does not exist on this host. It is created by libvirt's package "
            f"(libvirt-daemon-system, or libvirt-daemon-driver-qemu): run scripts/install-host.sh, "
            f"then check with `getent group {group}`."
        ) from None
    try:
        primary = pwd.getpwnam(user).pw_gid
    except KeyError:
        raise QemuGroupError(
            f"QEMU's user {user!r} does not exist on this host: install libvirt (scripts/install-host.sh)."
        ) from None
    if primary != entry.gr_gid and user not in entry.gr_mem:
        raise QemuGroupError(
            f"QEMU's user {user!r} is not in the group {group!r}, so QEMU could not enter the storage "
            f"pool's directory (mode 0710, group {group}): run `sudo adduser {user} {group}`."
        )
    return entry.gr_gid


def _fill(stylesheet: str, values: dict[str, str]) -> str:
    text = (STYLESHEETS / stylesheet).read_text()
    for placeholder, value in values.items():
        if text.count(placeholder) != 1:
            raise RuntimeError(f"libvirt/{stylesheet} must hold {placeholder} once")
        text = text.replace(placeholder, escape(value))
    left = _PLACEHOLDER.findall(text)
    if left:
        raise RuntimeError(f"libvirt/{stylesheet}: {left} not filled in")
    return text


def _absolute_path(what: str, path: str) -> str:
    if not path.startswith("/") or _NOT_XML.search(path):
        raise ValueError(f"{what} must be an absolute path without control characters, not {path!r}")
    return path.rstrip("/") or "/"


def pool_xslt(qemu_gid: int) -> str:
    """The storage pool: directory 0710, owner root, group `qemu_gid` (qemu_group_gid()).

    Why the directory and not the files: terraform-provider-libvirt v0.8.1 creates every volume mode
    644 (libvirt/volume_def.go newDefVolume), and its cloud-init disk has no `xml` hook to change that
    (libvirt/resource_libvirt_cloud_init.go, libvirt/cloudinit_def.go UploadIso), so the ISO with the
    node's secrets is readable by whoever may enter the directory. libvirt applies these permissions
    to an existing directory too (libvirt v9.0.0 src/storage/storage_util.c
    virStorageBackendBuildLocal) and parses the mode as octal (src/conf/storage_conf.c).
    """
    if isinstance(qemu_gid, bool) or not isinstance(qemu_gid, int) or qemu_gid < 0:
        raise ValueError(f"a gid is a non-negative integer, not {qemu_gid!r}")
    return _fill("pool.xsl", {"__QEMU_GID__": str(qemu_gid)})


def volume_xslt() -> str:
    """A node's disk volume: mode 0600 instead of the provider's 644 (terraform-provider-libvirt
    v0.8.1 libvirt/volume_def.go newDefVolume; applied in libvirt/resource_libvirt_volume.go
    resourceLibvirtVolumeCreate). The volume is created by root; libvirt gives it to QEMU's user while
    the VM runs (DAC driver, dynamic_ownership)."""
    return _fill("volume.xsl", {})


def domain_xslt(pool_dir: str, console_log: str | None) -> str:
    """A node's domain: its volume disks named by path in `pool_dir` (the pool's target path, where a
    dir pool keeps volume NAME as `pool_dir/NAME`), and its serial console logged to `console_log`
    (None: not logged, e.g. for a libvirt on another host, where the operator cannot create the file).

    terraform-provider-libvirt v0.8.1 writes `<disk type="volume">` (libvirt/domain.go setDisks),
    which AppArmor hosts refuse (dmacvicar/terraform-provider-libvirt#1163, #1354); a file disk is
    read back as the same volume_id (libvirt/resource_libvirt_domain.go resourceLibvirtDomainRead:
    StorageVolLookupByPath, whose key is the path), so the state does not drift. The provider does
    not read consoles back at all. `console_log` must exist, owned by the operator, before the domain
    starts (prepare_console_log): see this module's docstring.
    """
    return _fill(
        "domain.xsl",
        {
            "__POOL_DIR__": _absolute_path("the pool directory", pool_dir),
            "__CONSOLE_LOG__": "" if console_log is None else _absolute_path("the console log", console_log),
        },
    )


def console_log_path(stack: str, node: str, environ: Mapping[str, str] | None = None) -> Path:
    """$XDG_STATE_HOME/hashistack/<stack>/console/<node>.log, else under ~/.local/state
    (components/platforms/libvirt/user_dirs.py): the operator's own directory, outside the checkout (a VM autostarted at
    boot fails to start when its log's directory is gone), readable while the VM runs."""
    for what, name in (("stack", stack), ("node", node)):
        if not _NAME.match(name):
            raise ValueError(f"the {what} name {name!r} is not a plain file name")
    return user_dir("XDG_STATE_HOME", ".local/state", environ) / "hashistack" / stack / "console" / f"{node}.log"


def prepare_console_log(path: Path) -> None:
    """Creates the console log (empty, 0600) and its directory (0700) as this user, or checks that the
    existing one is still this user's: virtlogd appends to it as it is, but creates a missing one as
    root's 0600 file, which this user could not read."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError:  # not allowed, or a symbolic link (O_NOFOLLOW): not a file of this user's
        fd = None
    if fd is not None:
        try:
            owner = os.fstat(fd).st_uid
        finally:
            os.close(fd)
        if owner == os.getuid():
            return
    raise ConsoleLogError(
        f"the console log {path} is not yours (virtlogd made it when the VM started without it): "
        f"run `sudo chown {os.getuid()} {path}`, then `pulumi up` again."
    )
