"""The contract for `nomadctl` (scripts/nomadctl/): what Nomad's job, allocation, log and exec APIs
answer, each answer with where it was read, in the style of tests/upstream.py (whose `answers`
registers these in the same SOURCES). Read in the hashicorp/nomad mirror at v2.0.5, the newest tag of
the pinned 2.0 line it holds (`git show v2.0.5:<path>`).

The exec websocket's frames are in EXEC_FRAMES: they are not HTTP answers, so they are plain
functions with their source beside them.
"""

from __future__ import annotations

import base64
from typing import Any

from upstream import NOMAD, TEXT, answers

_WRAP = f"{NOMAD} command/agent/http.go wrap L740-826 (an error is written text/plain, the bare message)"
_DENIED = f"nomad/structs/errors.go L20 errPermissionDenied; {_WRAP}, suffix match L773: 403"


@answers(
    f"{NOMAD} command/agent/job_endpoint.go jobQuery L523-540 (Job.GetJob: nomad/job_endpoint.go GetJob "
    f"L1187-1236, read-job); api/jobs.go Job: ID, Name, Namespace, Type, Status, TaskGroups[].Tasks[].Name"
)
def job(job_id: str, groups: dict[str, list[str]], status: str = "running", namespace: str = "apps"):
    task_groups = [{"Name": group, "Tasks": [{"Name": task} for task in tasks]} for group, tasks in groups.items()]
    return 200, {
        "ID": job_id,
        "Name": job_id,
        "Namespace": namespace,
        "Type": "service",
        "Status": status,
        "TaskGroups": task_groups,
    }


@answers(f'{NOMAD} command/agent/job_endpoint.go jobQuery L537-538: out.Job == nil -> CodedError(404, "job not found")')
def job_not_found():
    return 404, "job not found", TEXT


@answers(
    f"{NOMAD} nomad/job_endpoint.go GetJob L1194-1196 (Authenticate failed: an unknown token, nomad/auth/auth.go "
    f"L156-184) and L1202-1203 (no read-job in the namespace, the anonymous token's case too); {_DENIED}"
)
def permission_denied():
    return 403, "Permission denied", TEXT


@answers(f"{NOMAD} nomad/job_endpoint.go List L1399-1418 (list-jobs; a JSON array of JobListStub: ID, Status, ...)")
def jobs(job_ids: list[str]):
    return 200, [{"ID": job_id, "Status": "running"} for job_id in job_ids]


@answers(
    f"{NOMAD} command/agent/job_endpoint.go jobAllocations L258-285 -> nomad/job_endpoint.go Allocations "
    f"L1539 alloc.Stub(nil): nomad/structs/alloc.go AllocListStub L949-978 without AllocatedResources "
    f"(Stub L795-797 adds them only when asked); [] when none"
)
def job_allocations(allocs: list[dict[str, Any]]):
    return 200, [stub(alloc) for alloc in allocs]


@answers(
    f"{NOMAD} command/agent/alloc_endpoint.go AllocsRequest L31-75 (?prefix= -> nomad/alloc_endpoint.go List "
    f"L35-; read-job); AllocListStub list, [] when nothing matches"
)
def allocations(allocs: list[dict[str, Any]]):
    return 200, [stub(alloc) for alloc in allocs]


@answers(
    f"{NOMAD} command/agent/alloc_endpoint.go allocGet L103-143 (nomad/alloc_endpoint.go GetAlloc L130-); "
    f"the whole nomad/structs Allocation: AllocatedResources.Tasks[task].Memory {{MemoryMB, MemoryMaxMB}} "
    f"(nomad/structs/structs.go AllocatedMemoryResources L4112-4115), the Job it runs"
)
def allocation(alloc: dict[str, Any]):
    return 200, alloc


@answers(f'{NOMAD} command/agent/alloc_endpoint.go allocGet L121-122: CodedError(404, "alloc not found")')
def allocation_not_found():
    return 404, "alloc not found", TEXT


@answers(
    f"{NOMAD} command/agent/alloc_endpoint.go allocStats L521-553 (nomad/client_alloc_endpoint.go Stats L372-, "
    f"read-job); client/structs/structs.go AllocResourceUsage L344-350: Tasks[task].ResourceUsage "
    f"{{MemoryStats {{RSS, Usage, Measured}} L264-274, CpuStats {{TotalTicks, Percent, Measured}} L295-303}}"
)
def allocation_stats(tasks: dict[str, dict[str, Any]]):
    """tasks: name -> {"rss", "usage", "measured", "ticks"}."""
    usage = {
        name: {
            "ResourceUsage": {
                "MemoryStats": {"RSS": t.get("rss", 0), "Usage": t.get("usage", 0), "Measured": t.get("measured", [])},
                "CpuStats": {"TotalTicks": t.get("ticks", 0.0), "Percent": 1.5, "Measured": ["Total Ticks"]},
            },
            "Timestamp": 1,
            "Pids": None,
        }
        for name, t in tasks.items()
    }
    return 200, {"ResourceUsage": None, "Tasks": usage, "Timestamp": 1}


