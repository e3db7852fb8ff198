"""The job pipeline (seed 001's nomadguard), run at program start before any resource: every file of jobs/
becomes the jobspec Nomad receives, in four steps.

  1. a short definition (<name>.nomadgen.toml) is checked and rendered to a jobspec
     (definitions.py, render.py); a hand-written <name>.nomad.hcl is taken as it is;
  2. the site policy (site_policy.py, jobs/site-policy.toml) is applied to every job;
  3. the job rules (job_rules.py RULES) and the policy's own rules check the result;
  4. the Workloads component (deploy.py) submits that text.

Every problem of every file is reported at once (JobValidationError), so a bad definition stops the
program, and CI, naming the file, the key and what is allowed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from pathlib import Path

from components.config.settings import DEFINITION_SUFFIX, JOB_SUFFIX, JOBS_DIR, Platform
from components.workloads import hcl_document
from components.workloads.definitions import Definition, load_definition
from components.workloads.job_model import Job, _display
from components.workloads.job_rules import RULES, JobValidationError, Rule, validate_jobs
from components.workloads.render import ClusterParameters, render_document
from components.workloads.site_policy import SITE_POLICY, apply_site_policy, load_site_policy, policy_rules

SUFFIXES = (JOB_SUFFIX, DEFINITION_SUFFIX)


def job_sources(directory: Path = JOBS_DIR) -> dict[str, list[Path]]:
    """Job name (file name without its suffix) -> its files: one, unless a name is used twice."""
    sources: dict[str, list[Path]] = {}
    for path in sorted(directory.iterdir()) if directory.is_dir() else []:
        for suffix in SUFFIXES:
            if path.name.endswith(suffix):
                sources.setdefault(path.name.removesuffix(suffix), []).append(path)
    return dict(sorted(sources.items()))


def seeded_secrets(definition: Definition) -> dict[str, tuple[str, ...]]:
    """The secrets the program seeds for a definition: path -> keys, for those with generate = true."""
    seeded: dict[str, tuple[str, ...]] = {}
    for secret in definition.secrets:
        if secret.generate:
            seeded[secret.path] = (*seeded.get(secret.path, ()), secret.key)
    return seeded


def build_jobs(
    allowed_namespaces: Iterable[str],
    variables: Mapping[str, object] | None,
    cluster: ClusterParameters,
    platform: Platform,
    directory: Path = JOBS_DIR,
    policy_path: Path = SITE_POLICY,
    rules: Iterable[Rule] = RULES,
) -> dict[str, Job]:
    """{job name: Job} for every file of `directory`, each Job's text the final jobspec; or raises
    JobValidationError (SitePolicyError for a policy that cannot be used) with every problem."""
    if not directory.is_dir():
        raise JobValidationError((), [f"{_display(directory)}: no such directory of job files"])
    policy = load_site_policy(policy_path)
    errors: list[str] = []
    texts: dict[Path, str] = {}
    seeds: dict[Path, dict[str, tuple[str, ...]]] = {}
    names: dict[Path, str] = {}
    for name, paths in job_sources(directory).items():
        if len(paths) > 1:
            errors.append(f"{' and '.join(_display(p) for p in paths)}: one job name, two files — keep one")
            continue
        path = paths[0]
        if path.name.endswith(DEFINITION_SUFFIX):
            definition = load_definition(path)
            if isinstance(definition, list):
                errors.extend(definition)
                continue
            document = render_document(definition, cluster)
            seeds[path] = seeded_secrets(definition)
        else:
            try:
                document = hcl_document.parse(path.read_text())
            except Exception:  # not HCL, or unreadable: loading the file reports it with its reason
                names[path] = name
                continue
        texts[path] = hcl_document.dump(apply_site_policy(document, policy, platform))
        names[path] = name
    jobs = validate_jobs(
        [(path, variables) for path in names], allowed_namespaces, (*rules, *policy_rules(policy)), texts, errors
    )
    return {
        names[path]: dataclasses.replace(job, seeded_secrets=seeds.get(path, {}))
        for path, job in zip(names, jobs, strict=True)
    }
