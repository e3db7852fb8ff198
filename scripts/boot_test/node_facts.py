"""Run inside a booted VM as root (`sudo python3 -`): prints what the boot test asserts, as JSON.

Standard library only (the guest's python3). Collects the owner, group and mode of every file under
the node's directories, the state of its units, systemd-resolved's view and the boot script's log.
"""

import grp
import json
import os
import pwd
import stat
import subprocess
import sys

ROOTS = [
    "/etc/hashistack", "/etc/consul.d", "/etc/nomad.d", "/etc/vault.d", "/opt/consul", "/opt/nomad",
    "/opt/vault", "/opt/cni", "/var/log/vault", "/etc/systemd/system", "/etc/systemd/resolved.conf.d",
    "/etc/docker", "/usr/local/sbin", "/etc/sysctl.d", "/etc/modules-load.d", "/etc/logrotate.d/vault-audit",
]  # fmt: skip
UNITS = ["consul", "nomad", "vault", "docker", "hashistack-task-firewall", "systemd-resolved", "cloud-final"]
VAULT_HEALTH = ("curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", "/etc/hashistack/tls/ca.pem",
                "https://127.0.0.1:8200/v1/sys/health")  # fmt: skip
PROPERTIES = "LoadState,ActiveState,SubState,UnitFileState,Result,NRestarts"


def run(*command: str) -> str:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    return done.stdout + done.stderr


def read(path: str) -> str:
    if not os.path.exists(path):
        return ""
    with open(path, encoding="utf-8", errors="replace") as handle:
        return handle.read()


def describe(path: str) -> dict:
    info = os.lstat(path)
    kind = "dir" if stat.S_ISDIR(info.st_mode) else "link" if stat.S_ISLNK(info.st_mode) else "file"
    try:
        owner = pwd.getpwuid(info.st_uid).pw_name
    except KeyError:
        owner = str(info.st_uid)
    try:
        group = grp.getgrgid(info.st_gid).gr_name
    except KeyError:
        group = str(info.st_gid)
    return {"owner": f"{owner}:{group}", "mode": f"{stat.S_IMODE(info.st_mode):04o}", "kind": kind}


def files() -> dict:
    found = {}
    for root in ROOTS:
        if not os.path.lexists(root):
            continue
        found[root] = describe(root)
        for directory, dirs, names in os.walk(root):
            for name in dirs + names:
                path = os.path.join(directory, name)
                found[path] = describe(path)
    return found


def units() -> dict:
    states = {}
    for unit in UNITS:
        text = run("systemctl", "show", f"{unit}.service", f"--property={PROPERTIES}")
        states[unit] = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    return states


def main() -> None:
    domain = sys.argv[1] if len(sys.argv) > 1 else "consul"
    facts = {
        "files": files(),
        "units": units(),
        "resolv_conf": os.path.realpath("/etc/resolv.conf"),
        "resolved_status": run("resolvectl", "status"),
        "query_consul": run("resolvectl", "query", "--legend=no", "-4", f"consul.service.{domain}"),
        "getent_consul": run("getent", "ahostsv4", f"consul.service.{domain}"),
        "query_outside": run("resolvectl", "query", "--legend=no", "-4", "deb.debian.org"),
        "udp_listeners": run("ss", "-Hlun"),
        "bootstrap_log": read("/var/log/hashistack-bootstrap.log"),
        "cloud_init": run("cloud-init", "status", "--long"),
        "journal": {
            u: run("journalctl", "-b", "--no-pager", "-n", "30", "-u", u) for u in ("consul", "nomad", "vault")
        },
        "vault_health": run(*VAULT_HEALTH),
        "docker_images": run("docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}}"),
        # Where the boot's time went, for reading (the report does not assert on it).
        "boot_timing": {
            "systemd": run("systemd-analyze", "time"),
            "critical_chain": run("systemd-analyze", "critical-chain", "--no-pager", "cloud-final.service"),
            "blame": run("systemd-analyze", "blame", "--no-pager"),
            "cloud_init": run("cloud-init", "analyze", "blame"),
        },
    }
    json.dump(facts, sys.stdout)


main()
