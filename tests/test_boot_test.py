"""The boot test's parts that run without a VM (scripts/boot_test): its checks against facts of both
kinds, the stand-in packages and their signed repository, the stand-in agents under a fake systemd
notify socket, and the network-config it boots with. `make boot-test` runs the VMs themselves."""

from __future__ import annotations

import gzip
import io
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
import yaml

from components.nodes.node_config import Role
from components.nodes.node_plan import cluster_spec, node_specs
from components.platforms.libvirt.seed import network_config
from scripts import boot_test
from scripts.boot_test import __main__ as boot_main
from scripts.boot_test import checks, standins
from scripts.boot_test.checks import Expected
from scripts.boot_test.pki import ThrowawayCa
from scripts.boot_test.vm import free_port
from scripts.stack_files import stack_settings

SETTINGS = stack_settings("dev", {"nodeOs": "debian-12"})
CLUSTER = cluster_spec(SETTINGS)
NODES = node_specs(SETTINGS)
SERVER, CLIENT = NODES["server-0"], NODES["client-0"]


def facts_with(files: dict[str, Expected], **extra) -> dict:
    facts = {"files": {p: {"owner": e.owner, "mode": e.mode, "kind": "file"} for p, e in files.items()}}
    return facts | extra


# --- files ---------------------------------------------------------------------------------------


# What "What a node gets" (README) promises once the bootstrap is done: path -> (owner, mode).
BOTH = {
    "/etc/consul.d": ("root:consul", "0750"),
    "/etc/consul.d/agent.hcl": ("root:consul", "0640"),
    "/etc/consul.d/secrets.hcl": ("root:consul", "0640"),
    "/etc/consul.d/tls": ("root:consul", "0750"),
    "/etc/consul.d/tls/agent-key.pem": ("root:consul", "0640"),
    "/etc/consul.d/tls/agent.pem": ("root:consul", "0640"),
    "/etc/consul.d/tls/ca.pem": ("root:consul", "0640"),
    "/etc/hashistack/bootstrap.env": ("root:root", "0600"),
    "/etc/hashistack/tls/ca.pem": ("root:root", "0644"),
    "/etc/hashistack/tls/node-key.pem": ("root:root", "0600"),
    "/etc/hashistack/tls/node.pem": ("root:root", "0644"),
    "/etc/nomad.d": ("root:root", "0750"),
    "/etc/nomad.d/agent.hcl": ("root:root", "0640"),
    "/etc/nomad.d/secrets.hcl": ("root:root", "0640"),
    "/etc/nomad.d/tls": ("root:root", "0750"),
    "/etc/nomad.d/tls/agent-key.pem": ("root:root", "0640"),
    "/etc/nomad.d/tls/agent.pem": ("root:root", "0640"),
    "/etc/nomad.d/tls/ca.pem": ("root:root", "0640"),
    "/etc/systemd/resolved.conf.d/consul.conf": ("root:root", "0644"),
    "/etc/systemd/system/consul.service.d/conditions.conf": ("root:root", "0644"),
    "/etc/systemd/system/nomad.service.d/wants-consul.conf": ("root:root", "0644"),
    "/opt/consul": ("consul:consul", "0750"),
    "/opt/nomad/data": ("root:root", "0700"),
    "/usr/local/sbin/hashistack-bootstrap": ("root:root", "0700"),
}
SERVER_ONLY = {
    "/etc/logrotate.d/vault-audit": ("root:root", "0644"),
    "/etc/systemd/system/vault.service.d/wants-consul.conf": ("root:root", "0644"),
    "/etc/vault.d": ("root:vault", "0750"),
    "/etc/vault.d/tls": ("root:vault", "0750"),
    "/etc/vault.d/tls/ca.pem": ("root:vault", "0640"),
    "/etc/vault.d/tls/vault-key.pem": ("root:vault", "0640"),
    "/etc/vault.d/tls/vault.pem": ("root:vault", "0640"),
    "/etc/vault.d/vault.env": ("root:vault", "0640"),
    "/etc/vault.d/vault.hcl": ("root:vault", "0640"),
    "/opt/vault": ("vault:vault", "0750"),
    "/opt/vault/data": ("vault:vault", "0750"),
    "/var/log/vault": ("vault:vault", "0750"),
}
CLIENT_ONLY = {
    "/etc/docker/daemon.json": ("root:root", "0644"),
    "/etc/hashistack/ingress.nft": ("root:root", "0644"),
    "/etc/hashistack/public/ca.pem": ("root:root", "0644"),
    "/etc/hashistack/tasks.nft": ("root:root", "0644"),
    "/etc/modules-load.d/br_netfilter.conf": ("root:root", "0644"),
    "/etc/sysctl.d/60-bridge-netfilter.conf": ("root:root", "0644"),
    "/etc/systemd/resolved.conf.d/docker-stub.conf": ("root:root", "0644"),
    "/etc/systemd/system/hashistack-task-firewall.service": ("root:root", "0644"),
    "/opt/cni/bin/bridge": ("root:root", "0755"),
}


def test_every_file_the_user_data_writes_is_expected_with_the_owner_the_bootstrap_gives_it():
    """The agents' directories go to their groups, files 0640 (install_agent_files); the rest stay as
    cloud-init wrote them; the data directories are the agents' (Nomad's root's)."""
    for node, only in ((SERVER, SERVER_ONLY), (CLIENT, CLIENT_ONLY)):
        expected = {path: (e.owner, e.mode) for path, e in checks.expected_files(CLUSTER, node).items()}
        assert expected == BOTH | only, node.name


