"""From what a developer types to what Nomad knows: a job by id or by short name, an allocation by id
prefix, a task of a group.

Rendered jobs are named `<tier letter>-<name>` (p, q, t: production, quality, test), so `web` finds
`p-web` when no job is called `web`. An allocation prefix is resolved as the Nomad CLI does
(command/alloc_exec.go: /v1/allocations?prefix=, one match or an error that lists them).
"""

from __future__ import annotations

from typing import Any

from scripts.nomadctl.api import NomadApi
from scripts.nomadctl.errors import Failure, NotFound

TIER_LETTERS = ("p", "q", "t")
"""production, quality, test: the tier prefixes of rendered job names."""
SHORT_ID = 8
"""The length of the alloc ids the Nomad CLI prints (command/meta.go shortId)."""


def resolve_job(api: NomadApi, name: str) -> dict[str, Any]:
    namespace = api.connection.namespace
    try:
        return api.job(name)
    except NotFound:
        pass
    found = []
    for letter in TIER_LETTERS:
        try:
            found.append(api.job(f"{letter}-{name}"))
        except NotFound:
            continue
    if len(found) == 1:
        return found[0]
    if found:
        names = ", ".join(job["ID"] for job in found)
        raise Failure(f"{name} names several jobs in namespace {namespace}: {names}; give the full job id")
    raise Failure(f"job {name} not found in namespace {namespace}{_jobs_there(api)}")


def _jobs_there(api: NomadApi) -> str:
    """` (jobs there: a, b)`, or nothing when the token may not list them."""
    try:
        jobs = sorted(job["ID"] for job in api.jobs())
    except Failure:
        return ""
    return f" (jobs there: {', '.join(jobs) or 'none'})"


def resolve_alloc(api: NomadApi, prefix: str) -> dict[str, Any]:
    """The full allocation whose id starts with `prefix`."""
    matches = api.allocations_with_prefix(_queryable(prefix))
    # The query was for an even-length prefix; the user's odd last character still counts.
    matches = [alloc for alloc in matches if alloc["ID"].startswith(prefix)]
    if not matches:
        raise Failure(f"no allocation with the id or prefix {prefix} in namespace {api.connection.namespace}")
    if len(matches) > 1:
        listed = "\n".join(
            f"  {alloc['ID'][:SHORT_ID]}  {alloc.get('JobID', '?')}  {alloc.get('TaskGroup', '?')}  "
            f"{alloc.get('ClientStatus', '?')}"
            for alloc in sorted(matches, key=lambda alloc: alloc["ID"])
        )
        raise Failure(f"the prefix {prefix} matches {len(matches)} allocations; give more of the id:\n{listed}")
    return api.allocation(matches[0]["ID"])


def _queryable(prefix: str) -> str:
    """Nomad looks prefixes up by whole bytes of the UUID, so the CLI drops an odd hex digit
    (command/helpers.go sanitizeUUIDPrefix); so do we, and filter on the full prefix afterwards."""
    digits = len(prefix) - prefix.count("-")
    return prefix[: len(prefix) - digits % 2]


def newest_running(job: dict[str, Any], allocs: list[dict[str, Any]]) -> dict[str, Any]:
    running = [alloc for alloc in allocs if alloc.get("ClientStatus") == "running"]
    if not running:
        statuses = ", ".join(sorted({alloc.get("ClientStatus", "?") for alloc in allocs})) or "no allocations"
        raise Failure(f"job {job['ID']} has no running allocation ({statuses}); name one with --alloc ID")
    return max(running, key=lambda alloc: alloc.get("CreateTime", 0))


def group_tasks(job: dict[str, Any], group: str) -> list[str]:
    for task_group in job.get("TaskGroups") or []:
        if task_group.get("Name") == group:
            return [task["Name"] for task in task_group.get("Tasks") or []]
    return []


def choose_task(job: dict[str, Any], alloc: dict[str, Any], task: str | None) -> str:
    """`task`, checked against the allocation's group, or the group's only task."""
    group = alloc.get("TaskGroup", "?")
    # An allocation runs the job version it was placed with, which its own copy of the job holds.
    tasks = group_tasks(alloc.get("Job") or job, group) or sorted(alloc.get("TaskStates") or {})
    where = f"group {group} of job {job['ID']}"
    if task is not None:
        if task not in tasks:
            raise Failure(f"no task {task} in {where}; its tasks: {', '.join(tasks) or 'none'}")
        return task
    if len(tasks) == 1:
        return tasks[0]
    raise Failure(f"{where} has several tasks: {', '.join(tasks)}; name one of them")
