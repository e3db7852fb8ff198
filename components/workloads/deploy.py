"""Workloads: the validated Nomad jobs of jobs/, deployed with the explicit Nomad provider.

Jobs are validated at program start (components/workloads/job_rules.py, called from load_jobs), before any
resource exists. Each job gets only variables known at preview time: an unknown Output as an HCL2
variable would make the provider blank all of them. What a job needs from Consul and Vault is
declared here as dependencies: Consul's workload-identity auth for every job, Vault's (and the
job's seeded secret) for jobs with a `vault` block, and the intentions for the mesh's upstreams.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_consul as consul
import pulumi_nomad as nomad
import pulumi_random as random
import pulumi_vault as vault

from components.access.grants import Access
from components.access.namespaces import KV_MOUNT
from components.config.settings import JOBS_DIR, Settings
from components.workloads.job_model import Job
from components.workloads.pipeline import build_jobs
from components.workloads.render import ClusterParameters


def job_variables(settings: Settings) -> dict[str, Any]:
    """Values the program sets for the jobs' variables of these names (when a job declares them)."""
    return {"ingress_domain": settings.ingress_domain, "datacenters": [settings.datacenter]}


def cluster_parameters(settings: Settings) -> ClusterParameters:
    """What a short definition's jobspec gets from the stack (components/workloads/render.py)."""
    return ClusterParameters(datacenters=(settings.datacenter,), ingress_domain=settings.ingress_domain)


def load_jobs(settings: Settings, allowed_namespaces: Sequence[str]) -> list[Job]:
    """The stack's jobs, in the `jobs` setting's order, each with the site policy applied. Every file
    in jobs/ is rendered and checked, enabled or not, so a broken file stops every stack (and CI), not
    only the one that enables it; any problem stops the program (JobValidationError)."""
    checked = build_jobs(
        allowed_namespaces, job_variables(settings), cluster_parameters(settings), settings.platform, JOBS_DIR
    )
    return [checked[name] for name in settings.jobs]


INGRESS_TAG = "traefik.enable=true"


def ingress_names(jobs: Sequence[Job]) -> tuple[str, ...]:
    """Services the ingress exposes (tagged for Traefik), each as `<name>.<ingressDomain>`."""
    return tuple(sorted({s.name for job in jobs for s in job.services if INGRESS_TAG in s.tags}))


def _hcl_value(value: Any) -> str:
    """A variable's value as the provider passes it: a string, or an HCL literal for lists."""
    return value if isinstance(value, str) else json.dumps(value)


# Secrets the program seeds in Vault for a hand-written job: job id -> {path under kv/<namespace>/<job>/:
# keys}; a short definition asks with `generate = true` (Job.seeded_secrets). Each value is random, so
# no secret ever sits in this repository.
SEEDED_SECRETS = {"hello-vault": {"config": ("greeting",)}}


@dataclass(frozen=True)
class WorkloadsArgs:
    settings: Settings
    jobs: Sequence[Job]
    access: Access
    """The Access component: its workload-identity resources are what jobs depend on."""


class Workloads(pulumi.ComponentResource):
    jobs: dict[str, nomad.Job]
    """Job id -> its Nomad job resource."""
    intentions: list[consul.ConfigEntry]
    """The service-intentions derived from the jobs' Connect upstreams."""

    def __init__(self, name: str, args: WorkloadsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("hashistack:workloads:Workloads", name, None, opts)
        settings, access = args.settings, args.access
        self._name = name
        self.intentions = self._intentions(args.jobs)
        values = job_variables(settings)
        self.jobs = {}
        for job in args.jobs:
            needs: list[pulumi.Resource] = list(access.consul_workload_identity)
            if job.uses_vault:
                needs += access.vault_workload_identity + self._seed_secrets(job, access.vault_workload_identity)
            if job.upstreams:
                needs += self.intentions
            self.jobs[job.id] = nomad.Job(
                f"{name}-{job.id}",
                jobspec=job.text,
                hcl2=nomad.JobHcl2Args(vars={k: _hcl_value(v) for k, v in values.items() if k in job.variables}),
                # Wait for a healthy deployment, so `up` fails where the job fails.
                detach=False,
                purge_on_destroy=True,
                opts=pulumi.ResourceOptions(parent=self, depends_on=needs),
            )
        self.register_outputs({"jobs": {job_id: job.id for job_id, job in self.jobs.items()}})

    def _seed_secrets(self, job: Job, kv_ready: list[pulumi.Resource]) -> list[pulumi.Resource]:
        seeded = []
        for path, keys in {**SEEDED_SECRETS.get(job.id, {}), **job.seeded_secrets}.items():
            values = {
                key: random.RandomPassword(
                    f"{self._name}-{job.id}-{path}-{key}",
                    length=24,
                    special=False,
                    opts=pulumi.ResourceOptions(parent=self),
                ).result
                for key in keys
            }
            seeded.append(
                vault.kv.SecretV2(
                    f"{self._name}-{job.id}-{path}",
                    mount=KV_MOUNT,
                    name=f"{job.namespace}/{job.id}/{path}",
                    data_json=pulumi.Output.json_dumps(values),
                    opts=pulumi.ResourceOptions(parent=self, depends_on=kv_ready),
                )
            )
        return seeded

    def _intentions(self, jobs: Sequence[Job]) -> list[consul.ConfigEntry]:
        """One service-intentions entry per upstream service: its callers allowed, everyone else denied."""
        callers: dict[str, set[str]] = {}
        for job in jobs:
            for source, destination in job.upstreams:
                callers.setdefault(destination, set()).add(source)
        return [
            consul.ConfigEntry(
                f"{self._name}-intentions-{destination}",
                kind="service-intentions",
                name=destination,
                config_json=json.dumps(
                    {
                        "Sources": [{"Name": s, "Action": "allow"} for s in sorted(sources)]
                        + [{"Name": "*", "Action": "deny"}]
                    },
                    sort_keys=True,
                ),
                opts=pulumi.ResourceOptions(parent=self),
            )
            for destination, sources in sorted(callers.items())
        ]
