"""The job rules: `RULES`, the list every Nomad job must pass, and the functions that check jobs against
it (`check_job` for one loaded job, `validate_jobs` and `validate_directory` for job files).

Pure Python (python-hcl2), no Nomad binary and no cluster: the program validates jobs/*.nomad.hcl
before it declares any resource, so a bad job stops `pulumi preview` with every problem listed at
once, and a policy pack can run the same rules. A rule is data (`Rule` in `RULES`); an operator
adds one by appending to a copy of the list and passing it to `check_job` / `validate_jobs`.

The parts: the job model and its loading (`load_job`, `load_job_text`) in job_model.py, what a rule is
(`Rule`, `Scope`, `JobContext`, `Violation`) in rule_framework.py, the rules themselves in rules/, one
module per concern. This module re-exports the names its callers need along with RULES (`__all__`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from components.workloads.job_model import (
    JOB_SUFFIX,
    JOBS_DIR,
    Job,
    JobError,
    JobLoadError,
    _display,
    job_files,
    load_job,
    load_job_text,
)
from components.workloads.rule_framework import JobContext, Rule, Scope, Violation
from components.workloads.rules.artifacts import ARTIFACTS_CHECKSUMMED
from components.workloads.rules.declarations import NAMESPACE_ALLOWED, RESOURCES_SET, VARIABLES_DOCUMENTED
from components.workloads.rules.images import IMAGES_PINNED
from components.workloads.rules.isolation import HOST_NETWORK_EXCEPTION, NO_RAW_EXEC, TASK_SANDBOXED
from components.workloads.rules.services import (
    MESH_NO_TRANSPARENT_PROXY,
    MESH_UPSTREAMS_NAMED,
    SERVICE_NAMES_DNS,
    SERVICES_CONSUL_CHECKED,
)
from components.workloads.rules.vault import VAULT_PATHS_SCOPED, VAULT_TEMPLATE_SAFE, VAULT_WORKLOAD_IDENTITY

__all__ = [
    "RULES",
    "Job",
    "JobContext",
    "JobLoadError",
    "JobValidationError",
    "Rule",
    "Scope",
    "Violation",
    "check_job",
    "load_job_text",
    "validate_directory",
    "validate_jobs",
]


class JobValidationError(JobError):
    """Every load error and rule violation of a set of job files, reported together."""

    def __init__(self, violations: Sequence[Violation], errors: Sequence[str] = ()):
        self.violations = tuple(violations)
        self.errors = tuple(errors)
        lines = [*self.errors, *(str(v) for v in self.violations)]
        super().__init__(
            f"invalid Nomad jobs ({len(lines)} problem(s)); fix the files in jobs/ or the variables passed to them:\n"
            + "\n".join(f"  - {line}" for line in lines)
        )


RULES: tuple[Rule, ...] = (
    NAMESPACE_ALLOWED,
    VARIABLES_DOCUMENTED,
    IMAGES_PINNED,
    RESOURCES_SET,
    NO_RAW_EXEC,
    TASK_SANDBOXED,
    HOST_NETWORK_EXCEPTION,
    VAULT_WORKLOAD_IDENTITY,
    VAULT_PATHS_SCOPED,
    VAULT_TEMPLATE_SAFE,
    ARTIFACTS_CHECKSUMMED,
    SERVICE_NAMES_DNS,
    SERVICES_CONSUL_CHECKED,
    MESH_UPSTREAMS_NAMED,
    MESH_NO_TRANSPARENT_PROXY,
)


def _contexts(job: Job, scope: Scope, allowed: frozenset[str]) -> Iterable[JobContext]:
    if scope is Scope.JOB:
        yield JobContext(job, allowed)
        return
    for group in job.groups:
        if scope is Scope.GROUP:
            yield JobContext(job, allowed, group=group)
        for service in group.services:
            if scope is Scope.SERVICE:
                yield JobContext(job, allowed, group=group, service=service)
        for task in group.tasks:
            if scope is Scope.TASK:
                yield JobContext(job, allowed, group=group, task=task)
            for service in task.services:
                if scope is Scope.SERVICE:
                    yield JobContext(job, allowed, group=group, task=task, service=service)


def check_job(job: Job, allowed_namespaces: Iterable[str], rules: Iterable[Rule] = RULES) -> list[Violation]:
    """Every violation of `rules` in one job, in rule order."""
    allowed = frozenset(allowed_namespaces)
    violations = []
    for rule in rules:
        for ctx in _contexts(job, rule.scope, allowed):
            message = rule.check(ctx)
            if message:
                violations.append(Violation(job.file, ctx.where, rule.id, message))
    return violations


def validate_jobs(
    paths_with_variables: Mapping[Path, Mapping[str, object] | None]
    | Iterable[tuple[Path, Mapping[str, object] | None]],
    allowed_namespaces: Iterable[str],
    rules: Iterable[Rule] = RULES,
    texts: Mapping[Path, str] | None = None,
    errors: Sequence[str] = (),
) -> list[Job]:
    """Loads and checks every job; returns them in the order given, or raises JobValidationError
    listing every load error and violation of every file at once. Job ids must be unique: Vault's
    entity alias for a workload is its job id (components/access/grants.py).

    `texts` holds the jobspec of a path when it is not the file's own text (a rendered short definition,
    a job with the site policy applied: components/workloads/pipeline.py); `errors` are problems found
    before, reported with the rest."""
    items = list(paths_with_variables.items() if isinstance(paths_with_variables, Mapping) else paths_with_variables)
    rules = tuple(rules)
    allowed = frozenset(allowed_namespaces)
    texts = texts or {}
    jobs: list[Job] = []
    errors = list(errors)
    violations: list[Violation] = []
    loaded = 0
    for path, variables in items:
        path = Path(path)
        try:
            job = load_job_text(texts[path], path, variables) if path in texts else load_job(path, variables)
        except JobLoadError as error:
            errors.append(str(error))
            continue
        loaded += 1
        jobs.append(job)
        violations.extend(check_job(job, allowed, rules))
    if loaded == len(items) and not errors:
        given = {name for _, variables in items for name in (variables or {})}
        declared = {name for job in jobs for name in job.declared}
        for name in sorted(given - declared):
            errors.append(
                f'value given for variable "{name}", which no job declares ({", ".join(j.file for j in jobs)})'
            )
    seen: dict[str, str] = {}
    for job in jobs:
        if job.id in seen:
            errors.append(f'{job.file}: job id "{job.id}" is also the id of {seen[job.id]} — job ids must be unique')
        seen.setdefault(job.id, job.file)
    if errors or violations:
        raise JobValidationError(violations, errors)
    return jobs


def validate_directory(
    allowed_namespaces: Iterable[str],
    variables: Mapping[str, object] | None = None,
    directory: Path = JOBS_DIR,
    rules: Iterable[Rule] = RULES,
) -> dict[str, Job]:
    """Loads and checks every job file of `directory` (jobs/ by default), whether the stack deploys it
    or not, each with the same program-wide `variables` (a file ignores values for variables it does
    not declare). Returns {file name without .nomad.hcl: Job} in file-name order, or raises
    JobValidationError listing every problem of every file at once: load errors, rule violations,
    duplicate job ids, and values for variables no file declares (see validate_jobs)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise JobValidationError((), [f"{_display(directory)}: no such directory of job files"])
    files = job_files(directory)
    jobs = validate_jobs([(path, variables) for path in files], allowed_namespaces, rules)
    return {path.name.removesuffix(JOB_SUFFIX): job for path, job in zip(files, jobs, strict=True)}
