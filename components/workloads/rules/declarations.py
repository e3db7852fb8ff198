"""The job rules on what a job and its tasks must declare: an allowed namespace ("namespace-allowed"),
a type and a description for every variable ("variables-documented"), cpu and memory for every task
("resources-set")."""

from __future__ import annotations

from components.workloads.job_model import DEFAULT_NAMESPACE
from components.workloads.rule_framework import JobContext, Rule, Scope


def _resources_set(ctx: JobContext) -> str | None:
    task = ctx.task
    assert task is not None
    if task.resources is None:
        return "no resources block — set cpu (or cores) and memory"
    missing = [
        k
        for k, alts in (("cpu", ("cpu", "cores")), ("memory", ("memory",)))
        if not any(a in task.resources for a in alts)
    ]
    if missing:
        return f"resources sets no {' and no '.join(missing)} — set cpu (or cores) and memory"
    return None


def _namespace_allowed(ctx: JobContext) -> str | None:
    job = ctx.job
    allowed = ", ".join(sorted(ctx.allowed_namespaces))
    if not job.namespace_set:
        return f'no namespace — set one of: {allowed} (Nomad would use "{DEFAULT_NAMESPACE}")'
    if job.namespace not in ctx.allowed_namespaces:
        return f'namespace "{job.namespace}" is not allowed — use one of: {allowed}'
    return None


def _variables_documented(ctx: JobContext) -> str | None:
    undocumented = sorted(name for name, v in ctx.job.declared.items() if not v.type or not v.description)
    if undocumented:
        return f"variable(s) {', '.join(undocumented)} without type or description"
    return None


NAMESPACE_ALLOWED = Rule(
    "namespace-allowed", "the job names a namespace of the allowed set", Scope.JOB, _namespace_allowed
)
VARIABLES_DOCUMENTED = Rule(
    "variables-documented", "every variable has a type and a description", Scope.JOB, _variables_documented
)
RESOURCES_SET = Rule("resources-set", "every task sets cpu and memory", Scope.TASK, _resources_set)
