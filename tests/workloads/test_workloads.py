"""Workloads under mocks: every job through the explicit Nomad provider, behind what it needs."""

from __future__ import annotations

import json

import pytest

from components.config import reading
from components.workloads import deploy as workloads_module
from components.workloads.job_rules import JobValidationError
from scripts.stack_files import stack_settings

from conftest import ROOT, ClusterMocks, RecordingMonitor, is_secret, run_program, unwrap

JOB = "nomad:index/job:Job"


@pytest.fixture(scope="module")
def dev():
    return run_program("dev", preview=True)


def _jobs(program) -> dict[str, object]:
    jobs = {r.name.removeprefix("cluster-"): r for r in program.of_type(JOB)}
    assert sorted(jobs) == sorted(
        ["traefik", "prometheus", "grafana", "hello-docker", "hello-java", "hello-vault", "countdash", "p-es-cerebro"]
    )
    return jobs


def _urn(program, typ: str, name: str) -> str:
    return program.one(typ, name).urn


def test_every_job_uses_the_explicit_nomad_provider_and_waits_for_the_acl_bootstrap(dev):
    (provider,) = dev.of_type("pulumi:providers:nomad")
    acl = dev.one("pulumi-python:dynamic/hashistack:NomadAclBootstrap", "cluster-nomad-acl")
    assert acl.urn in provider.dependencies, "the provider's token comes from the ACL bootstrap"
    for name, job in _jobs(dev).items():
        assert job.provider.startswith(provider.urn), f"{name}: not through the stack's Nomad provider"
        assert job.inputs["purgeOnDestroy"] is True and job.inputs["detach"] is False, name
        assert (
            _urn(dev, "consul:index/aclAuthMethod:AclAuthMethod", "cluster-consul-nomad-workloads") in job.dependencies
        )


def test_hello_vault_waits_for_its_vault_role_policy_and_secret(dev):
    job = _jobs(dev)["hello-vault"]
    role = _urn(dev, "vault:jwt/authBackendRole:AuthBackendRole", "cluster-vault-nomad-workloads-role")
    policy = _urn(dev, "vault:index/policy:Policy", "cluster-vault-nomad-workloads")
    secret = dev.one("vault:kv/secretV2:SecretV2", "cluster-hello-vault-config")
    assert {role, policy, secret.urn} <= job.dependencies
    assert secret.inputs["mount"] == "kv" and secret.inputs["name"] == "apps/hello-vault/config"
    assert is_secret(secret.inputs["dataJson"]), "the greeting is a random secret"
    assert set(json.loads(unwrap(secret.inputs["dataJson"]))) == {"greeting"}
    assert role not in _jobs(dev)["hello-docker"].dependencies, "only jobs with a vault block need Vault"


def test_countdash_waits_for_intentions_that_allow_only_the_dashboard(dev):
    job = _jobs(dev)["countdash"]
    (intention,) = dev.of_type("consul:index/configEntry:ConfigEntry")
    assert intention.urn in job.dependencies
    assert intention.inputs["kind"] == "service-intentions" and intention.inputs["name"] == "count-api"
    sources = json.loads(intention.inputs["configJson"])["Sources"]
    assert sources == [{"Action": "allow", "Name": "count-dashboard"}, {"Action": "deny", "Name": "*"}]


def test_jobs_get_only_variables_they_declare_and_known_values(dev):
    traefik = _jobs(dev)["traefik"]
    variables = traefik.inputs["hcl2"]["vars"]
    assert variables["ingress_domain"] == "hashistack.test"
    for name, job in _jobs(dev).items():
        assert not is_secret(job.inputs["jobspec"]), name
        for value in (job.inputs.get("hcl2") or {}).get("vars", {}).values():
            assert isinstance(value, str) and "04da6b54" not in value, f"{name}: unknown or non-string variable"


def test_stack_setting_chooses_the_jobs():
    monitor = run_program("dev", {"jobs": ["traefik", "hello-docker"]}, preview=True)
    assert sorted(r.name for r in monitor.of_type(JOB)) == ["cluster-hello-docker", "cluster-traefik"]
    assert not monitor.of_type("vault:kv/secretV2:SecretV2") and not monitor.of_type(
        "consul:index/configEntry:ConfigEntry"
    )


def test_a_bad_job_stops_the_program_before_any_resource(tmp_path, monkeypatch):
    (tmp_path / "bad.nomad.hcl").write_text(
        """
job "bad" {
  namespace = "apps"
  group "web" {
    task "server" {
      driver = "docker"
      config {
        image = "nginx:latest"
      }
    }
  }
}
"""
    )
    monkeypatch.setattr(reading, "JOBS_DIR", tmp_path)
    monkeypatch.setattr(workloads_module, "JOBS_DIR", tmp_path)
    monitor = RecordingMonitor(ClusterMocks())
    with pytest.raises(JobValidationError) as raised:
        run_program("dev", {"jobs": ["bad"]}, preview=True, monitor=monitor)
    message = str(raised.value)
    assert 'job "bad" group "web" task "server": images-pinned' in message
    # The site policy gave the task its tier's default cpu and memory: resources-set has nothing to say.
    assert "resources-set" not in message
    assert monitor.registrations == []


def test_a_broken_job_file_stops_every_stack_even_when_no_stack_enables_it(tmp_path, monkeypatch):
    """The `jobs` setting says every file is validated at start: a broken file fails CI and every
    stack, not only the one that enables it."""
    for name in ("traefik", "prometheus"):
        (tmp_path / f"{name}.nomad.hcl").write_text((ROOT / "jobs" / f"{name}.nomad.hcl").read_text())
    (tmp_path / "draft.nomad.hcl").write_text('job "draft" {\n  namespace = "apps"\n  group "g" {\n')
    monkeypatch.setattr(reading, "JOBS_DIR", tmp_path)
    monkeypatch.setattr(workloads_module, "JOBS_DIR", tmp_path)
    with pytest.raises(JobValidationError, match=r"draft\.nomad\.hcl: not valid HCL"):
        run_program("dev", {"jobs": ["traefik"]}, preview=True)
    (tmp_path / "draft.nomad.hcl").unlink()
    monitor = run_program("dev", {"jobs": ["prometheus", "traefik"]}, preview=True)
    assert sorted(r.name for r in monitor.of_type(JOB)) == ["cluster-prometheus", "cluster-traefik"]
    settings = stack_settings("dev", {"jobs": ["traefik", "prometheus"]})
    assert [job.id for job in workloads_module.load_jobs(settings, ["default", "apps"])] == ["traefik", "prometheus"], (
        "in the setting's order"
    )
