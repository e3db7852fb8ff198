"""The job rules on a task's isolation from its node: no raw_exec driver ("no-raw-exec"); docker and
exec/java tasks kept to their sandbox, mounts inside the allocation directory ("task-sandboxed"); and a
task in the host's network namespace saying why and running as a numeric non-root uid
("host-network-exception")."""

from __future__ import annotations

import json
import posixpath
from typing import Any

from components.workloads.job_model import Group, Task, _blocks, _is_expression, _one
from components.workloads.rule_framework import JobContext, Rule, Scope
from components.workloads.rules.images import IMAGE_DRIVERS

# Drivers that run a task in its group's network namespace, which is the host's unless the group's
# network mode isolates it: the exec and java drivers support the "host" and "group" isolation modes
# only (driverCapabilities in drivers/exec/driver.go and drivers/java/driver.go@v2.0.5), and the
# executor joins a network namespace only when the alloc has one (NetworkIsolation,
# drivers/shared/executor/executor_linux_cgo.go@v2.0.5).
GROUP_NETWORK_DRIVERS = frozenset({"exec", "java"})
# The task meta key by which a job states why a task runs in the host's network namespace (the rule
# "host-network-exception"); Nomad passes it to the task as NOMAD_META_host_network_reason, harmlessly.
HOST_NETWORK_REASON = "host_network_reason"
# Docker run options that put a container in a namespace of the host's (pid, ipc, userns, uts,
# cgroupns = "host"); the task config keys of drivers/docker/config.go@v2.0.5. Since 2.0.4 (CVE-2026-14891)
# Nomad itself refuses any pid, ipc, uts or userns mode unless the plugin allows it (allow_privileged
# or allowed_modes; validateNamespace, drivers/docker/driver.go@v2.0.5), which this cluster's plugin
# does not; cgroupns it still passes through, so the rule keeps checking all five.
DOCKER_HOST_NAMESPACE_OPTIONS = ("pid_mode", "ipc_mode", "userns_mode", "uts_mode", "cgroupns")
# The exec and java drivers' own namespace options (taskConfigSpec, drivers/exec/driver.go@v2.0.5).
EXEC_HOST_NAMESPACE_OPTIONS = ("pid_mode", "ipc_mode")


def _no_raw_exec(ctx: JobContext) -> str | None:
    task = ctx.task
    assert task is not None
    if task.driver == "raw_exec":
        return 'driver "raw_exec" runs the task unisolated as root — use exec, docker or java'
    return None


# -- the sandbox ---------------------------------------------------------------------------------------------
# Where the rules place the allocation directory to resolve a mount source; any absolute path does,
# as the real one (<data_dir>/alloc/<alloc id>) is not known before the allocation exists.
_ALLOC_DIR = "/nomad-alloc-dir"


def host_path_problem(source: Any, task_name: str) -> str | None:
    """Why a bind-mount source is not inside the allocation directory, or None: the check Nomad's
    docker driver makes with `volumes.enabled = false` (the default; drivers/docker/config.go@v2.0.5).
    A relative source is resolved against the task directory (<alloc dir>/<task>) and cleaned, an
    absolute one only cleaned (expandPath, drivers/docker/utils.go@v2.0.5), and the result must be
    the alloc dir or under it (escapingfs.ChildEscapesParentDir, helper/escapingfs/escapes.go@v2.0.5,
    which replaced isParentPath in 2.0.4 for CVE-2026-14896 and also follows symlinks on the client:
    its path relative to the alloc dir must not leave it). This rule refuses any relative path
    starting with "..", a little more than Nomad (which passes "../..x"). So `local/x`, `secrets/x`, `../alloc/data` and `..` pass; `/etc` and `../../etc` do not.
    An absolute source can only be inside the alloc dir by naming the client's data_dir, which no job
    can know, so every absolute source counts as a host path."""
    if not isinstance(source, str):
        return f"source {source!r} is not a string"
    if _is_expression(source):
        return (
            f'source "{source}" is interpolated by Nomad at run time, which the rules cannot resolve (and'
            " ${NOMAD_ALLOC_DIR} and the like are absolute container paths there, which Nomad rejects)"
        )
    task_dir = posixpath.join(_ALLOC_DIR, task_name)
    resolved = posixpath.normpath(source if source.startswith("/") else posixpath.join(task_dir, source))
    if posixpath.relpath(resolved, _ALLOC_DIR).startswith(".."):
        return f'source "{source}" is a host path outside the allocation directory'
    return None


