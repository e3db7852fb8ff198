"""Stand-in `consul`, `nomad`, `vault` and `consul-cni` packages, and the signed apt repository
that serves them to the boot test's VMs.

A stand-in package has what the boot script and systemd depend on, each property taken from the
real package's definition:
- HashiCorp builds its .debs with hashicorp/actions-packaging-linux (fpm_template.go, read at
  commit 041890d6): the binary at /usr/bin/<name>, and every file of the product's
  `.release/linux/package/` tree (the systemd unit included) as a `config|noreplace` file, i.e. a
  dpkg conffile: that is why the bootstrap's --force-confold keeps what cloud-init wrote first;
- the units, users and maintainer scripts of each product at the sources cited per package below.
The agent binaries are scripts/boot_test/standin-agent.py (README, Tests: what a stand-in cannot show).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import subprocess
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from components.config.settings import Versions

AGENT_PROGRAM = Path(__file__).with_name("standin-agent.py")
ARCH = "amd64"

_DAEMON_RELOAD = """if [ -d /run/systemd/system ]; then
    systemctl --system daemon-reload >/dev/null || true
fi
"""


def _create_user(name: str, extra: str = "") -> str:
    return f"""#!/bin/bash
set -eu
if ! id -u {name} >/dev/null 2>&1; then
    useradd --system --user-group{extra} --shell /bin/false {name}
fi
"""


@dataclass(frozen=True)
class StandIn:
    name: str
    version: str
    source: str
    """Where each modelled property of the real package is defined."""
    conffiles: dict[str, str] = field(default_factory=dict)
    preinst: str | None = None
    postinst: str | None = None

    @property
    def deb_version(self) -> str:
        # The boot script installs `<name>=<version>-1`, HashiCorp's revision for every release.
        return f"{self.version}-1"

    @property
    def filename(self) -> str:
        return f"{self.name}_{self.deb_version}_{ARCH}.deb"


CONSUL_UNIT = """[Unit]
Description="HashiCorp Consul - A service mesh solution"
Documentation=https://www.consul.io/
Requires=network-online.target
After=network-online.target
ConditionDirectoryNotEmpty=/etc/consul.d

[Service]
Type=notify
EnvironmentFile=-/etc/consul.d/consul.env
User=consul
Group=consul
ExecStart=/usr/bin/consul agent -config-dir=/etc/consul.d/
ExecReload=/bin/kill --signal HUP $MAINPID
KillMode=process
KillSignal=SIGTERM
Restart=on-failure
LimitNOFILE=65536

[Install]
WantedBy=multi-user.target
"""

NOMAD_UNIT = """[Unit]
Description=Nomad
Documentation=https://nomadproject.io/docs/
Wants=network-online.target
After=network-online.target

[Service]
User=root
Group=root
Type=notify
EnvironmentFile=-/etc/nomad.d/nomad.env
ExecReload=/bin/kill -HUP $MAINPID
ExecStart=/usr/bin/nomad agent -config /etc/nomad.d
KillMode=process
KillSignal=SIGINT
LimitNOFILE=65536
LimitNPROC=infinity
Restart=on-failure
RestartSec=2
TasksMax=infinity
OOMScoreAdjust=-1000

[Install]
WantedBy=multi-user.target
"""

VAULT_UNIT = """[Unit]
Description="HashiCorp Vault - A tool for managing secrets"
Documentation=https://developer.hashicorp.com/vault/docs
Requires=network-online.target
After=network-online.target
ConditionFileNotEmpty=/etc/vault.d/vault.hcl
StartLimitIntervalSec=60
StartLimitBurst=3

[Service]
Type=simple
EnvironmentFile=/etc/vault.d/vault.env
User=vault
Group=vault
ProtectSystem=full
ProtectHome=read-only
PrivateTmp=yes
PrivateDevices=yes
SecureBits=keep-caps
AmbientCapabilities=CAP_IPC_LOCK
CapabilityBoundingSet=CAP_SYSLOG CAP_IPC_LOCK
NoNewPrivileges=yes
ExecStart=/usr/bin/vault server -config=/etc/vault.d/vault.hcl
ExecReload=/bin/kill --signal HUP $MAINPID
KillMode=process
KillSignal=SIGINT
Restart=on-failure
RestartSec=5
TimeoutStopSec=30
LimitNOFILE=65536
LimitMEMLOCK=infinity
LimitCORE=0

