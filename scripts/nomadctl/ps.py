"""`nomadctl ps JOB`: the job's status, then one row per task of each allocation, newest first.

Memory and CPU are shown as the Nomad CLI shows them (command/alloc_status.go outputTaskResources):
CPU as the task's TotalTicks in MHz, memory as RSS, or Usage where RSS is not measured (cgroup v2),
in go-humanize's IBytes units; the limit is the allocation's MemoryMaxMB when set, else MemoryMB.
Stats exist only for running allocations; the others, and any the node cannot answer for, show "-".
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TextIO

from scripts.nomadctl.api import NomadApi
from scripts.nomadctl.errors import Failure
from scripts.nomadctl.lookup import SHORT_ID, resolve_job

COLUMNS = ("ALLOC", "TASK", "NODE", "UPTIME", "CPU", "MEMORY", "STATUS")
NONE = "-"
MIB = 1024 * 1024


def ibytes(count: int) -> str:
    """go-humanize IBytes: 512 B, 948 MiB, 1.2 GiB (one decimal below 10 of a unit)."""
    if count < 10:
        return f"{count} B"
    units = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
    exponent = min(math.floor(math.log(count, 1024)), len(units) - 1)
    value = math.floor(count / 1024**exponent * 10 + 0.5) / 10
    return f"{value:.1f} {units[exponent]}" if value < 10 else f"{value:.0f} {units[exponent]}"


def duration(seconds: float) -> str:
    """The two largest units: 3d 4h, 4h 12m, 12m, 45s."""
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m"
    return f"{seconds}s"


def started_at(task_state: dict[str, Any]) -> datetime | None:
    """TaskState.StartedAt (RFC 3339, nanoseconds); Go's zero time means the task never started."""
    text = task_state.get("StartedAt") or ""
    if not text or text.startswith("0001-"):
        return None
    return datetime.fromisoformat(text)


def memory_used(stats: dict[str, Any]) -> int | None:
    """RSS, or Usage when RSS is not among what was measured (command/alloc_status.go L649-654)."""
    memory = stats.get("MemoryStats")
    if not memory:
        return None
    used = memory.get("RSS") or 0
    if used == 0 and "RSS" not in (memory.get("Measured") or []):
        used = memory.get("Usage") or 0
    return used


def memory_limit_mb(alloc: dict[str, Any], task: str) -> int | None:
    memory = (((alloc.get("AllocatedResources") or {}).get("Tasks") or {}).get(task) or {}).get("Memory") or {}
    return memory.get("MemoryMaxMB") or memory.get("MemoryMB") or None


def task_row(alloc: dict[str, Any], task: str, stats: dict[str, Any] | None, now: datetime) -> list[str]:
    state = (alloc.get("TaskStates") or {}).get(task) or {}
    since = started_at(state)
    uptime = duration((now - since).total_seconds()) if since and state.get("State") == "running" else NONE
    usage = (((stats or {}).get("Tasks") or {}).get(task) or {}).get("ResourceUsage") or {}
    cpu = (usage.get("CpuStats") or {}).get("TotalTicks")
    used, limit = memory_used(usage), memory_limit_mb(alloc, task)
    memory = NONE
    if used is not None:
        memory = ibytes(used) + (f"({ibytes(limit * MIB)})" if limit else "")
    return [
        alloc["ID"][:SHORT_ID],
        task,
        alloc.get("NodeName") or NONE,
        uptime,
        f"{math.floor(cpu)} MHz" if cpu is not None else NONE,
        memory,
        alloc.get("ClientStatus") or NONE,
    ]


def table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def _tasks(alloc: dict[str, Any]) -> list[str]:
    resources = (alloc.get("AllocatedResources") or {}).get("Tasks") or {}
    return sorted(set(resources) | set(alloc.get("TaskStates") or {}))


def ps(
    api: NomadApi, name: str, now: Callable[[], datetime] = lambda: datetime.now(UTC), notes: TextIO = sys.stderr
) -> str:
    job = resolve_job(api, name)
    stubs = sorted(api.job_allocations(job["ID"]), key=lambda stub: stub.get("CreateTime", 0), reverse=True)
    rows = [list(COLUMNS)]
    for stub in stubs:
        # The list's stubs carry no AllocatedResources (nomad/structs/alloc.go Stub); the allocation does.
        alloc = api.allocation(stub["ID"])
        stats = None
        if alloc.get("ClientStatus") == "running":
            try:
                stats = api.allocation_stats(alloc["ID"])
            except Failure as failure:
                print(f"nomadctl: no stats for allocation {alloc['ID'][:SHORT_ID]}: {failure}", file=notes)
        rows += [task_row(alloc, task, stats, now()) for task in _tasks(alloc)]
    header = f"job {job['ID']} ({job.get('Type', '?')}, namespace {job.get('Namespace', api.connection.namespace)}): {job.get('Status', '?')}"
    if len(rows) == 1:
        return f"{header}\nno allocations"
    return f"{header}\n{table(rows)}"
