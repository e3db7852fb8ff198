"""The stylesheets of libvirt/*.xsl, run as the libvirt provider runs them, on the XML it generates.

terraform-provider-libvirt v0.8.1 (libvirt/utils_xslt.go transformXML) writes the stylesheet, trimmed,
and its XML to files and runs `xsltproc --nomkdir --nonet --nowrite <xsl> <xml>`; so does `_transform`.
The samples below are what v0.8.1 sends for this program's resources: the structs its code builds,
marshalled by libvirt.org/go/libvirtxml v1.10007.0 (its go.mod) with its indentation (libvirt/utils.go
xmlMarshallIndented). Only host-chosen values (machine type, MAC address, sizes) are examples. The
results are checked against libvirt's own RelaxNG schemas (Debian's libvirt0 ships them).
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from components.platforms.libvirt import stylesheets as libvirt_xml
from components.platforms.libvirt.stylesheets import (
    ConsoleLogError,
    QemuGroupError,
    console_log_path,
    domain_xslt,
    pool_xslt,
    prepare_console_log,
    qemu_group_gid,
    volume_xslt,
)

SCHEMAS = Path("/usr/share/libvirt/schemas")
POOL_DIR = "/var/lib/libvirt/hashistack/dev"
CONSOLE_LOG = "/home/operator/.local/state/hashistack/dev/console/server-1.log"

# libvirt/resource_libvirt_pool.go resourceLibvirtPoolCreate: type, name and target path.
POOL_XML = """\
  <pool type="dir">
      <name>hashistack-dev</name>
      <target>
          <path>/var/lib/libvirt/hashistack/dev</path>
      </target>
  </pool>"""

# libvirt/resource_libvirt_volume.go resourceLibvirtVolumeCreate with size and base_volume_id, over
# libvirt/volume_def.go newDefVolume (mode 644) and newDefBackingStoreFromLibvirt.
DISK_VOLUME_XML = """\
  <volume>
      <name>hashistack-dev-server-1.qcow2</name>
      <capacity unit="bytes">21474836480</capacity>
      <target>
          <format type="qcow2"></format>
          <permissions>
              <mode>644</mode>
          </permissions>
      </target>
      <backingStore>
          <path>/var/lib/libvirt/hashistack/dev/hashistack-dev-ubuntu-24.04.qcow2</path>
          <format type="qcow2"></format>
      </backingStore>
  </volume>"""

# The same with `source` (the base image): capacity in "B", the image's size.
BASE_VOLUME_XML = """\
  <volume>
      <name>hashistack-dev-ubuntu-24.04.qcow2</name>
      <capacity unit="B">3758096384</capacity>
      <target>
          <format type="qcow2"></format>
          <permissions>
              <mode>644</mode>
          </permissions>
      </target>
  </volume>"""

# libvirt/domain_def.go newDomainDef and newDomainDefForConnection, then resourceLibvirtDomainCreate
# (libvirt/resource_libvirt_domain.go): cpu, memory, vcpu, type kvm, and `arch` and `emulator` set to
# the unset attributes' "" (no arch, no <emulator>); libvirt/domain.go setConsoles (pty without
# source_path: no source, no type), setDisks over libvirt/disk_def.go newDefDisk (qcow2 driver from the
# volume's format, pool and volume source), setCloudinit (newDiskForCloudInit: the ISO by path, serial
# "cloudinit") and setNetworkInterfaces (network_id).
DOMAIN_XML = """\
  <domain type="kvm">
      <name>hashistack-dev-server-1</name>
      <memory unit="MiB">4096</memory>
      <vcpu>2</vcpu>
      <os>
          <type machine="pc-i440fx-7.2">hvm</type>
      </os>
      <features>
          <pae></pae>
          <acpi></acpi>
          <apic></apic>
      </features>
      <cpu mode="host-passthrough"></cpu>
      <devices>
          <disk type="volume" device="disk">
              <driver name="qemu" type="qcow2"></driver>
              <source pool="hashistack-dev" volume="hashistack-dev-server-1.qcow2"></source>
              <target dev="vda" bus="virtio"></target>
          </disk>
          <disk type="file" device="cdrom">
              <driver name="qemu" type="raw"></driver>
              <source file="/var/lib/libvirt/hashistack/dev/hashistack-dev-server-1-cloudinit.iso"></source>
              <target dev="hdd" bus="ide"></target>
              <serial>cloudinit</serial>
          </disk>
          <interface type="network">
              <mac address="52:54:00:6C:3C:01"></mac>
              <source network="hashistack-dev"></source>
              <model type="virtio"></model>
          </interface>
          <console>
              <target type="serial" port="0"></target>
          </console>
          <channel type="unix">
              <target type="virtio" name="org.qemu.guest_agent.0"></target>
          </channel>
          <graphics type="spice" autoport="yes"></graphics>
          <rng model="virtio">
              <backend model="random">/dev/urandom</backend>
          </rng>
      </devices>
  </domain>"""


def _tool(name: str) -> str:
    found = shutil.which(name)
    assert found, f"{name} is missing: scripts/install-test-tools.sh installs it (Debian)"
    return found


def _transform(tmp_path: Path, xslt: str, xml: str) -> ET.Element:
    """terraform-provider-libvirt v0.8.1 libvirt/utils_xslt.go transformXML, then a parse."""
    stylesheet, document = tmp_path / "stylesheet.xsl", tmp_path / "document.xml"
    stylesheet.write_text(xslt.strip())
    document.write_text(xml)
    result = subprocess.run(
        [_tool("xsltproc"), "--nomkdir", "--nonet", "--nowrite", str(stylesheet), str(document)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    (tmp_path / "result.xml").write_text(result.stdout)
    return ET.fromstring(result.stdout)


def _validate(tmp_path: Path, schema: str) -> None:
    """libvirt's RelaxNG schema (libvirt v9.0.0 src/conf/schemas, as Debian's libvirt0 installs it)."""
    rng = SCHEMAS / f"{schema}.rng"
    assert rng.exists(), f"{rng} is missing: scripts/install-test-tools.sh installs libvirt0 (Debian)"
    result = subprocess.run(
        [_tool("xmllint"), "--noout", "--relaxng", str(rng), str(tmp_path / "result.xml")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


def _disks(domain: ET.Element) -> dict[str, ET.Element]:
    return {disk.get("device"): disk for disk in domain.iter("disk")}


def test_the_disk_becomes_its_file_in_the_pool_directory(tmp_path):
    """dmacvicar/terraform-provider-libvirt#1163 and #1354: AppArmor hosts refuse the provider's
    `<disk type="volume">` (libvirt/domain.go setDisks, v0.8.1); a file disk in the pool's directory is
    what a dir pool's volume is (libvirt v9.0.0 src/storage/storage_util.c: target path = pool path/name),
    and the provider reads it back as its volume_id (libvirt/resource_libvirt_domain.go
    resourceLibvirtDomainRead: StorageVolLookupByPath)."""
    domain = _transform(tmp_path, domain_xslt(POOL_DIR, CONSOLE_LOG), DOMAIN_XML)
    disk = _disks(domain)["disk"]
    assert disk.attrib == {"type": "file", "device": "disk"}
    assert disk.find("source").attrib == {"file": f"{POOL_DIR}/hashistack-dev-server-1.qcow2"}
    assert disk.find("driver").attrib == {"name": "qemu", "type": "qcow2"}
    assert disk.find("target").attrib == {"dev": "vda", "bus": "virtio"}
    assert [child.tag for child in disk] == ["driver", "source", "target"]


def test_the_cloud_init_disk_and_the_rest_of_the_domain_stay_as_they_were(tmp_path):
    """terraform-provider-libvirt v0.8.1 libvirt/domain.go newDiskForCloudInit: the ISO is already a
    file disk, and the provider finds it again by its serial "cloudinit"; everything but the volume disk
    and the console comes through unchanged."""
    domain = _transform(tmp_path, domain_xslt(POOL_DIR, CONSOLE_LOG), DOMAIN_XML)
    before = ET.fromstring(DOMAIN_XML)

    def canonical(element: ET.Element) -> str:
        return ET.canonicalize(ET.tostring(element), strip_text=True)

    assert canonical(_disks(domain)["cdrom"]) == canonical(_disks(before)["cdrom"])
    changed = {"disk", "console"}
    assert [canonical(e) for e in domain.find("devices") if e.tag not in changed] == [
        canonical(e) for e in before.find("devices") if e.tag not in changed
    ]
    assert [canonical(e) for e in domain if e.tag != "devices"] == [canonical(e) for e in before if e.tag != "devices"]


def test_the_serial_console_is_a_pty_logged_to_the_operator_file(tmp_path):
    """libvirt v9.0.0 src/qemu/qemu_process.c qemuProcessPrepareHostBackendChardevFileHelper: with
    append "on" virtlogd opens the file without truncating; absent or "off" it deletes it first
    (src/util/virrotatingfile.c virRotatingFileWriterNew) and makes a new one of root's 0600
    (src/logging/log_handler.c DEFAULT_MODE). A console without a type is a pty to libvirt
    (src/conf/domain_conf.c virDomainChrDefParseXML), which its schema wants written out."""
    domain = _transform(tmp_path, domain_xslt(POOL_DIR, CONSOLE_LOG), DOMAIN_XML)
    (console,) = domain.iter("console")
    assert console.get("type") == "pty"
    assert console.find("target").attrib == {"type": "serial", "port": "0"}
    assert console.find("log").attrib == {"file": CONSOLE_LOG, "append": "on"}
    assert console.find("source") is None


def test_a_console_without_a_log_path_is_not_logged(tmp_path):
    """For a libvirt on another host, whose files the operator cannot create."""
    domain = _transform(tmp_path, domain_xslt(POOL_DIR, None), DOMAIN_XML)
    (console,) = domain.iter("console")
    assert console.find("log") is None
    assert console.get("type") == "pty"
    assert _disks(domain)["disk"].get("type") == "file"
    _validate(tmp_path, "domain")


def test_the_domain_is_still_libvirt_xml(tmp_path):
    """libvirt v9.0.0 src/conf/schemas/domain.rng, on the transformed domain."""
    _transform(tmp_path, domain_xslt(POOL_DIR, CONSOLE_LOG), DOMAIN_XML)
    _validate(tmp_path, "domain")


@pytest.mark.parametrize(
    "pool_dir, console_log",
    [
        ("/srv/a&b <c> 'd\" {e}", "/home/o&p/{x}/<y>'z\".log"),
        ("/srv/pool/", "/tmp/console.log"),
    ],
)
def test_paths_arrive_as_written(tmp_path, pool_dir, console_log):
    """The paths are XML-escaped text of an xsl:variable, so neither XML nor XSLT's attribute value
    templates (`{...}`) read anything into them; a trailing slash is dropped, as libvirt drops it from a
    pool's path (src/util/virfile.c virFileSanitizePath)."""
    domain = _transform(tmp_path, domain_xslt(pool_dir, console_log), DOMAIN_XML)
    assert _disks(domain)["disk"].find("source").get("file") == f"{pool_dir.rstrip('/')}/hashistack-dev-server-1.qcow2"
    assert domain.find("devices/console/log").get("file") == console_log


