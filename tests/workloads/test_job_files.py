"""The shipped jobs as the Nomad provider will submit them (the jobspec and HCL2 variables each
nomad.Job carries in the dev program), checked for what they promise at run time, with the Nomad
v2.0.5 behaviour each promise rests on."""

from __future__ import annotations

import json

import pytest
import yaml
from test_jobs import render

from components.workloads.job_model import JOBS_DIR, load_job_text

from conftest import run_program, unwrap

NOBODY = 65534


@pytest.fixture(scope="module")
def submitted():
    """Job id -> the job as parsed from the jobspec and variables the provider receives."""
    dev = run_program("dev", preview=True)
    jobs = {}
    for registration in dev.of_type("nomad:index/job:Job"):
        inputs = unwrap(registration.inputs)
        # Nomad reads a variable's value by its declared type: collections arrive as HCL (JSON) text.
        variables = {k: json.loads(v) if v[:1] in "[{" else v for k, v in inputs["hcl2"]["vars"].items()}
        parsed = load_job_text(inputs["jobspec"], JOBS_DIR / "submitted.nomad.hcl", variables)
        jobs[parsed.id] = parsed
    assert len(jobs) == 8
    return jobs


def _task(job, name):
    return next(t for t in job.tasks if t.name == name)


def test_prometheus_reads_a_copy_of_its_consul_token_that_its_user_can_read(submitted):
    """Nomad writes secrets/consul_token 0640 as root (client/allocrunner/taskrunner/consul_hook.go
    consulTokenFilePerms at v2.0.5); Prometheus runs as nobody. A template renders CONSUL_TOKEN,
    which the consul hook sets before the template hook runs (task_runner_hooks.go), into a file of
    nobody's (api/tasks.go Template uid/gid/perms), and every credentials_file reads that one."""
    task = _task(submitted["prometheus"], "prometheus")
    assert task.raw["user"] == f"{NOBODY}:{NOBODY}"
    (copy,) = [t for t in task.templates if t["destination"] == "secrets/prometheus-consul-token"]
    assert (copy["data"], copy["uid"], copy["gid"], copy["perms"]) == (
        '{{ env "CONSUL_TOKEN" }}',
        NOBODY,
        NOBODY,
        "0400",
    )
    config_template = next(t for t in task.templates if t["destination"] == "local/prometheus.yml")
    config = yaml.safe_load(
        render(config_template["data"], NOMAD_REGION="global", NOMAD_DC="dc1", **{"node.unique.name": "c"})
    )
    files = {
        sd["authorization"]["credentials_file"]
        for scrape in config["scrape_configs"]
        for sd in [*scrape.get("consul_sd_configs", []), scrape]
        if "authorization" in sd
    }
    assert files == {"/secrets/prometheus-consul-token"}


def test_no_non_root_task_reads_the_consul_token_file_nomad_keeps_root_s(submitted):
    for job in submitted.values():
        for task in job.tasks:
            if task.raw.get("user", "root") in ("root", "0") or "consul" not in task.raw:
                continue
            texts = [str(t.get("data", "")) for t in task.templates] + [str(task.config), str(task.env)]
            assert not any("secrets/consul_token" in text for text in texts), f"{job.id}/{task.name}"


def test_a_published_service_s_sidecar_carries_tags_of_its_own(submitted):
    """Consul gives a sidecar without tags its service's tags (command/agent/consul/service_client.go
    sidecarTagsDifferent at v2.0.5): traefik.enable=true would publish Envoy's mesh-only listener."""
    checked = 0
    for job in submitted.values():
        for service in job.services:
            sidecar = ((service.connect or {}).get("sidecar_service") or [None])[0]
            if sidecar is None or "traefik.enable=true" not in service.tags:
                continue
            checked += 1
            tags = sidecar.get("tags") or []
            assert tags and not any(t.startswith("traefik.") for t in tags), f"{job.id}/{service.name}: {tags}"
    assert checked == 1, "count-dashboard"


def test_hello_vault_s_token_reaches_its_template_only(submitted):
    """`env = false` keeps VAULT_TOKEN out of the task's environment; `disable_file = true` keeps
    Nomad from writing secrets/vault_token, mode 0666 (client/allocrunner/taskrunner/vault_hook.go
    writeToken at v2.0.5); the template hook gets the token from the vault hook."""
    (vault,) = _task(submitted["hello-vault"], "http-echo").vault
    assert (vault["env"], vault["disable_file"]) == (False, True)
