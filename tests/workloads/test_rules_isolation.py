"""The isolation rules' helpers (components/workloads/rules/isolation.py): mount sources resolved as
Nomad's docker driver resolves them, group network modes, and the host-network exception's message."""

from __future__ import annotations

import pytest
from test_job_rules import HOST_NETWORK, docker, job_hcl, write
from test_jobs import ALLOWED

from components.workloads.job_model import load_job
from components.workloads.job_rules import check_job
from components.workloads.rules.isolation import host_path_problem, isolates_network


def test_a_host_network_violation_says_all_of_it(tmp_path):
    (violation,) = check_job(load_job(write(tmp_path, job_hcl(config=HOST_NETWORK))), ALLOWED)
    assert violation.message == (
        'network_mode = "host": no meta host_network_reason saying why it needs the host\'s network; user None is'
        " not a numeric non-root uid (root in the host's network namespace can bind any port and open raw sockets"
        " on the node's interfaces) — or leave network_mode unset"
    )


@pytest.mark.parametrize(
    ("source", "inside"),
    [
        ("local/config", True),
        ("secrets/tls", True),
        ("alloc/data", True),
        ("../alloc/data", True),
        ("./local", True),
        ("..", True),  # the alloc dir itself
        ("../other-task/local", True),  # another task's dir is inside the allocation too
        ("", True),
        ("/etc", False),
        ("/", False),
        ("../../etc", False),
        ("local/../../..", False),
        ("../..x", False),  # stricter than Nomad 2.0's ChildEscapesParentDir, which passes "..x": on the safe side
        ("${NOMAD_TASK_DIR}/x", False),
    ],
)
def test_mount_sources_resolve_against_the_task_dir_as_nomad_does(source, inside):
    """drivers/docker/driver.go@v2.0.5 containerBinds/toDockerMount: expandPath(task dir, source), then
    escapingfs.ChildEscapesParentDir(alloc dir, ...) (helper/escapingfs/escapes.go@v2.0.5) with
    volumes.enabled = false."""
    assert (host_path_problem(source, "server") is None) is inside


def test_a_mount_source_that_is_not_a_string_is_reported():
    assert host_path_problem(None, "server") == "source None is not a string"


def test_the_mounts_list_is_checked_like_mount_blocks(tmp_path):
    """`mounts` is a block list of the same body as `mount` (drivers/docker/config.go@v2.0.5)."""
    config = docker('mounts = [{ type = "bind", source = "/var/run/docker.sock", target = "/sock" }]')
    (violation,) = check_job(load_job(write(tmp_path, job_hcl(config=config))), ALLOWED)
    assert violation.rule == "task-sandboxed" and '"/var/run/docker.sock" is a host path' in violation.message
    inside = docker('mounts = [{ type = "bind", source = "local/x", target = "/x" }]')
    assert check_job(load_job(write(tmp_path, job_hcl(config=inside))), ALLOWED) == []


def test_group_network_modes():
    """client/allocrunner/network_manager_linux.go@v2.0.5: "host" by default; bridge, none and cni/*
    isolate (netModeToIsolationMode)."""
    assert [isolates_network(m) for m in ("bridge", "Bridge", "none", "cni/mynet")] == [True] * 4
    assert [isolates_network(m) for m in ("host", "driver", "", "cnix")] == [False] * 4