@pytest.mark.parametrize("path", ["relative/dir", "", "/srv/new\nline", "/srv/\x00", "/srv/\udcff"])
def test_paths_that_libvirt_could_not_take_are_refused(path):
    with pytest.raises(ValueError, match="absolute path"):
        domain_xslt(path, CONSOLE_LOG)
    with pytest.raises(ValueError, match="absolute path"):
        domain_xslt(POOL_DIR, path)


def test_the_pool_directory_is_root_s_and_qemu_s_group_s_only(tmp_path):
    """libvirt v9.0.0 src/storage/storage_util.c virStorageBackendBuildLocal: the pool's permissions
    apply to the directory it builds, or finds; src/conf/schemas/storagepool.rng."""
    pool = _transform(tmp_path, pool_xslt(64055), POOL_XML)
    target = pool.find("target")
    assert target.find("path").text == POOL_DIR
    permissions = target.findall("permissions")
    assert len(permissions) == 1
    assert {e.tag: e.text for e in permissions[0]} == {"mode": "0710", "owner": "0", "group": "64055"}
    assert pool.get("type") == "dir" and pool.find("name").text == "hashistack-dev"
    _validate(tmp_path, "storagepool")


@pytest.mark.parametrize("gid", [-1, "64055", True, 1.5])
def test_a_gid_is_a_number(gid):
    with pytest.raises(ValueError, match=rf"a gid is a non-negative integer, not {gid!r}"):
        pool_xslt(gid)