def _docker_sandbox_problems(task: Task) -> list[str]:
    config = task.config
    problems = []
    if config.get("privileged") is True:
        problems.append("privileged = true")
    if config.get("cap_add"):
        problems.append(f"cap_add = {json.dumps(config['cap_add'])}")
    if config.get("devices"):
        problems.append("devices (host devices)")
    for option in DOCKER_HOST_NAMESPACE_OPTIONS:
        if config.get(option) == "host":
            problems.append(f'{option} = "host"')
    # seccomp/apparmor/systempaths=unconfined and label=disable switch a confinement off
    # (parseSecurityOpts, drivers/docker/driver.go@v2.0.5, takes "key=value" or "key:value").
    for option in config.get("security_opt") or ():
        key, value = _split_opt(str(option))
        if value == "unconfined" or (key == "label" and value == "disable"):
            problems.append(f'security_opt "{option}"')
    # With a volume driver, `volumes` are named volumes: refused unless volumes are enabled
    # (containerBinds, drivers/docker/driver.go@v2.0.5).
    if config.get("volume_driver"):
        problems.append(f'volume_driver = "{config["volume_driver"]}" (a Docker volume, outside the allocation)')
    else:
        for volume in config.get("volumes") or ():
            parts = volume.split(":") if isinstance(volume, str) else []
            if len(parts) < 2:  # parseVolumeSpecLinux, drivers/docker/utils.go@v2.0.5
                problems.append(f"volumes entry {json.dumps(volume)} is not <source>:<destination>[:<mode>]")
                continue
            problem = host_path_problem(parts[0], task.name)
            if problem:
                problems.append(f'volumes entry "{volume}": {problem}')
    # `mount` blocks and the `mounts` list (toDockerMount, drivers/docker/driver.go@v2.0.5): a bind
    # is checked like a volume; tmpfs has no source; any other type (default "volume") is refused.
    for mount in [*_blocks(config, "mount"), *_blocks(config, "mounts")]:
        kind = mount.get("type", "volume")
        if kind == "bind":
            problem = host_path_problem(mount.get("source", ""), task.name)
            if problem:
                problems.append(f'mount of type "bind": {problem}')
        elif kind != "tmpfs":
            problems.append(f'mount of type "{kind}" ({mount.get("source", "?")}), a Docker volume')
    return problems


def _split_opt(option: str) -> tuple[str, str]:
    """A security_opt as (key, value): "key=value", else "key:value" (parseSecurityOpts)."""
    for separator in ("=", ":"):
        if separator in option:
            key, value = option.split(separator, 1)
            return key, value
    return option, ""


def _exec_sandbox_problems(task: Task) -> list[str]:
    config = task.config
    problems = [f'{option} = "host"' for option in EXEC_HOST_NAMESPACE_OPTIONS if config.get(option) == "host"]
    if config.get("cap_add"):
        problems.append(f"cap_add = {json.dumps(config['cap_add'])}")
    return problems


def _task_sandboxed(ctx: JobContext) -> str | None:
    task = ctx.task
    assert task is not None
    if task.driver in IMAGE_DRIVERS:
        problems = _docker_sandbox_problems(task)
    elif task.driver in GROUP_NETWORK_DRIVERS:
        problems = _exec_sandbox_problems(task)
    else:
        return None
    if problems:
        return (
            "; ".join(problems)
            + " — a task keeps to its sandbox: no privileged mode, added capabilities, host namespaces or"
            " host mounts; mount only paths inside the allocation (local/..., secrets/..., ../alloc/...) or a"
            ' Nomad volume with volume_mount (e.g. the read-only "cluster-ca" host volume)'
        )
    return None


