"""What a booted node must show, as pure functions of the facts node_facts.py collects (so each
check is unit-tested with facts of both kinds, tests/test_boot_test.py).

The expectations are the README's promises ("What a node gets", boot sequence steps 4 to 6): every
file the node's user-data writes, in place with its owner and mode after the bootstrap has handed
each agent's directory to its group; the agents' units enabled and in the state the start order
promises; systemd-resolved forwarding the cluster's domain to Consul; the console's verdict.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from components.nodes import node_config
from components.nodes.node_config import ClusterSpec, NodeMaterial, NodeSpec, Role

# Each agent's configuration directory goes to its group, files 0640 (the bootstrap's install_agent_files).
AGENT_DIRECTORIES = {"/etc/consul.d": "root:consul", "/etc/nomad.d": "root:root", "/etc/vault.d": "root:vault"}
# Placed by the packages' examples, removed by the bootstrap (ours are agent.hcl and vault.hcl).
REMOVED = ("/etc/consul.d/consul.hcl", "/etc/nomad.d/nomad.hcl", "/etc/vault.d/vault.hcl.dpkg-dist",
           "/etc/vault.d/vault.env.dpkg-dist")  # fmt: skip


STUB_RESOLV_CONF = "/run/systemd/resolve/stub-resolv.conf"


@dataclass(frozen=True)
class Expected:
    owner: str
    mode: str


def expected_files(cluster: ClusterSpec, node: NodeSpec) -> dict[str, Expected]:
    """Path -> owner and mode of every file the node must have once the bootstrap is done."""
    expected: dict[str, Expected] = {}
    material = NodeMaterial(**dict.fromkeys(NodeMaterial.__dataclass_fields__, ""))  # contents do not matter here
    for f in node_config.node_files(cluster, node, material):
        directory = next((d for d in AGENT_DIRECTORIES if f.path.startswith(d + "/")), None)
        expected[f.path] = (
            Expected(AGENT_DIRECTORIES[directory], "0640") if directory else Expected("root:root", f.mode)
        )
    agents = {"/etc/consul.d": ("agent.pem", "agent-key.pem"), "/etc/nomad.d": ("agent.pem", "agent-key.pem")}
    if node.role is Role.SERVER:
        agents["/etc/vault.d"] = ("vault.pem", "vault-key.pem")
    for directory, (cert, key) in agents.items():
        group = AGENT_DIRECTORIES[directory]
        expected[directory] = expected[f"{directory}/tls"] = Expected(group, "0750")
        for name in ("ca.pem", cert, key):
            expected[f"{directory}/tls/{name}"] = Expected(group, "0640")
    expected["/opt/consul"] = Expected("consul:consul", "0750")
    expected["/opt/nomad/data"] = Expected("root:root", "0700")
    if node.role is Role.SERVER:
        for path in ("/opt/vault", "/opt/vault/data", "/var/log/vault"):
            expected[path] = Expected("vault:vault", "0750")
    else:
        expected["/etc/hashistack/public/ca.pem"] = Expected("root:root", "0644")
        expected["/opt/cni/bin/bridge"] = Expected("root:root", "0755")
        expected["/etc/systemd/resolved.conf.d/docker-stub.conf"] = Expected("root:root", "0644")
        expected["/etc/docker/daemon.json"] = Expected("root:root", "0644")
    return expected


def file_problems(facts: dict, expected: dict[str, Expected]) -> list[str]:
    problems = []
    found = facts["files"]
    for path, want in sorted(expected.items()):
        have = found.get(path)
        if have is None:
            problems.append(f"{path}: missing")
        elif (have["owner"], have["mode"]) != (want.owner, want.mode):
            problems.append(f"{path}: {have['owner']} {have['mode']}, expected {want.owner} {want.mode}")
    problems += [f"{path}: still present (the bootstrap removes it)" for path in REMOVED if path in found]
    if any(p.startswith("/opt/cni/") for p in expected):  # a client
        link = found.get("/opt/cni/bin/consul-cni")
        if not link or link["kind"] != "link":
            problems.append("/opt/cni/bin/consul-cni: not a link to the consul-cni package's binary")
    return problems


def _unit(facts: dict, name: str) -> dict:
    return facts["units"].get(name, {})


OTHER_ROLES_UNITS = {Role.SERVER: ("docker",), Role.CLIENT: ("vault",)}
AGENTS = {Role.SERVER: ("consul", "nomad", "vault"), Role.CLIENT: ("consul", "nomad")}


def unit_problems(facts: dict, role: Role) -> list[str]:
    """Server: Consul (joined), Nomad and Vault running. Client: the task firewall loaded, Nomad
    running, Consul still starting: it waits for its certificate, which needs the servers and the
    agent token the bootstrap creates after every server's gate."""
    want = {"consul": ("active", "running"), "nomad": ("active", "running")}
    if role is Role.SERVER:
        want["vault"] = ("active", "running")
    else:
        want["consul"] = ("activating", "start")
        want["hashistack-task-firewall"] = ("active", "exited")
        want["docker"] = ("active", "running")
    problems = []
    # A baked image holds both roles' software; a node must not run the other role's (seal_image).
    for name in OTHER_ROLES_UNITS[role]:
        unit = _unit(facts, name)
        if unit.get("ActiveState") not in (None, "inactive") or unit.get("UnitFileState") == "enabled":
            problems.append(f"{name}.service is {unit.get('UnitFileState')} and {unit.get('ActiveState')} on a "
                            f"{role.value}, expected not enabled and inactive")  # fmt: skip
    for name, (active, sub) in want.items():
        unit = _unit(facts, name)
        if unit.get("UnitFileState") != "enabled":
            problems.append(f"{name}.service is {unit.get('UnitFileState', 'unknown')}, expected enabled")
        if (unit.get("ActiveState"), unit.get("SubState")) != (active, sub):
            problems.append(
                f"{name}.service is {unit.get('ActiveState')} ({unit.get('SubState')}), expected {active} ({sub})"
            )
    return problems