def test_file_problems_name_the_path_what_it_is_and_what_it_should_be():
    expected = checks.expected_files(CLUSTER, SERVER)
    assert checks.file_problems(facts_with(expected), expected) == []
    wrong = dict(expected, **{"/etc/consul.d/tls/agent-key.pem": Expected("root:root", "0644")})
    missing = {p: e for p, e in expected.items() if p != "/etc/vault.d/vault.hcl"}
    leftover = facts_with(expected)
    leftover["files"]["/etc/nomad.d/nomad.hcl"] = {"owner": "nomad:nomad", "mode": "0644", "kind": "file"}
    assert checks.file_problems(facts_with(wrong), expected) == [
        "/etc/consul.d/tls/agent-key.pem: root:root 0644, expected root:consul 0640"
    ]
    assert checks.file_problems(facts_with(missing), expected) == ["/etc/vault.d/vault.hcl: missing"]
    assert checks.file_problems(leftover, expected) == [
        "/etc/nomad.d/nomad.hcl: still present (the bootstrap removes it)"
    ]


def test_a_client_needs_consul_cni_linked_into_the_plugin_directory():
    expected = checks.expected_files(CLUSTER, CLIENT)
    facts = facts_with(expected)
    assert checks.file_problems(facts, expected) == [
        "/opt/cni/bin/consul-cni: not a link to the consul-cni package's binary"
    ]
    facts["files"]["/opt/cni/bin/consul-cni"] = {"owner": "root:root", "mode": "0777", "kind": "link"}
    assert checks.file_problems(facts, expected) == []


# --- units ---------------------------------------------------------------------------------------


def unit(active: str, sub: str, enabled: str = "enabled") -> dict:
    return {"ActiveState": active, "SubState": sub, "UnitFileState": enabled}


RUNNING = unit("active", "running")


def test_a_server_runs_consul_nomad_and_vault_all_enabled():
    good = {"units": {"consul": RUNNING, "nomad": RUNNING, "vault": RUNNING}}
    assert checks.unit_problems(good, Role.SERVER) == []
    waiting = {"units": {**good["units"], "consul": unit("activating", "start")}}
    assert checks.unit_problems(waiting, Role.SERVER) == [
        "consul.service is activating (start), expected active (running)"
    ]
    disabled = {"units": {**good["units"], "vault": unit("active", "running", "disabled")}}
    assert checks.unit_problems(disabled, Role.SERVER) == ["vault.service is disabled, expected enabled"]


def test_a_client_runs_nomad_while_consul_waits_for_its_certificate():
    firewall = unit("active", "exited")
    good = {"units": {"consul": unit("activating", "start"), "nomad": RUNNING, "docker": RUNNING,
                      "hashistack-task-firewall": firewall}}  # fmt: skip
    assert checks.unit_problems(good, Role.CLIENT) == []
    joined = {"units": {**good["units"], "consul": RUNNING}}
    assert checks.unit_problems(joined, Role.CLIENT) == [
        "consul.service is active (running), expected activating (start)"
    ]
    no_firewall = {"units": {k: v for k, v in good["units"].items() if k != "hashistack-task-firewall"}}
    assert checks.unit_problems(no_firewall, Role.CLIENT) == [
        "hashistack-task-firewall.service is unknown, expected enabled",
        "hashistack-task-firewall.service is None (None), expected active (exited)",
    ]


# --- resolver ------------------------------------------------------------------------------------

RESOLVED = (
    "Global\n  DNS Servers: 127.0.0.1:8600\n  DNS Domain: ~consul\nLink 2 (enp0s2)\n  DNS Servers: 192.168.142.2\n"
)


def resolver_facts(**changes) -> dict:
    facts = {
        "resolved_status": RESOLVED,
        "query_outside": "deb.debian.org: 151.101.2.132                   -- link: enp0s2\n",
        "query_consul": f"consul.service.consul: {SERVER.address}                   -- link: lo\n",
        "udp_listeners": f"UNCONN 0 0 {CLIENT.address}:53 0.0.0.0:*\n",
        "resolv_conf": "/run/systemd/resolve/stub-resolv.conf",
        "getent_consul": f"{SERVER.address}   STREAM consul.service.consul\n",
    }
    return facts | changes


def test_the_resolver_forwards_the_cluster_domain_to_consul_and_everything_else_as_before():
    assert checks.resolver_problems(resolver_facts(), CLUSTER, SERVER) == []
    assert checks.resolver_problems(resolver_facts(), CLUSTER, CLIENT) == []
    assert checks.resolver_problems(resolver_facts(resolved_status="Global\n"), CLUSTER, SERVER) == [
        "systemd-resolved does not name 127.0.0.1:8600 (Consul DNS) as a server",
        "systemd-resolved has no routing domain ~consul",
    ]
    lost = checks.resolver_problems(resolver_facts(query_outside="resolve call failed: timeout"), CLUSTER, SERVER)
    assert lost == ["names outside the cluster no longer resolve: resolve call failed: timeout"]
    unanswered = checks.resolver_problems(resolver_facts(query_consul="NXDOMAIN"), CLUSTER, SERVER)
    assert unanswered == [
        f"consul.service.consul did not resolve to {SERVER.address} through systemd-resolved: NXDOMAIN"
    ]
    uplink = checks.resolver_problems(resolver_facts(resolv_conf="/run/systemd/resolve/resolv.conf"), CLUSTER, CLIENT)
    assert uplink == [
        "/etc/resolv.conf leads to /run/systemd/resolve/resolv.conf, not resolved's stub"
        " /run/systemd/resolve/stub-resolv.conf: programs that read it never see the ~consul routing"
    ]
    libc = checks.resolver_problems(resolver_facts(getent_consul=""), CLUSTER, SERVER)
    assert libc == [
        f"getent (libc, through /etc/resolv.conf) did not resolve consul.service.consul to {SERVER.address}: no answer"
    ]
    deaf = checks.resolver_problems(resolver_facts(udp_listeners=""), CLUSTER, CLIENT)
    assert deaf == [f"systemd-resolved does not listen on {CLIENT.address}:53 (DNSStubListenerExtra, for containers)"]


# --- console and the failure run -----------------------------------------------------------------