def test_paths_name_themselves_when_refused():
    with pytest.raises(ValueError, match=r"^the pool directory must be an absolute path"):
        domain_xslt("pool", CONSOLE_LOG)
    with pytest.raises(ValueError, match=r"^the console log must be an absolute path"):
        domain_xslt(POOL_DIR, "log")
    with pytest.raises(ValueError, match=r"^the stack name 'a/b' is not a plain file name"):
        console_log_path("a/b", "server-1", {"HOME": "/h"})
    with pytest.raises(ValueError, match=r"^the node name '\.\.' is not a plain file name"):
        console_log_path("dev", "..", {"HOME": "/h"})


def test_a_stylesheet_that_lost_its_placeholder_is_a_bug_said_plainly(tmp_path, monkeypatch):
    (tmp_path / "pool.xsl").write_text("<x/>")
    (tmp_path / "domain.xsl").write_text("<x>__POOL_DIR__ __CONSOLE_LOG__ __LEFT_OVER__</x>")
    monkeypatch.setattr(libvirt_xml, "STYLESHEETS", tmp_path)
    with pytest.raises(RuntimeError, match=r"^libvirt/pool\.xsl must hold __QEMU_GID__ once$"):
        pool_xslt(1)
    with pytest.raises(RuntimeError, match=r"^libvirt/domain\.xsl: \['__LEFT_OVER__'\] not filled in$"):
        domain_xslt(POOL_DIR, CONSOLE_LOG)


