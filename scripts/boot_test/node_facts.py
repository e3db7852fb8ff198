"""Run inside a booted VM as root (`sudo python3 -`): prints what the boot test asserts, as JSON.

Standard library only (the guest's python3). Collects the owner, group and mode of every file under
the node's directories, the state of its units, what its agents logged, its machine ID, systemd-resolved's
view and the boot script's log.
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
AGENTS = ("consul", "nomad", "vault")
START_PROPERTIES = "Id,InactiveExitTimestampMonotonic,ActiveEnterTimestampMonotonic,InactiveEnterTimestampMonotonic"


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


def agent_log(unit: str) -> list[str]:
    """Every line the unit's stand-in agent logged in this boot (each start, each error), not only the last."""
    return [line for line in run("journalctl", "-b", "--no-pager", "-o", "cat", "-u", unit).splitlines()
            if "stand-in]" in line]  # fmt: skip


def start_times(show: str) -> list[str]:
    """`systemctl show` blocks -> `12.891s apparmor.service` lines, longest first: each unit's time from
    leaving inactive to entering active (or, for one that has finished, inactive again), as `systemd-analyze
    blame` computes it (systemd src/analyze/analyze-time-data.c, acquire_time_data, read at 05626b27).
    Debian 12's blame (systemd 252) refuses while the boot is unfinished ("Bootup is not yet finished", seen
    in the facts; later releases pass require_finished false, analyze-blame.c at 01a4b10f), and a client's
    stays unfinished in the boot test: its Consul waits, activating, for a token no server makes."""
    times = []
    for block in show.split("\n\n"):
        unit = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        activating, activated, deactivated = (int(unit.get(key) or 0) for key in START_PROPERTIES.split(",")[1:])
        took = next((end - activating for end in (activated, deactivated) if end >= activating), 0)
        if activating and took:
            times.append((took, unit["Id"]))
    return [f"{micros / 1e6:7.3f}s {name}" for micros, name in sorted(times, key=lambda t: (-t[0], t[1]))]


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
        "journal": {u: run("journalctl", "-b", "--no-pager", "-n", "30", "-u", u) for u in AGENTS},
        "vault_health": run(*VAULT_HEALTH),
        "machine_id": read("/etc/machine-id").strip(),
        "agent_log": {u: agent_log(u) for u in AGENTS},
        "docker_images": run("docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}}"),
        # Where the boot's time went, for reading (the report does not assert on it).
        "boot_timing": {
            "systemd": run("systemd-analyze", "time"),
            "critical_chain": run("systemd-analyze", "critical-chain", "--no-pager", "cloud-final.service"),
            "blame": run("systemd-analyze", "blame", "--no-pager"),
            "start_times": start_times(run("systemctl", "show", f"--property={START_PROPERTIES}", "*")),
            "cloud_init": run("cloud-init", "analyze", "blame"),
        },
    }
    json.dump(facts, sys.stdout)


if __name__ == "__main__":
    main()