FAILED = (
    "hashistack-bootstrap: FAILED while adding the HashiCorp apt repository https://192.168.142.1:1/hashicorp:"
    " `curl ...` failed 10 times. Check that the node reaches what it names. Then re-run: sudo"
    " /usr/local/sbin/hashistack-bootstrap (full log: /var/log/hashistack-bootstrap.log)"
)


def test_the_console_must_end_with_one_done():
    assert checks.console_problems("boot\nhashistack-bootstrap: done\n", "hashistack-bootstrap: done") == []
    assert checks.console_problems(f"{FAILED}\n", FAILED) == [
        f"the boot script ended with {FAILED!r}, expected 'hashistack-bootstrap: done'"
    ]
    twice = "hashistack-bootstrap: done\nhashistack-bootstrap: done\n"
    assert checks.console_problems(twice, "hashistack-bootstrap: done") == [
        "the console's boot-script lines are ['hashistack-bootstrap: done', 'hashistack-bootstrap: done'],"
        " expected exactly one 'done'"
    ]


def test_the_failure_run_ends_with_one_failed_line_naming_the_step_within_the_budget():
    step = "adding the HashiCorp apt repository"
    assert checks.failure_problems(f"x\n{FAILED}\n", step, 400, 230) == []
    assert checks.failure_problems(f"{FAILED}\n{FAILED}\n", step, 400, 230)[0].startswith("expected one FAILED line")
    assert checks.failure_problems("hashistack-bootstrap: done\n", step, 400, 230)[0].startswith(
        "expected one FAILED line on the console, found 0"
    )
    other = FAILED.replace(step, "installing consul")
    assert checks.failure_problems(other, step, 400, 230) == [
        f"the FAILED line does not name the step {step!r} and what to do: {other}"
    ]
    assert checks.failure_problems(FAILED, step, 400, 400) == [], "the budget itself is within it"
    assert checks.failure_problems(FAILED, step, 400, 401) == [
        "the failing step took 401 s, over the retry budget of 400 s"
    ]
    assert checks.failure_problems(FAILED, step, 400, None) == [
        "the boot log does not show how long the failing step took"
    ]


def test_the_failing_step_is_timed_from_the_boot_log():
    log = (
        "==> [23:59:50] preparing the node\n==> [23:59:55] adding the HashiCorp apt repository https://x\n"
        "==> [23:59:55] retrying in 5s: curl\n==> [00:03:40] FAILED while adding the HashiCorp apt repository\n"
    )
    assert checks.step_seconds(log, "adding the HashiCorp apt repository") == 225
    assert checks.step_seconds(log, "installing") is None
    assert checks.step_seconds("==> [00:00:01] adding the HashiCorp apt repository\n", "adding") is None


# --- the stand-in packages and their repository ---------------------------------------------------


@pytest.fixture(scope="module")
def repository(tmp_path_factory):
    for tool in ("dpkg-deb", "apt-ftparchive", "gpg", "gpgv"):
        assert shutil.which(tool), f"{tool} is missing: scripts/install-test-tools.sh installs it (Debian)"
    work = tmp_path_factory.mktemp("standins")
    debs = [standins.build_deb(p, work / "trees", work) for p in standins.packages(SETTINGS.versions)]
    repo = standins.apt_repository(work / "www", "bookworm", debs, work / "gnupg")
    return work, debs, repo


def deb_field(deb: Path, option: str, *rest: str) -> str:
    return subprocess.run(["dpkg-deb", option, str(deb), *rest], capture_output=True, text=True, check=True).stdout


def test_each_stand_in_is_the_pinned_version_with_its_binary_in_usr_bin_and_its_unit_a_conffile(repository):
    """hashicorp/actions-packaging-linux fpm_template.go (commit 041890d6): `dst: /usr/bin/{{ .Name }}`
    and every file of the product's .release/linux/package tree `type: config|noreplace`."""
    _, debs, _ = repository
    by_name = {d.name.split("_")[0]: d for d in debs}
    assert sorted(by_name) == ["consul", "consul-cni", "nomad", "vault"]
    for name, version in [("consul", "2.0.4"), ("nomad", "2.0.7"), ("vault", "2.1.1"), ("consul-cni", "2.0.3")]:
        assert deb_field(by_name[name], "--field", "Version").strip() == f"{version}-1"
        assert f"./usr/bin/{name}\n" in deb_field(by_name[name], "--contents").replace(" ", "\n")
    consul_conffiles = deb_field(by_name["consul"], "--info", "conffiles")
    assert "/usr/lib/systemd/system/consul.service\n" in consul_conffiles
    assert "/etc/consul.d/consul.hcl\n" in consul_conffiles
    assert "/etc/vault.d/vault.env\n" in deb_field(by_name["vault"], "--info", "conffiles")


def test_the_units_are_the_products_own():
    """consul.service: hashicorp/consul .release/linux/package (commit 3fd4bc05) — Type=notify, user
    consul, ConditionDirectoryNotEmpty; nomad.service at hashicorp/nomad v2.0.5 — Type=notify, root,
    KillSignal=SIGINT; vault.service: hashicorp/vault (commit 443eb65c) — Type=simple, user vault,
    EnvironmentFile without '-' (vault.env must exist), ConditionFileNotEmpty on vault.hcl."""
    assert "Type=notify\n" in standins.CONSUL_UNIT and "User=consul\n" in standins.CONSUL_UNIT
    assert "ConditionDirectoryNotEmpty=/etc/consul.d\n" in standins.CONSUL_UNIT
    assert "ExecStart=/usr/bin/consul agent -config-dir=/etc/consul.d/\n" in standins.CONSUL_UNIT
    assert "Type=notify\n" in standins.NOMAD_UNIT and "KillSignal=SIGINT\n" in standins.NOMAD_UNIT
    assert "ExecStart=/usr/bin/nomad agent -config /etc/nomad.d\n" in standins.NOMAD_UNIT
    assert "Type=simple\n" in standins.VAULT_UNIT and "EnvironmentFile=/etc/vault.d/vault.env\n" in standins.VAULT_UNIT
    assert "ConditionFileNotEmpty=/etc/vault.d/vault.hcl\n" in standins.VAULT_UNIT