@pytest.mark.parametrize("xml", [DISK_VOLUME_XML, BASE_VOLUME_XML], ids=["disk", "base-image"])
def test_a_volume_is_0600_and_otherwise_unchanged(tmp_path, xml):
    """terraform-provider-libvirt v0.8.1 libvirt/volume_def.go newDefVolume asks for 644; the stylesheet
    replaces the permissions (libvirt v9.0.0 src/conf/storage_conf.c reads the mode as octal) and
    keeps the rest; src/conf/schemas/storagevol.rng."""
    volume = _transform(tmp_path, volume_xslt(), xml)
    permissions = volume.findall("target/permissions")
    assert len(permissions) == 1
    assert {e.tag: e.text for e in permissions[0]} == {"mode": "0600"}
    before = ET.fromstring(xml)
    for path in ("name", "capacity", "target/format", "backingStore/path", "backingStore/format"):
        old, new = before.find(path), volume.find(path)
        assert (old is None) == (new is None), path
        if old is not None:
            assert (new.attrib, (new.text or "").strip()) == (old.attrib, (old.text or "").strip()), path
    _validate(tmp_path, "storagevol")


def test_the_stylesheets_as_filled_in_hold_no_placeholder():
    for text in (pool_xslt(0), volume_xslt(), domain_xslt(POOL_DIR, CONSOLE_LOG)):
        assert "__" not in text
        ET.fromstring(text)


def _fake_accounts(monkeypatch, groups: dict[str, tuple[int, list[str]]], users: dict[str, int]):
    def getgrnam(name):
        gid, members = groups[name]
        return type("Group", (), {"gr_gid": gid, "gr_mem": members})()

    def getpwnam(name):
        return type("User", (), {"pw_gid": users[name]})()

    monkeypatch.setattr(libvirt_xml.grp, "getgrnam", getgrnam)
    monkeypatch.setattr(libvirt_xml.pwd, "getpwnam", getpwnam)