[Install]
WantedBy=multi-user.target
"""


def packages(versions: Versions) -> list[StandIn]:
    return [
        StandIn(
            "consul",
            versions.consul,
            source="hashicorp/consul .release/linux/package/usr/lib/systemd/system/consul.service (commit 3fd4bc05), "
            ".release/linux/package/etc/consul.d/consul.hcl, .release/linux/preinstall (b5f1d821), "
            ".release/linux/postinstall (34d62a9c)",
            conffiles={
                "/usr/lib/systemd/system/consul.service": CONSUL_UNIT,
                # An example agent config (the bootstrap removes it; ours is agent.hcl).
                "/etc/consul.d/consul.hcl": 'data_dir = "/opt/consul"\n',
            },
            preinst=_create_user("consul"),
            postinst="#!/bin/bash\nmkdir -p /opt/consul\nchown -R consul:consul /opt/consul\n"
            "chown -R consul:consul /etc/consul.d\n" + _DAEMON_RELOAD,
        ),
        StandIn(
            "nomad",
            versions.nomad,
            source="hashicorp/nomad .release/linux/package/ (nomad.service, etc/nomad.d/nomad.hcl, nomad.env), "
            ".release/linux/preinst and postinst, all at v2.0.5",
            conffiles={
                "/usr/lib/systemd/system/nomad.service": NOMAD_UNIT,
                # The packaged example runs a one-node server and client (the bootstrap removes it).
                "/etc/nomad.d/nomad.hcl": 'data_dir = "/opt/nomad/data"\nbind_addr = "0.0.0.0"\n'
                "server {\n  enabled          = true\n  bootstrap_expect = 1\n}\n"
                'client {\n  enabled = true\n  servers = ["127.0.0.1"]\n}\n',
                "/etc/nomad.d/nomad.env": "",
            },
            preinst=_create_user("nomad"),
            postinst="#!/bin/bash\nmkdir -p /opt/nomad/data\nchown nomad:nomad /opt/nomad/data\n"
            "chown -R nomad:nomad /etc/nomad.d\n" + _DAEMON_RELOAD,
        ),
        StandIn(
            "vault",
            versions.vault,
            source="hashicorp/vault .release/linux/package/usr/lib/systemd/system/vault.service (commit 443eb65c), "
            ".release/linux/package/etc/vault.d/vault.hcl (43ffa9be), .release/linux/preinst (209b36c3), "
            ".release/linux/postinst (1e1cc61e); vault.env is the empty file the unit requires",
            conffiles={
                "/usr/lib/systemd/system/vault.service": VAULT_UNIT,
                "/etc/vault.d/vault.hcl": 'storage "file" {\n  path = "/opt/vault/data"\n}\n',
                "/etc/vault.d/vault.env": "",
            },
            preinst=_create_user("vault", " --home-dir /opt/vault"),
            # As the real postinst: a self-signed key and certificate in /opt/vault/tls (which our
            # configuration never names, and a baked image must not keep). It also sets cap_ipc_lock on
            # the binary (our mlock is off).
            postinst="#!/bin/bash\nif [[ -f /opt/vault/tls/tls.crt ]] && [[ -f /opt/vault/tls/tls.key ]]; then\n"
            "  exit 0\nfi\nmkdir --parents /opt/vault/tls /opt/vault/data\ncd /opt/vault/tls\n"
            "openssl req -out tls.crt -new -keyout tls.key -newkey rsa:4096 -nodes -sha256 -x509 "
            "-subj /O=HashiCorp/CN=Vault -days 1095 2>/dev/null\n"
            "chown --recursive vault:vault /etc/vault.d\nchown --recursive vault:vault /opt/vault\n"
            "chmod 600 /opt/vault/tls/tls.crt /opt/vault/tls/tls.key\nchmod 700 /opt/vault/tls\n" + _DAEMON_RELOAD,
        ),
        StandIn(
            "consul-cni",
            versions.consul_cni,
            source="hashicorp/consul-k8s .release/linux/postinst (commit 6b1b1346): links the plugin into /opt/cni/bin",
            postinst="#!/bin/sh\nmkdir -p /opt/cni/bin\nln -s /usr/bin/consul-cni /opt/cni/bin/consul-cni\n",
        ),
    ]


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def build_deb(package: StandIn, work: Path, out: Path) -> Path:
    """The package as a .deb in `out` (dpkg-deb, files owned by root)."""
    tree = work / package.name
    program = AGENT_PROGRAM.read_text().replace('VERSION = "@VERSION@"', f'VERSION = "{package.version}"')
    _write(tree / "usr/bin" / package.name, program, 0o755)
    for path, content in package.conffiles.items():
        _write(tree / path.lstrip("/"), content)
    control = (
        f"Package: {package.name}\nVersion: {package.deb_version}\nArchitecture: {ARCH}\n"
        "Maintainer: hashistack boot test <boot-test@hashistack.invalid>\n"
        # The stand-in binary is a Python program; the real ones are static Go binaries.
        "Depends: python3\n"
        f"Description: boot-test stand-in for {package.name} {package.version}\n"
        f" Models: {package.source}\n"
    )
    _write(tree / "DEBIAN/control", control)
    if package.conffiles:
        _write(tree / "DEBIAN/conffiles", "".join(f"{p}\n" for p in package.conffiles))
    for script in ("preinst", "postinst"):
        text = getattr(package, script)
        if text:
            _write(tree / "DEBIAN" / script, text, 0o755)
    target = out / package.filename
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(tree), str(target)], check=True,
                   capture_output=True)  # fmt: skip
    return target


# The plugins of the containernetworking/plugins release tarball (names as it ships them).
CNI_PLUGINS = ("bandwidth", "bridge", "dhcp", "firewall", "host-device", "host-local", "ipvlan", "loopback",
               "macvlan", "portmap", "ptp", "sbr", "static", "tap", "tuning", "vlan", "vrf")  # fmt: skip


def cni_release(version: str, out: Path) -> list[Path]:
    """A stand-in release of the CNI reference plugins as the boot script downloads it: the tarball
    and its `<tarball>.sha256` (`<hash>  <name>`, checked with sha256sum -c) under v<version>/."""
    name = f"cni-plugins-linux-{ARCH}-v{version}.tgz"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for plugin in CNI_PLUGINS:
            data = f"#!/bin/sh\n# boot-test stand-in for the {plugin} CNI plugin\nexit 0\n".encode()
            info = tarfile.TarInfo(f"./{plugin}")
            info.size, info.mode = len(data), 0o755
            archive.addfile(info, io.BytesIO(data))
    directory = out / f"v{version}"
    directory.mkdir(parents=True, exist_ok=True)
    tarball = directory / name
    tarball.write_bytes(buffer.getvalue())
    checksum = directory / f"{name}.sha256"
    checksum.write_text(f"{hashlib.sha256(tarball.read_bytes()).hexdigest()}  {name}\n")
    return [tarball, checksum]


@dataclass(frozen=True)
class AptRepository:
    root: Path
    fingerprint: str
    """The signing key's fingerprint: what hashicorpKeyFingerprint names."""