# -- the host's network namespace ---------------------------------------------------------------------------
def group_network_mode(group: Group) -> str:
    """The group's network mode; Nomad's default is "host" (newNetworkManager,
    client/allocrunner/network_manager_linux.go@v2.0.5)."""
    network = _one(group.raw, "network") or {}
    mode = network.get("mode")
    return mode if isinstance(mode, str) and mode else "host"


def isolates_network(mode: str) -> bool:
    """Whether a group network mode gives the allocation its own network namespace: "bridge", "none"
    and "cni/<name>" do, "host" and anything else not (netModeToIsolationMode,
    client/allocrunner/network_manager_linux.go@v2.0.5)."""
    mode = mode.lower()
    return mode in ("bridge", "none") or mode.startswith("cni/")


def is_numeric_non_root(user: Any) -> bool:
    """Whether a task's `user` names a non-zero numeric uid (`uid` or `uid:gid`). A name is not
    enough: what it means is decided by the image's /etc/passwd, which the rules cannot read."""
    if not isinstance(user, str):
        return False
    uid = user.split(":", 1)[0]
    return uid.isdigit() and int(uid) != 0


def _host_network_exception(ctx: JobContext) -> str | None:
    task, group = ctx.task, ctx.group
    assert task is not None and group is not None
    if task.driver in IMAGE_DRIVERS:
        # A container without network_mode gets Docker's own network (or the group's namespace), never
        # the host's (createContainerConfig, drivers/docker/driver.go@v2.0.5).
        if task.config.get("network_mode") != "host":
            return None
        what, instead = 'network_mode = "host"', "or leave network_mode unset"
    elif task.driver in GROUP_NETWORK_DRIVERS:
        mode = group_network_mode(group)
        if isolates_network(mode):
            return None
        what = f'driver "{task.driver}" in a group whose network mode is "{mode}" runs in the host\'s network namespace'
        # The exec driver looks its user up by name (HasValidIDs, drivers/exec/driver.go@v2.0.5), so a
        # numeric uid fails there: for exec, bridge mode is the way.
        instead = 'or give the group network { mode = "bridge" }'
    else:
        return None
    problems = []
    reason = (_one(task.raw, "meta") or {}).get(HOST_NETWORK_REASON)
    if not (isinstance(reason, str) and reason.strip()):
        problems.append(f"no meta {HOST_NETWORK_REASON} saying why it needs the host's network")
    user = task.raw.get("user")
    if not is_numeric_non_root(user):
        problems.append(
            f"user {user!r} is not a numeric non-root uid (root in the host's network namespace can bind any"
            " port and open raw sockets on the node's interfaces)"
        )
    if problems:
        return f"{what}: " + "; ".join(problems) + f" — {instead}"
    return None


NO_RAW_EXEC = Rule("no-raw-exec", "no task uses the raw_exec driver", Scope.TASK, _no_raw_exec)
TASK_SANDBOXED = Rule(
    "task-sandboxed",
    "a task keeps to its sandbox: no privileged mode, added capabilities, host devices, host pid/ipc/userns/"
    "uts/cgroup namespace, unconfined security_opt, Docker volumes or bind mounts from outside the allocation",
    Scope.TASK,
    _task_sandboxed,
)
HOST_NETWORK_EXCEPTION = Rule(
    "host-network-exception",
    "a task in the host's network namespace (docker network_mode = host; exec/java in a group without"
    " bridge, none or cni networking) states why (meta host_network_reason) and runs as a numeric non-root uid",
    Scope.TASK,
    _host_network_exception,
)