def test_the_repository_is_signed_by_the_key_it_serves(repository, tmp_path):
    work, _, repo = repository
    keyring = tmp_path / "keyring.gpg"
    keyring.write_bytes(
        subprocess.run(
            ["gpg", "--dearmor"], input=(work / "www/gpg").read_bytes(), capture_output=True, check=True
        ).stdout
    )
    verified = subprocess.run(["gpgv", "--keyring", str(keyring), str(work / "www/dists/bookworm/InRelease")],
                              capture_output=True, text=True)  # fmt: skip
    assert verified.returncode == 0, verified.stderr
    colons = subprocess.run(["gpg", "--show-keys", "--with-colons", str(work / "www/gpg")], capture_output=True,
                            text=True, check=True).stdout  # fmt: skip
    assert f"fpr:::::::::{repo.fingerprint}:" in colons
    # Armored, as HashiCorp serves its key (the boot script dearmors it into the keyring).
    assert (work / "www/gpg").read_text().startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----\n")
    index = (work / "www/dists/bookworm/main/binary-amd64/Packages").read_text()
    assert "Package: consul\n" in index and "Version: 2.0.4-1\n" in index


def test_the_cni_release_checks_with_sha256sum_as_the_boot_script_runs_it(tmp_path):
    tarball, checksum = standins.cni_release("1.7.1", tmp_path)
    assert tarball.name == "cni-plugins-linux-amd64-v1.7.1.tgz" and tarball.parent.name == "v1.7.1"
    assert subprocess.run(["sha256sum", "-c", checksum.name], cwd=checksum.parent, capture_output=True).returncode == 0
    tarball.write_bytes(tarball.read_bytes() + b"x")
    assert subprocess.run(["sha256sum", "-c", checksum.name], cwd=checksum.parent, capture_output=True).returncode != 0


# --- the stand-in agents under a fake systemd -----------------------------------------------------