def agent_start_problems(facts: dict, role: Role) -> list[str]:
    """Each of the role's agents started once, by the boot script, after its configuration; the other
    role's never. A start before it (systemd's own, at boot) is a stand-in that stops with an error and
    is started again, as the real agents do without their certificates."""
    problems = []
    for name in ("consul", "nomad", "vault"):
        lines = facts.get("agent_log", {}).get(name, [])
        starts = sum(" starting as uid " in line for line in lines)
        wanted = 1 if name in AGENTS[role] else 0
        if starts != wanted:
            problems.append(f"{name} started {starts} times in this boot, expected {wanted}")
        problems += [f"{name} logged: {line}" for line in lines if "stand-in] error:" in line][:3]
    return problems


def shared_machine_ids(machine_ids: dict[str, str]) -> dict[str, str]:
    """Boot -> a problem, for each boot whose machine ID another boot has too: an image that hands its
    own to every node (D-Bus's copy, which systemd takes when /etc/machine-id is empty)."""
    problems = {}
    for name, machine_id in machine_ids.items():
        others = sorted(other for other, theirs in machine_ids.items() if other != name and theirs == machine_id)
        if machine_id and others:
            problems[name] = f"machine ID {machine_id} is also {', '.join(others)}'s: the image gave its own"
    return problems


SKIPPED_INSTALL = "the image holds the pinned versions: skipping download and install"
INSTALLING = "installing consul="


def install_path_problems(bootstrap_log: str, baked: bool) -> list[str]:
    """The boot took the path its image calls for: a baked image's skips download and install, a stock
    image's installs the agents (cloudinit/hashistack-bootstrap.sh, install_software)."""
    skipped, installed = SKIPPED_INSTALL in bootstrap_log, INSTALLING in bootstrap_log
    if baked and (installed or not skipped):
        return ["booted from the baked image, the bootstrap installed instead of using what the image holds"]
    if not baked and (skipped or not installed):
        return ["booted from the stock image, the bootstrap did not install the agents"]
    return []


def envoy_problems(facts: dict, role: Role, baked: bool, image: str) -> list[str]:
    """A client from the baked image has Envoy in Docker, loaded from the image; one from the stock image
    leaves it to the first Connect task. Docker lists Docker Hub's images without `docker.io/`."""
    if role is not Role.CLIENT:
        return []
    listed = image.removeprefix("docker.io/")
    held = listed in facts["docker_images"].split()
    if baked and not held:
        return [f"booted from the baked image, Docker does not hold {listed}: {facts['docker_images'].strip()!r}"]
    if not baked and f"not in the image: {image}" not in facts["bootstrap_log"]:
        return [f"booted from the stock image, the bootstrap did not say {image} is left to the first task"]
    return []