@pytest.mark.parametrize(
    "groups, users",
    [
        # Debian 12 and Ubuntu 24.04: the postinst adds libvirt-qemu (primary group kvm) to its own group.
        ({"libvirt-qemu": (64055, ["libvirt-qemu"]), "kvm": (992, [])}, {"libvirt-qemu": 992}),
        # A host where QEMU's user has the group as its primary group.
        ({"libvirt-qemu": (64055, [])}, {"libvirt-qemu": 64055}),
    ],
)
def test_qemu_s_group_is_found_when_qemu_is_in_it(monkeypatch, groups, users):
    """libvirt v9.0.0 src/util/virutil.c virGetGroupList: QEMU runs with its user's primary group, the
    groups that list the user, and the configured group."""
    _fake_accounts(monkeypatch, groups, users)
    assert qemu_group_gid() == 64055


def test_a_missing_qemu_user_names_itself(monkeypatch):
    _fake_accounts(monkeypatch, {"libvirt-qemu": (64055, [])}, {})
    with pytest.raises(QemuGroupError, match=r"^QEMU's user 'libvirt-qemu' does not exist on this host: install"):
        qemu_group_gid()


def test_a_missing_group_names_itself_and_the_fix(monkeypatch):
    _fake_accounts(monkeypatch, {}, {"libvirt-qemu": 992})
    with pytest.raises(QemuGroupError, match=r"'libvirt-qemu' does not exist.*install-host\.sh"):
        qemu_group_gid()


def test_a_group_qemu_is_not_in_is_refused(monkeypatch):
    _fake_accounts(monkeypatch, {"libvirt-qemu": (64055, [])}, {"libvirt-qemu": 992})
    with pytest.raises(QemuGroupError, match=r"sudo adduser libvirt-qemu libvirt-qemu"):
        qemu_group_gid()


def test_the_console_log_is_in_the_operator_s_state_directory():
    home = {"HOME": "/home/operator"}
    assert console_log_path("dev", "server-1", home) == Path(CONSOLE_LOG)
    assert console_log_path("dev", "client-0", {**home, "XDG_STATE_HOME": "/state"}) == Path(
        "/state/hashistack/dev/console/client-0.log"
    )
    # The XDG Base Directory spec: a relative path is invalid and ignored.
    assert console_log_path("dev", "server-1", {**home, "XDG_STATE_HOME": "state"}) == Path(CONSOLE_LOG)
    for stack, node in (("dev", "../x"), ("a/b", "server-1"), ("dev", ".")):
        with pytest.raises(ValueError):
            console_log_path(stack, node, home)


def test_the_console_log_is_created_private_and_never_truncated(tmp_path):
    """virtlogd keeps an existing file's owner and mode and appends (libvirt v9.0.0
    src/util/virrotatingfile.c virRotatingFileWriterEntryNew: O_CREAT|O_APPEND)."""
    log = tmp_path / "state" / "hashistack" / "dev" / "console" / "server-1.log"
    prepare_console_log(log)
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    assert stat.S_IMODE(log.parent.stat().st_mode) == 0o700
    assert log.stat().st_uid == os.getuid()
    log.write_text("boot 1\n")
    prepare_console_log(log)
    assert log.read_text() == "boot 1\n"


def test_a_symbolic_link_is_no_console_log(tmp_path):
    """virtlogd (root) would write through it wherever it points."""
    target = tmp_path / "elsewhere"
    target.write_text("")
    (tmp_path / "server-1.log").symlink_to(target)
    with pytest.raises(ConsoleLogError, match="is not yours"):
        prepare_console_log(tmp_path / "server-1.log")


def test_a_console_log_that_is_not_the_operator_s_is_reported(tmp_path, monkeypatch):
    """A VM that started without its log file got one of root's (libvirt v9.0.0
    src/logging/log_handler.c DEFAULT_MODE 0600): the operator could not read it."""
    log = tmp_path / "server-1.log"
    prepare_console_log(log)
    someone_else = os.getuid() + 1
    monkeypatch.setattr(libvirt_xml.os, "getuid", lambda: someone_else)
    with pytest.raises(ConsoleLogError, match=rf"sudo chown {someone_else} {log}"):
        prepare_console_log(log)