class NotifySocket:
    def __init__(self, path: Path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.path = path

    def ready_within(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                if self.sock.recv(64) == b"READY=1":
                    return True
            except TimeoutError:
                pass
        return False


def agent(tmp_path: Path, name: str, *args: str) -> tuple[subprocess.Popen, NotifySocket]:
    program = tmp_path / "bin" / name
    program.parent.mkdir(exist_ok=True)
    program.write_text(standins.AGENT_PROGRAM.read_text())
    program.chmod(0o755)
    notify = NotifySocket(tmp_path / f"{name}.notify")
    process = subprocess.Popen([sys.executable, str(program), *args], env={**os.environ, "NOTIFY_SOCKET": str(notify.path)},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    return process, notify


def pki(tmp_path: Path) -> tuple[Path, Path]:
    issued = ThrowawayCa(tmp_path / "pki").issue("agent", ["localhost"], ["127.0.0.1"])
    return issued.cert_path, issued.key_path


def consul_config(tmp_path: Path, body: str) -> Path:
    directory = tmp_path / "consul.d"
    directory.mkdir()
    (directory / "agent.hcl").write_text(body)
    return directory


def stop(process: subprocess.Popen) -> str:
    process.terminate()
    return process.communicate(timeout=10)[1]


def test_a_consul_server_notifies_ready_only_once_it_has_joined(tmp_path):
    """hashicorp/consul agent/agent.go, JoinLAN: `joinLANNotifier.Notify(systemd.Ready)` after a
    successful join, not at start. Joining its own address counts, as for a real first server."""
    cert, key = pki(tmp_path)
    server, serf, https, dns = (free_port() for _ in range(4))
    directory = consul_config(tmp_path, f'bind_addr = "127.0.0.1"\nclient_addr = "127.0.0.1"\nserver = true\n'
                              f'retry_join = ["127.0.0.1:{serf}"]\ntls {{\n  cert_file = "{cert}"\n  key_file = "{key}"\n}}\n'
                              f"ports {{\n  server = {server}\n  serf_lan = {serf}\n  https = {https}\n  dns = {dns}\n}}\n")  # fmt: skip
    process, notify = agent(tmp_path, "consul", "agent", f"-config-dir={directory}")
    try:
        assert notify.ready_within(10), "a server that joined itself notifies READY=1"
    finally:
        assert f"joined ['127.0.0.1:{serf}']" in stop(process)


def test_a_consul_client_without_servers_never_notifies_ready(tmp_path):
    """A client with auto_encrypt asks a server's RPC port (8300) for its certificate before it
    starts at all; with no server reachable it stays 'activating', as on a client whose servers have
    not made its token yet."""
    # A TEST-NET-1 address (RFC 5737): no server answers there.
    directory = consul_config(
        tmp_path, 'bind_addr = "127.0.0.1"\nretry_join = ["192.0.2.1"]\nauto_encrypt {\n  tls = true\n}\n'
    )
    process, notify = agent(tmp_path, "consul", "agent", f"-config-dir={directory}")
    try:
        assert not notify.ready_within(3)
    finally:
        assert "asking the servers ['192.0.2.1'] for a certificate" in stop(process)


def test_an_agent_that_cannot_read_its_key_stops_with_the_path(tmp_path):
    directory = consul_config(tmp_path, 'tls {\n  key_file = "/nonexistent/agent-key.pem"\n}\n')
    process, _ = agent(tmp_path, "consul", "agent", f"-config-dir={directory}")
    _, stderr = process.communicate(timeout=10)
    assert process.returncode == 1
    assert "error: loading /nonexistent/agent-key.pem: No such file or directory" in stderr


def test_nomad_notifies_ready_once_listening_without_waiting_for_consul(tmp_path):
    """hashicorp/nomad command/agent/command.go@v2.0.5, handleSignals: sdNotify(sdSock, sdReady)
    once the agent has started; Nomad does not wait for Consul."""
    cert, key = pki(tmp_path)
    directory = tmp_path / "nomad.d"
    directory.mkdir()
    (directory / "agent.hcl").write_text(
        f'addresses {{\n  http = "127.0.0.1"\n}}\nports {{\n  http = {free_port()}\n}}\n'
        f'tls {{\n  cert_file = "{cert}"\n  key_file = "{key}"\n}}\n'
    )
    process, notify = agent(tmp_path, "nomad", "agent", "-config", str(directory))
    try:
        assert notify.ready_within(10)
    finally:
        stop(process)


def test_the_stand_ins_answer_version_as_the_postinst_scripts_ask(tmp_path):
    program = tmp_path / "nomad"
    program.write_text(standins.AGENT_PROGRAM.read_text().replace("@VERSION@", "2.0.7"))
    done = subprocess.run([sys.executable, str(program), "version"], capture_output=True, text=True, check=True)
    assert done.stdout == "Nomad v2.0.7 (boot-test stand-in)\n" and "+ent" not in done.stdout


# --- the network and the runner ------------------------------------------------------------------


def test_the_vms_network_config_is_the_libvirt_one_but_for_qemus_resolver():
    ours = yaml.safe_load(boot_main.qemu_network_config(SETTINGS, SERVER.address))
    libvirt = yaml.safe_load(network_config(SETTINGS, SERVER.address))
    assert ours["ethernets"]["primary"].pop("nameservers") == {"addresses": ["192.168.142.2"]}
    assert libvirt["ethernets"]["primary"].pop("nameservers") == {"addresses": ["192.168.142.1"]}
    assert ours == libvirt


def test_a_missing_host_tool_fails_the_boot_test_with_the_package_to_install(monkeypatch, capsys):
    monkeypatch.setattr(shutil, "which", lambda tool: None if tool == "genisoimage" else f"/usr/bin/{tool}")
    assert boot_main.main(["--nodes", "server-0"]) == 2
    assert "sudo apt-get install genisoimage" in capsys.readouterr().err


def test_the_retry_budget_is_the_boot_scripts_own():
    script = (Path(boot_test.__file__).parents[2] / "cloudinit/hashistack-bootstrap.sh").read_text()
    assert "sleep $((n * 5))" in script and 'retry 10 "${CURL[@]}" -fsSL "$HASHICORP_APT_URL/gpg"' in script
    assert "readonly CURL=(curl --connect-timeout 10 --max-time 300)" in script
    assert boot_main.RETRY_BUDGET_SECONDS == 225 + 100 + 60


def test_the_image_is_cached_per_build_script_and_built_with_sudo_when_not_root(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    calls, real_run = [], subprocess.run

    def run(command, **kwargs):
        if command[0] == "openssl":
            return real_run(command, **kwargs)
        calls.append(command)

    monkeypatch.setattr(boot_main.subprocess, "run", run)
    monkeypatch.setattr(boot_main.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(boot_main.os, "getuid", lambda: 1000)
    monkeypatch.setattr(boot_main.os, "getgid", lambda: 1000)
    built = boot_main.image(lambda _: None)
    assert built.rootfs.parent.parent == tmp_path / "hashistack" / "boot-test"
    build, chown = calls
    assert build[0] == "sudo" and build[1] == str(boot_main.BUILD_SCRIPT) and build[3] == boot_main.MIRROR
    assert build[4].endswith("/package-ca/ca.pem"), "the package server's CA is made before the image trusts it"
    assert chown[:3] == ["sudo", "chown", "-R"] and chown[3] == "1000:1000"
    assert (built.package_ca / "ca.key").stat().st_mode & 0o077 == 0
    built.rootfs.write_text("")
    calls.clear()
    assert boot_main.image(lambda _: None) == built and calls == [], "a built image is reused"
    monkeypatch.setattr(boot_main, "MIRROR", "http://mirror.example/debian")
    assert boot_main.image(lambda _: None).rootfs.parent != built.rootfs.parent, "another mirror, another image"


def test_the_maintainer_scripts_make_the_users_and_owners_the_real_packages_make():
    """consul .release/linux/preinstall and postinstall (commits b5f1d821, 34d62a9c), nomad
    .release/linux/preinst and postinst at v2.0.5, vault .release/linux/preinst and postinst (commits
    209b36c3, 1e1cc61e), consul-k8s .release/linux/postinst (commit 6b1b1346)."""
    scripts = {p.name: p for p in standins.packages(SETTINGS.versions)}
    for name in ("consul", "nomad"):
        assert f"useradd --system --user-group --shell /bin/false {name}\n" in scripts[name].preinst
    assert "useradd --system --user-group --home-dir /opt/vault --shell /bin/false vault\n" in scripts["vault"].preinst
    assert scripts["consul-cni"].preinst is None
    assert scripts["consul"].postinst.splitlines()[1:4] == [
        "mkdir -p /opt/consul", "chown -R consul:consul /opt/consul", "chown -R consul:consul /etc/consul.d"
    ]  # fmt: skip
    assert scripts["nomad"].postinst.splitlines()[1:4] == [
        "mkdir -p /opt/nomad/data", "chown nomad:nomad /opt/nomad/data", "chown -R nomad:nomad /etc/nomad.d"
    ]  # fmt: skip
    # The self-signed key a baked image must not keep (seal_image removes it), made as the real one makes it.
    assert scripts["vault"].postinst.splitlines()[1:12] == [
        "if [[ -f /opt/vault/tls/tls.crt ]] && [[ -f /opt/vault/tls/tls.key ]]; then", "  exit 0", "fi",
        "mkdir --parents /opt/vault/tls /opt/vault/data", "cd /opt/vault/tls",
        "openssl req -out tls.crt -new -keyout tls.key -newkey rsa:4096 -nodes -sha256 -x509 -subj /O=HashiCorp/CN=Vault "
        "-days 1095 2>/dev/null",
        "chown --recursive vault:vault /etc/vault.d", "chown --recursive vault:vault /opt/vault",
        "chmod 600 /opt/vault/tls/tls.crt /opt/vault/tls/tls.key", "chmod 700 /opt/vault/tls",
        "if [ -d /run/systemd/system ]; then",
    ]  # fmt: skip
    assert scripts["consul-cni"].postinst == (
        "#!/bin/sh\nmkdir -p /opt/cni/bin\nln -s /usr/bin/consul-cni /opt/cni/bin/consul-cni\n"
    )
    for name in ("consul", "nomad", "vault"):
        assert scripts[name].postinst.endswith("    systemctl --system daemon-reload >/dev/null || true\nfi\n")
    # The packaged example configs, which the bootstrap removes (nomad's runs a one-node server).
    assert "bootstrap_expect = 1" in scripts["nomad"].conffiles["/etc/nomad.d/nomad.hcl"]
    assert scripts["nomad"].conffiles["/etc/nomad.d/nomad.env"] == ""


def test_the_debs_carry_their_maintainer_scripts_executable(repository, tmp_path):
    _, debs, _ = repository
    for deb in debs:
        control = tmp_path / deb.name
        subprocess.run(["dpkg-deb", "--control", str(deb), str(control)], check=True)
        assert os.access(control / "postinst", os.X_OK), deb.name
        assert (control / "preinst").exists() == (not deb.name.startswith("consul-cni")), deb.name
        assert "Depends: python3\n" in (control / "control").read_text()
    binary = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(debs[1])], capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(binary)) as archive:
        member = archive.getmember("./usr/bin/nomad")
        assert member.mode == 0o755 and member.uid == 0
        assert b'VERSION = "2.0.7"' in archive.extractfile(member).read()


def test_the_release_file_names_the_suite_component_and_architecture(repository):
    work, _, _ = repository
    release = (work / "www/dists/bookworm/Release").read_text()
    for field in ("Suite: bookworm", "Codename: bookworm", "Components: main", "Architectures: amd64"):
        assert f"{field}\n" in release
    packages = work / "www/dists/bookworm/main/binary-amd64"
    assert gzip.decompress((packages / "Packages.gz").read_bytes()) == (packages / "Packages").read_bytes()
    assert "Filename: pool/main/consul-cni_2.0.3-1_amd64.deb\n" in (packages / "Packages").read_text()
    assert (work / "www/pool/main/vault_2.1.1-1_amd64.deb").exists()


def test_the_throwaway_ca_issues_node_certificates_and_copies_keep_the_key_private(tmp_path):
    ca = ThrowawayCa(tmp_path / "ca", days=5)
    issued = ca.issue("server-0", ["server.dc1.consul", "localhost"], ["127.0.0.1", "192.168.142.10"])
    verify = subprocess.run(["openssl", "verify", "-CAfile", str(tmp_path / "ca/ca.pem"), str(issued.cert_path)],
                            capture_output=True, text=True)  # fmt: skip
    assert verify.returncode == 0, verify.stderr
    text = subprocess.run(["openssl", "x509", "-noout", "-text", "-in", str(issued.cert_path)], capture_output=True,
                          text=True, check=True).stdout  # fmt: skip
    assert "DNS:server.dc1.consul, DNS:localhost, IP Address:127.0.0.1, IP Address:192.168.142.10" in text
    assert "TLS Web Server Authentication, TLS Web Client Authentication" in text
    assert issued.key_pem.startswith("-----BEGIN EC PRIVATE KEY-----")
    assert issued.cert_pem == issued.cert_path.read_text() and ca.cert_pem.startswith("-----BEGIN CERTIFICATE-----")
    end = subprocess.run(["openssl", "x509", "-noout", "-checkend", str(4 * 86400), "-in", str(tmp_path / "ca/ca.pem")])
    assert end.returncode == 0, "the CA lives the days asked for"
    copy = ThrowawayCa(tmp_path / "copy", source=tmp_path / "ca")
    assert copy.cert_pem == ca.cert_pem
    assert (tmp_path / "copy/ca.key").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "copy").stat().st_mode & 0o777 == 0o700


# --- stock and baked images -------------------------------------------------------------------------


def test_a_server_from_the_baked_image_leaves_its_docker_off():
    """The baked image holds Docker for clients, disabled (seal_image); a server never starts it. A stock
    server has no Docker at all (systemctl show reports an unknown unit as inactive, no unit file state)."""
    base = {"consul": RUNNING, "nomad": RUNNING, "vault": RUNNING}
    assert checks.unit_problems({"units": {**base, "docker": unit("inactive", "dead", "disabled")}}, Role.SERVER) == []
    assert checks.unit_problems({"units": {**base, "docker": unit("inactive", "dead", "")}}, Role.SERVER) == []
    assert checks.unit_problems({"units": {**base, "docker": RUNNING}}, Role.SERVER) == [
        "docker.service is enabled and active on a server, expected not enabled and inactive"
    ]
    assert checks.unit_problems({"units": {**base, "docker": unit("active", "running", "disabled")}}, Role.SERVER) == [
        "docker.service is disabled and active on a server, expected not enabled and inactive"
    ]
    assert checks.unit_problems({"units": {**base, "docker": unit("inactive", "dead")}}, Role.SERVER) == [
        "docker.service is enabled and inactive on a server, expected not enabled and inactive"
    ]


def test_a_client_from_the_baked_image_leaves_its_vault_off():
    """The baked image holds Vault for servers; a boot test saw a client run it, crash-looping without a
    configuration (systemd's first boot had enabled it by preset)."""
    base = {"consul": unit("activating", "start"), "nomad": RUNNING, "docker": RUNNING,
            "hashistack-task-firewall": unit("active", "exited")}  # fmt: skip
    assert checks.unit_problems({"units": {**base, "vault": unit("inactive", "dead", "disabled")}}, Role.CLIENT) == []
    assert checks.unit_problems({"units": {**base, "vault": unit("inactive", "dead", "")}}, Role.CLIENT) == []
    assert checks.unit_problems({"units": {**base, "vault": unit("activating", "auto-restart")}}, Role.CLIENT) == [
        "vault.service is enabled and activating on a client, expected not enabled and inactive"
    ]


# What the stand-ins log (standin-agent.py): one start, then what they serve, or an error and an exit.
def started(agent: str, *then: str) -> list[str]:
    return [f"[{agent} stand-in] v1 starting as uid 0", *(f"[{agent} stand-in] {line}" for line in then)]


def test_each_agent_starts_once_after_its_configuration():
    server = {"consul": started("consul", "HTTPS on x"), "nomad": started("nomad"), "vault": started("vault")}
    assert checks.agent_start_problems({"agent_log": server}, Role.SERVER) == []
    client = {"consul": started("consul"), "nomad": started("nomad"), "vault": []}
    assert checks.agent_start_problems({"agent_log": client}, Role.CLIENT) == []
    # The old baked image: systemd started every agent at boot, before the boot script had configured it.
    early = started("nomad", "error: loading /etc/nomad.d/tls/agent-key.pem: No such file or directory") * 4
    assert checks.agent_start_problems({"agent_log": {**server, "nomad": early + started("nomad")}}, Role.SERVER) == [
        "nomad started 5 times in this boot, expected 1",
        *["nomad logged: [nomad stand-in] error: loading /etc/nomad.d/tls/agent-key.pem: No such file or directory"]
        * 3,
    ]
    assert checks.agent_start_problems({"agent_log": {**client, "vault": started("vault")}}, Role.CLIENT) == [
        "vault started 1 times in this boot, expected 0"
    ]
    assert checks.agent_start_problems({"agent_log": {**server, "vault": []}}, Role.SERVER) == [
        "vault started 0 times in this boot, expected 1"
    ]
    # An error after a single start is one too (an agent that cannot read its files stops).
    denied = started("consul", "error: loading /etc/consul.d/secrets.hcl: Permission denied")
    assert checks.agent_start_problems({"agent_log": {**client, "consul": denied}}, Role.CLIENT) == [
        "consul logged: [consul stand-in] error: loading /etc/consul.d/secrets.hcl: Permission denied"
    ]
    assert checks.agent_start_problems({}, Role.CLIENT) == [
        "consul started 0 times in this boot, expected 1", "nomad started 0 times in this boot, expected 1",
    ], "no log collected is no start"  # fmt: skip


def test_no_two_boots_share_a_machine_id():
    assert checks.shared_machine_ids({"client-0": "a1", "server-0": "b2", "failure": "c3"}) == {}
    # What the boot test's Debian image did, D-Bus's machine ID copied to every node.
    assert checks.shared_machine_ids({"client-0": "a1", "server-0": "a1", "failure": "a1", "client-0-baked": "b2"}) == {
        "client-0": "machine ID a1 is also failure, server-0's: the image gave its own",
        "server-0": "machine ID a1 is also client-0, failure's: the image gave its own",
        "failure": "machine ID a1 is also client-0, server-0's: the image gave its own",
    }
    assert checks.shared_machine_ids({"client-0": "", "server-0": ""}) == {}, "a boot with no facts has no ID"


def test_each_boot_takes_the_install_path_its_image_calls_for():
    skipped = f"==> checking what the image holds\n==> {checks.SKIPPED_INSTALL}\n"
    installed = "==> not in the image: ca-certificates\n==> installing consul=2.0.4-1 nomad=2.0.7-1\n"
    assert checks.install_path_problems(skipped, baked=True) == []
    assert checks.install_path_problems(installed, baked=False) == []
    assert checks.install_path_problems(installed, baked=True) == [
        "booted from the baked image, the bootstrap installed instead of using what the image holds"
    ]
    assert checks.install_path_problems(skipped + installed, baked=True), "skipped and still installed"
    assert checks.install_path_problems(skipped, baked=False) == [
        "booted from the stock image, the bootstrap did not install the agents"
    ]
    assert checks.install_path_problems("", baked=False) and checks.install_path_problems("", baked=True)


def test_a_baked_client_holds_envoy_and_a_stock_one_leaves_it_to_the_first_task():
    image = "docker.io/envoyproxy/envoy:v1.37.4"
    held = {"docker_images": "envoyproxy/envoy:v1.37.4\n", "bootstrap_log": ""}
    assert checks.envoy_problems(held, Role.CLIENT, True, image) == []
    empty = {"docker_images": "\n", "bootstrap_log": f"==> not in the image: {image} (Docker pulls it ...)\n"}
    assert checks.envoy_problems(empty, Role.CLIENT, True, image) == [
        "booted from the baked image, Docker does not hold envoyproxy/envoy:v1.37.4: ''"
    ]
    assert checks.envoy_problems(empty, Role.CLIENT, False, image) == []
    assert checks.envoy_problems(held, Role.CLIENT, False, image) == [
        f"booted from the stock image, the bootstrap did not say {image} is left to the first task"
    ]
    assert checks.envoy_problems({}, Role.SERVER, True, image) == [], "servers run no Docker"


def test_the_report_compares_the_same_node_from_both_images():
    assert boot_main.BOOTS[boot_main.STOCK_BOOT][:2] == ("client-0", False)
    assert boot_main.BOOTS[boot_main.BAKED_BOOT][:2] == ("client-0", True)
    # Two waves of two: each measured client beside a server of the same shape booting the baked image.
    waves = [[n for n, boot in boot_main.BOOTS.items() if boot[5] == w] for w in (1, 2)]
    assert waves == [["client-0", "server-0"], ["client-0-baked", "failure"]]
    assert boot_main.BOOTS["server-0"][0:2] == boot_main.BOOTS["failure"][0:2] == ("server-0", True)
    assert boot_main.BOOTS["server-0"][3:5] == boot_main.BOOTS["failure"][3:5], "the same memory and vCPUs"
    done = "hashistack-bootstrap: done"
    results = {
        "client-0": boot_main.Result("client-0", done, 480.4, bootstrap_seconds=390),
        "client-0-baked": boot_main.Result("client-0-baked", done, 120.2, bootstrap_seconds=30),
    }
    found = boot_main.comparison(results)
    assert found == {"node": "client-0", "stock_seconds": 480, "baked_seconds": 120, "ratio": 0.25, "goal": 0.333,
                     "met": True, "stock_bootstrap_seconds": 390, "baked_bootstrap_seconds": 30,
                     "ratio_without_script": 0.188}  # fmt: skip
    assert boot_main.ratio_line(found) == (
        "client-0: stock image 480 s, baked image 120 s to 'hashistack-bootstrap: done'; baked/stock = 0.25 "
        "(goal <= 0.33: met); the boot script alone: 390 s and 30 s; with no boot script at all the baked boot "
        "would be 0.19 of the stock one"
    )
    # No script time read for the baked boot (no facts): the line says nothing of either.
    slow = {**results, "client-0-baked": boot_main.Result("client-0-baked", done, 170.0)}
    assert boot_main.comparison(slow)["met"] is False and "NOT met" in boot_main.ratio_line(boot_main.comparison(slow))
    assert boot_main.comparison(slow)["ratio_without_script"] is None
    assert boot_main.ratio_line(boot_main.comparison(slow)).endswith("baked/stock = 0.35 (goal <= 0.33: NOT met)")
    failed = {**results, "client-0-baked": boot_main.Result("client-0-baked", "hashistack-bootstrap: FAILED x", 9)}
    assert boot_main.comparison(failed) is None, "a failed boot is no measurement"
    assert boot_main.comparison({"client-0": results["client-0"]}) is None


def test_the_baked_boots_use_the_image_the_builder_makes_over_the_stock_one(tmp_path, monkeypatch):
    """The boot test's baked image is `make image`'s builder run over its own stock image, from the
    stand-in repository as the appliance reaches this host, into the cache beside the stock image."""
    seen = {}

    def build(base, base_format, recipe, directory, **options):
        seen.update(base=base, base_format=base_format, recipe=recipe, directory=directory, **options)
        return directory / f"{recipe.name}.qcow2"

    monkeypatch.setattr(boot_main.node_image, "build", build)
    stock = boot_main.Image(tmp_path / "debian-12-abc/rootfs.ext4", tmp_path / "vmlinuz", tmp_path / "initrd.img",
                            tmp_path / "package-ca")  # fmt: skip
    stale = tmp_path / "debian-12-abc/baked/hashistack-debian-12-000000000000.qcow2"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"")
    boot_main.node_image.manifest_path(stale).write_text('{"inputs": {"versions": {"nomad": "2.0.6"}}}')
    other_os = stale.with_name("hashistack-ubuntu-24.04-000000000000.qcow2")
    other_os.write_bytes(b"")
    image = boot_main.baked(stock, SETTINGS.versions, "F" * 40, 4443, 5443, True, print)
    # The image of other inputs is gone with its manifest; nothing else is touched.
    assert sorted(p.name for p in stale.parent.iterdir()) == [other_os.name]
    assert (seen["base"], seen["base_format"], seen["grow_root"], seen["tcg"]) == (stock.rootfs, "raw", False, True)
    assert seen["directory"] == tmp_path / "debian-12-abc/baked"
    assert seen["recipe"].base == "debian-12-abc" and seen["recipe"].package_source.key_fingerprint == "F" * 40
    assert seen["recipe"].package_source.apt_url == "https://169.254.2.2:4443/hashicorp"
    assert seen["recipe"].package_source.docker_hub_mirror == "https://169.254.2.2:5443"
    assert image.format == "qcow2" and image.rootfs == seen["directory"] / f"{seen['recipe'].name}.qcow2"
    assert (image.kernel, image.initrd) == (stock.kernel, stock.initrd)


def test_the_repository_key_is_made_once_per_home_and_kept(repository, tmp_path):
    """The baked image's name carries the key's fingerprint: the boot test keeps the key with its
    image, so that the cached image is found again on the next run."""
    work, debs, repo = repository
    again = standins.apt_repository(tmp_path / "www", "bookworm", debs, work / "gnupg")
    assert again.fingerprint == repo.fingerprint
    other = standins.apt_repository(tmp_path / "www2", "bookworm", debs, tmp_path / "gnupg", expires="10y")
    assert other.fingerprint != repo.fingerprint
    listing = subprocess.run(["gpg", "--homedir", str(tmp_path / "gnupg"), "--with-colons", "--list-keys"],
                             capture_output=True, text=True, check=True).stdout  # fmt: skip
    (expiry,) = [line.split(":")[6] for line in listing.splitlines() if line.startswith("pub:")]
    assert int(expiry) - time.time() > 9 * 365 * 86400


def test_the_failure_run_boots_a_stale_image_which_the_script_must_see():
    """Its settings pin the next Nomad patch release: the baked image holds the pinned one."""
    assert boot_main.stale_versions(SETTINGS.versions).nomad == "2.0.8" and SETTINGS.versions.nomad == "2.0.7"
    assert boot_main.stale_versions(SETTINGS.versions).consul == SETTINGS.versions.consul
    seen = "==> not in the image: nomad=2.0.8-1 (found: 2.0.7-1)\n==> adding the HashiCorp apt repository\n"
    assert checks.stale_image_problems(seen, "2.0.8") == []
    assert checks.stale_image_problems("==> the image holds the pinned versions\n", "2.0.8") == [
        "the image's other Nomad went unnoticed: no 'not in the image: nomad=2.0.8-1' in the log"
    ]


def test_the_boot_scripts_own_time_runs_from_its_first_line_to_done():
    log = "==> [23:59:50] hashistack bootstrap: role=client secrets=inline\n==> [23:59:55] checking\n==> [00:00:20] done\n"
    assert checks.step_seconds(log, checks.BOOTSTRAP_START, "done") == 30
    assert checks.step_seconds(log, checks.BOOTSTRAP_START) is None, "no FAILED line"