def stale_image_problems(bootstrap_log: str, pinned_nomad: str) -> list[str]:
    """A baked image of other versions is seen as such: the script names what differs, then installs."""
    if f"not in the image: nomad={pinned_nomad}-1 (found: " not in bootstrap_log:
        return [f"the image's other Nomad went unnoticed: no 'not in the image: nomad={pinned_nomad}-1' in the log"]
    return []


def resolver_problems(facts: dict, cluster: ClusterSpec, node: NodeSpec) -> list[str]:
    """resolved sends *.<domain> to Consul on 127.0.0.1:8600 and everything else where it did before;
    on a server the stand-in Consul answers consul.service.<domain> through it; on a client resolved
    also listens on the node's address (for containers)."""
    problems = []
    status = facts["resolved_status"]
    if "127.0.0.1:8600" not in status:
        problems.append("systemd-resolved does not name 127.0.0.1:8600 (Consul DNS) as a server")
    if f"~{cluster.domain}" not in status:
        problems.append(f"systemd-resolved has no routing domain ~{cluster.domain}")
    if not re.search(r"deb\.debian\.org: \d+\.\d+\.\d+\.\d+", facts["query_outside"]):
        problems.append(f"names outside the cluster no longer resolve: {facts['query_outside'].strip()[:200]}")
    if facts["resolv_conf"] != STUB_RESOLV_CONF:
        problems.append(
            f"/etc/resolv.conf leads to {facts['resolv_conf']}, not resolved's stub {STUB_RESOLV_CONF}:"
            f" programs that read it never see the ~{cluster.domain} routing"
        )
    if node.role is Role.SERVER:
        if not facts["getent_consul"].startswith(f"{node.address} "):
            problems.append(
                f"getent (libc, through /etc/resolv.conf) did not resolve consul.service.{cluster.domain} to"
                f" {node.address}: {facts['getent_consul'].strip()[:200] or 'no answer'}"
            )
        if f"consul.service.{cluster.domain}: {node.address}" not in facts["query_consul"]:
            problems.append(
                f"consul.service.{cluster.domain} did not resolve to {node.address} through systemd-resolved:"
                f" {facts['query_consul'].strip()[:200]}"
            )
    elif f"{node.address}:53 " not in facts["udp_listeners"]:
        problems.append(f"systemd-resolved does not listen on {node.address}:53 (DNSStubListenerExtra, for containers)")
    return problems


def console_problems(console: str, verdict: str | None) -> list[str]:
    lines = [line for line in console.splitlines() if line.startswith("hashistack-bootstrap: ")]
    if verdict != "hashistack-bootstrap: done":
        return [f"the boot script ended with {verdict!r}, expected 'hashistack-bootstrap: done'"]
    if lines != ["hashistack-bootstrap: done"]:
        return [f"the console's boot-script lines are {lines}, expected exactly one 'done'"]
    return []


def failure_problems(console: str, step: str, budget_seconds: float, took_seconds: float | None) -> list[str]:
    """The failure run: one FAILED line naming `step`, within the retry budget."""
    failed = [line for line in console.splitlines() if line.startswith("hashistack-bootstrap: FAILED")]
    problems = []
    if len(failed) != 1:
        problems.append(f"expected one FAILED line on the console, found {len(failed)}: {failed}")
    elif f"FAILED while {step}" not in failed[0] or "Then re-run: sudo" not in failed[0]:
        problems.append(f"the FAILED line does not name the step {step!r} and what to do: {failed[0]}")
    if took_seconds is None:
        problems.append("the boot log does not show how long the failing step took")
    elif took_seconds > budget_seconds:
        problems.append(f"the failing step took {took_seconds:.0f} s, over the retry budget of {budget_seconds:.0f} s")
    return problems


BOOTSTRAP_START = "hashistack bootstrap: role="


def step_seconds(bootstrap_log: str, step: str, until: str = "FAILED") -> float | None:
    """Seconds from the log line that starts `step` to the first line starting `until` (the FAILED line;
    `done` for the whole run from BOOTSTRAP_START). Timestamps are HH:MM:SS."""
    stamps = re.findall(r"^==> \[(\d\d):(\d\d):(\d\d)\] (.*)$", bootstrap_log, re.MULTILINE)
    start = next((s for s in stamps if s[3].startswith(step)), None)
    end = next((s for s in stamps if s[3].startswith(until)), None)
    if not start or not end:
        return None

    def seconds(stamp: tuple[str, ...]) -> int:
        return int(stamp[0]) * 3600 + int(stamp[1]) * 60 + int(stamp[2])

    return (seconds(end) - seconds(start)) % 86400