@answers(
    f"{NOMAD} command/agent/alloc_endpoint.go allocStats L547-549: structs.IsErrNoNodeConn -> CodedError(404); "
    f"nomad/structs/errors.go L22 errNoNodeConn (the node is down or not connected to this server)"
)
def no_path_to_node():
    return 404, "No path to node", TEXT


@answers(
    f"{NOMAD} command/agent/fs_endpoint.go Logs L267-340 (task, type stdout|stderr, follow, plain, offset, "
    f"origin start|end; plain -> Content-Type text/plain L332-333), fsStreamImpl L345-430 (each payload "
    f"copied through a flushing writer as it comes)"
)
def log_text(text: str):
    return 200, text, "text/plain"


@answers(
    f"{NOMAD} nomad/client_fs_endpoint.go logs L349-410: an unknown token (L372-373) or no read-logs/read-fs "
    f"(L407-408) -> ErrPermissionDenied with no code, which command/agent/fs_endpoint.go fsStreamImpl "
    f"L404-411 answers with code 500; {_WRAP}"
)
def logs_denied():
    return 500, "Permission denied", TEXT


@answers(
    f"{NOMAD} nomad/acl_endpoint.go WhoAmI L2212-2218 (command/agent/acl_endpoint.go aclTokenSelf L273-292): "
    f"a known token reads itself whatever its policies"
)
def token_self(name: str, policies: list[str]):
    return 200, {
        "AccessorID": "4d1c2b7e-0000-4000-8000-000000000001",
        "Name": name,
        "Type": "client",
        "Policies": policies,
    }


@answers(
    f"{NOMAD} nomad/acl_endpoint.go WhoAmI -> nomad/auth/auth.go Authenticate L156-184: a secret not in the "
    f"state is ErrPermissionDenied; {_DENIED}"
)
def token_unknown():
    return 403, "Permission denied", TEXT


def stub(alloc: dict[str, Any]) -> dict[str, Any]:
    """An Allocation as the list endpoints show it: without AllocatedResources and the Job."""
    return {key: value for key, value in alloc.items() if key not in ("AllocatedResources", "Job")}


ZERO_TIME = "0001-01-01T00:00:00Z"
"""Go's zero time.Time as encoding/json writes it: a TaskState's StartedAt before the task started."""


def task_state(state: str, started_at: str = ZERO_TIME) -> dict[str, Any]:
    """nomad/structs/structs.go TaskState L9130-9162 (State pending|running|dead, StartedAt RFC 3339)."""
    return {"State": state, "Failed": False, "Restarts": 0, "StartedAt": started_at, "FinishedAt": ZERO_TIME}


# -- the exec websocket: hashicorp/nomad v2.0.5 ------------------------------------------------------
EXEC_SOURCES = {
    "query": "command/agent/alloc_endpoint.go allocExec L589-623: task, command (a JSON array), tty (a bool)",
    "token": (
        "command/agent/http.go parseToken L1031-1069 (X-Nomad-Token first); command/agent/websockets.go "
        "readWsHandshake L78-109 reads an {version: 1, auth_token} frame only with ?ws_handshake=true"
    ),
    "input": (
        "api/allocations.go ExecStreamingInput L620-640 (stdin {data: base64 []byte, close}, tty_size {height, "
        "width}, {} the heartbeat L632); api/allocations_exec.go startTransmit L125-215 (2048-byte reads, "
        "close on EOF, a heartbeat each 10 s)"
    ),
    "output": (
        "plugins/drivers/proto/driver.pb.go ExecTaskStreamingResponse L1669-1673 and ExitResult L3190-3196 "
        "(exit_code omitempty: absent when 0), JSON-encoded by client/alloc_endpoint.go L387"
    ),
    "refusal": (
        "nomad/client_alloc_endpoint.go exec L498-541 (ErrPermissionDenied, no code) -> command/agent/"
        "alloc_endpoint.go execStreamImpl L702-706 (code 500), execStreamHandleError L735-747 and toWsCode "
        "L750-758: a close frame 1011 (500) or 1008 (others) whose reason is the message"
    ),
}


def exec_output(stream: str, data: bytes) -> dict[str, Any]:
    return {stream: {"data": base64.b64encode(data).decode()}}


def exec_exited(code: int) -> dict[str, Any]:
    return {"exited": True, "result": {"exit_code": code} if code else {}}
