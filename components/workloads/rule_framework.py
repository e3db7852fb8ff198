"""What a job rule is: a `Rule` (id, description, `Scope`, check), the `JobContext` its check is given, and
the `Violation` it reports. The rules themselves are in components/workloads/rules/; `RULES`, the list
the program checks jobs against, and `check_job` are in components/workloads/job_rules.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from components.workloads.job_model import Group, Job, Service, Task


class Scope(StrEnum):
    """What a rule's check is called for: once per job, per group, per task or per service."""

    JOB = "job"
    GROUP = "group"
    TASK = "task"
    SERVICE = "service"


@dataclass(frozen=True)
class JobContext:
    job: Job
    allowed_namespaces: frozenset[str]
    group: Group | None = None
    task: Task | None = None
    service: Service | None = None

    @property
    def where(self) -> str:
        parts = [f'job "{self.job.id}"']
        if self.group:
            parts.append(f'group "{self.group.name}"')
        if self.task:
            parts.append(f'task "{self.task.name}"')
        if self.service:
            parts.append(f'service "{self.service.name}"')
        return " ".join(parts)


@dataclass(frozen=True)
class Rule:
    id: str
    description: str
    scope: Scope
    check: Callable[[JobContext], str | None]
    """Returns what is wrong (one message), or None when the job/group/task/service passes."""


@dataclass(frozen=True)
class Violation:
    file: str
    where: str
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.where}: {self.rule}: {self.message}"
