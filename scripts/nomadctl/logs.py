"""`nomadctl logs JOB [TASK] [-f] [--stderr] [--alloc ID]`: a task's log from the job's newest running
allocation (or the one named), through /v1/client/fs/logs/<alloc> as plain text (command/agent/
fs_endpoint.go Logs), written as it arrives."""

from __future__ import annotations

from typing import BinaryIO

from scripts.nomadctl.api import NomadApi
from scripts.nomadctl.errors import Failure
from scripts.nomadctl.lookup import choose_task, newest_running, resolve_alloc, resolve_job


def logs(
    api: NomadApi,
    out: BinaryIO,
    job_name: str,
    task: str | None = None,
    follow: bool = False,
    stderr: bool = False,
    alloc_prefix: str | None = None,
) -> None:
    job = resolve_job(api, job_name)
    if alloc_prefix:
        alloc = resolve_alloc(api, alloc_prefix)
        if alloc.get("JobID") != job["ID"]:
            raise Failure(f"allocation {alloc['ID']} belongs to job {alloc.get('JobID')}, not {job['ID']}")
    else:
        alloc = newest_running(job, api.job_allocations(job["ID"]))
    task = choose_task(job, alloc, task)
    for chunk in api.log_chunks(alloc["ID"], task, "stderr" if stderr else "stdout", follow):
        out.write(chunk)
        out.flush()  # -f shows each line as the task writes it