def _gpg(home: Path, *args: str, stdin: bytes | None = None) -> bytes:
    return subprocess.run(
        ["gpg", "--homedir", str(home), "--batch", "--quiet", "--pinentry-mode", "loopback", "--passphrase", "",
         *args], input=stdin, check=True, capture_output=True,
    ).stdout  # fmt: skip


def apt_repository(root: Path, suite: str, debs: list[Path], gnupg_home: Path, expires: str = "1d") -> AptRepository:
    """A signed apt repository laid out as apt.releases.hashicorp.com is: `dists/<suite>/main`,
    `InRelease` signed by a throwaway key, and that key, armored, at `<root>/gpg`. The key in
    `gnupg_home` is made once, expiring after `expires`, and used again after that (the boot test keeps
    it with its baked image, whose name carries the fingerprint)."""
    root.mkdir(parents=True, exist_ok=True)
    gnupg_home.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not _gpg(gnupg_home, "--with-colons", "--list-secret-keys").strip():
        _gpg(gnupg_home, "--quick-gen-key", "hashistack boot test <boot-test@hashistack.invalid>", "ed25519", "sign",
             expires)  # fmt: skip
    colons = _gpg(gnupg_home, "--with-colons", "--list-keys").decode()
    fingerprint = next(line.split(":")[9] for line in colons.splitlines() if line.startswith("fpr:"))
    (root / "gpg").write_bytes(_gpg(gnupg_home, "--armor", "--export", fingerprint))

    pool = root / "pool/main"
    pool.mkdir(parents=True, exist_ok=True)
    for deb in debs:
        (pool / deb.name).write_bytes(deb.read_bytes())
    binary = root / f"dists/{suite}/main/binary-{ARCH}"
    binary.mkdir(parents=True, exist_ok=True)
    index = subprocess.run(
        ["apt-ftparchive", "packages", "pool/main"], cwd=root, check=True, capture_output=True
    ).stdout
    (binary / "Packages").write_bytes(index)
    (binary / "Packages.gz").write_bytes(gzip.compress(index, mtime=0))
    release_options = [f"-oAPT::FTPArchive::Release::{k}={v}" for k, v in
                       {"Suite": suite, "Codename": suite, "Components": "main", "Architectures": ARCH}.items()]  # fmt: skip
    release = subprocess.run(["apt-ftparchive", *release_options, "release", f"dists/{suite}"], cwd=root, check=True,
                             capture_output=True).stdout  # fmt: skip
    (root / f"dists/{suite}/Release").write_bytes(release)
    (root / f"dists/{suite}/InRelease").write_bytes(_gpg(gnupg_home, "--clearsign", "--local-user", fingerprint,
                                                         stdin=release))  # fmt: skip
    return AptRepository(root, fingerprint)
