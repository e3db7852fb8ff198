"""The shipped jobs: every file in jobs/ parses and passes the rules with its defaults, and what the
jobs tell Traefik, Prometheus, Grafana and Vault is what the cluster expects. The rules themselves:
test_job_rules.py and test_rules_*.py; loading and variables: test_job_loading.py."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from components.access.namespaces import NOMAD_NAMESPACES
from components.workloads.job_model import JOBS_DIR, Job, job_files, load_job
from components.workloads.job_rules import RULES, JobValidationError, Rule, Scope, check_job, validate_jobs
from components.workloads.rules.images import image_problem

ALLOWED = frozenset(NOMAD_NAMESPACES)
EXPECTED_JOBS = {"traefik", "prometheus", "grafana", "hello-docker", "hello-java", "hello-vault", "countdash"}


@pytest.fixture(scope="module")
def jobs() -> dict[str, Job]:
    files = job_files()
    assert files, f"no *.nomad.hcl in {JOBS_DIR}"
    return {job.id: job for job in (load_job(path) for path in files)}


def block(body: dict, name: str) -> dict:
    """The single block `name` of a parsed body."""
    blocks = body[name]
    assert isinstance(blocks, list) and len(blocks) == 1, f"{name}: expected one block, found {blocks!r}"
    return blocks[0]


def task(job: Job, name: str):
    found = [t for t in job.tasks if t.name == name]
    assert len(found) == 1, f"{job.file}: task {name!r} not found in {[t.name for t in job.tasks]}"
    return found[0]


def render(template: str, **values: str) -> str:
    """A stand-in for Nomad's template rendering, enough to parse the result: `{{ env "X" }}` becomes
    values[X] and any other action the "other" value."""
    rendered = re.sub(r'\{\{\s*env\s+"([^"]+)"\s*\}\}', lambda m: values[m.group(1)], template)
    return re.sub(r"\{\{.*?\}\}", values.get("other", ""), rendered)


# -- every job file ---------------------------------------------------------------------------------------
def test_jobs_dir_holds_the_expected_jobs(jobs):
    assert set(jobs) == EXPECTED_JOBS
    for job in jobs.values():
        assert job.file == f"jobs/{job.id}.nomad.hcl", "one job per file, named after the job"


def test_every_job_passes_every_rule_with_its_defaults(jobs):
    assert jobs
    for job in jobs.values():
        assert check_job(job, ALLOWED) == [], job.file
    assert validate_jobs({path: None for path in job_files()}, ALLOWED)


def test_every_job_declares_typed_described_variables_with_defaults(jobs):
    assert jobs
    for job in jobs.values():
        assert job.declared, f"{job.file}: no variables"
        for variable in job.declared.values():
            assert variable.type and variable.description and not variable.required, (job.file, variable)


def test_every_task_is_pinned_sized_and_unprivileged(jobs):
    tasks = [(job, t) for job in jobs.values() for t in job.tasks]
    assert tasks
    for job, t in tasks:
        assert t.resources and t.resources["cpu"] > 0 and t.resources["memory"] > 0, (job.file, t.name)
        assert t.driver in ("docker", "java"), (job.file, t.name)
        if t.driver == "docker":
            assert image_problem(t.image) is None and ":" in t.image, (job.file, t.image)
            assert not {"privileged", "volumes", "mount", "cap_add"} & set(t.config), (job.file, t.name)


def test_every_service_is_in_consul_with_a_check(jobs):
    services = [s for job in jobs.values() for s in job.services]
    assert services
    for service in services:
        assert service.provider == "consul" and service.checks, service.name


def test_jobs_are_in_their_namespaces(jobs):
    for job_id in ("traefik", "prometheus", "grafana"):
        assert jobs[job_id].namespace == "default"
    for job_id in ("hello-docker", "hello-java", "hello-vault", "countdash"):
        assert jobs[job_id].namespace == "apps" and "namespace" in jobs[job_id].declared


def test_exposed_services_are_tagged_for_traefik(jobs):
    exposed = {s.name for job in jobs.values() for s in job.services if "traefik.enable=true" in s.tags}
    assert exposed == {
        "traefik",
        "prometheus",
        "grafana",
        "hello-docker",
        "hello-java",
        "hello-vault",
        "count-dashboard",
    }


def test_tasks_needing_the_ca_mount_the_read_only_cluster_ca_volume(jobs):
    for job_id in ("traefik", "prometheus"):
        job = jobs[job_id]
        volume = block(job.groups[0].raw, "volume")["cluster-ca"]
        assert volume == {"type": "host", "source": "cluster-ca", "read_only": True}
        mount = block(job.tasks[0].raw, "volume_mount")
        assert mount == {"volume": "cluster-ca", "destination": "/cluster-ca", "read_only": True}
        # A Consul token from workload identity, not one written into the job.
        assert job.tasks[0].raw["consul"] == [{}]


# -- Traefik --------------------------------------------------------------------------------------------
def test_traefik_runs_on_every_client_as_nobody_behind_the_node_redirect(jobs):
    """Traefik listens on 8080/8443 as uid 65534; the node redirects 80/443 there
    (test_node_config.py: test_clients_redirect_the_ingress_ports_to_traefik)."""
    job = jobs["traefik"]
    assert job.type == "system"
    ports = block(job.groups[0].raw, "network")["port"]
    static = {label: body.get("static") for p in ports for label, body in p.items()}
    assert static == {"http": 8080, "https": 8443, "admin": None}
    t = task(job, "traefik")
    assert t.config["network_mode"] == "host"  # the Consul agent listens on the host's loopback
    assert t.raw["user"] == "65534:65534"
    assert block(t.raw, "meta")["host_network_reason"]
    assert (t.env["TRAEFIK_ENTRYPOINTS_WEB_ADDRESS"], t.env["TRAEFIK_ENTRYPOINTS_WEBSECURE_ADDRESS"]) == (
        ":${NOMAD_PORT_http}",
        ":${NOMAD_PORT_https}",
    )


def test_host_network_tasks_run_as_nobody(jobs):
    host_network = {
        (job.id, t.name): t.raw.get("user") for job in jobs.values() for t in job.tasks
        if t.config.get("network_mode") == "host"
    }  # fmt: skip
    assert host_network == {("traefik", "traefik"): "65534:65534", ("prometheus", "prometheus"): "65534:65534"}


def test_traefik_reads_the_local_consul_agent_with_the_workload_token(jobs):
    t = task(jobs["traefik"], "traefik")
    env = t.env
    assert env["TRAEFIK_PROVIDERS_CONSULCATALOG_ENDPOINT_ADDRESS"] == "127.0.0.1:8501"
    assert env["TRAEFIK_PROVIDERS_CONSULCATALOG_ENDPOINT_SCHEME"] == "https"
    assert env["TRAEFIK_PROVIDERS_CONSULCATALOG_ENDPOINT_TLS_CA"] == "/cluster-ca/ca.pem"
    assert env["TRAEFIK_PROVIDERS_CONSULCATALOG_EXPOSEDBYDEFAULT"] == "false"
    assert env["TRAEFIK_PROVIDERS_CONSULCATALOG_DEFAULTRULE"] == "Host(`{{ normalize .Name }}.hashistack.test`)"
    # The token is never in the job: it comes from CONSUL_TOKEN, which Nomad sets in the task's
    # environment (client/allocrunner/taskrunner/consul_hook.go@v2.0.5), and which uid 65534 can read
    # where it cannot read secrets/consul_token (0640, root).
    assert not [key for key in env if "TOKEN" in key]
    command = " ".join(t.config["args"])
    assert 'TRAEFIK_PROVIDERS_CONSULCATALOG_ENDPOINT_TOKEN="$CONSUL_TOKEN"' in command
    assert "export TRAEFIK_PROVIDERS_CONSULCATALOG_ENDPOINT_TOKEN" in command
    assert command.rstrip().endswith("exec traefik")


def test_traefik_dashboard_is_routed_behind_the_admin_allowlist(jobs):
    service = jobs["traefik"].services[0]
    assert "traefik.http.routers.dashboard.rule=Host(`traefik.hashistack.test`)" in service.tags
    assert "traefik.http.routers.dashboard.service=api@internal" in service.tags
    assert "traefik.http.routers.dashboard.middlewares=admin-only@consulcatalog" in service.tags
    allowlist = next(tag for tag in service.tags if ".ipallowlist.sourcerange=" in tag)
    assert "0.0.0.0/0" not in allowlist
    for job_id in ("prometheus", "grafana"):
        assert f"traefik.http.routers.{job_id}.middlewares=admin-only@consulcatalog" in jobs[job_id].services[0].tags


def test_variables_override_defaults():
    job = load_job(JOBS_DIR / "traefik.nomad.hcl", {"ingress_domain": "example.internal", "datacenters": ["dc2"]})
    assert job.variables["ingress_domain"] == "example.internal"
    assert job.datacenters == ["dc2"]
    assert task(job, "traefik").env["TRAEFIK_PROVIDERS_CONSULCATALOG_DEFAULTRULE"] == (
        "Host(`{{ normalize .Name }}.example.internal`)"
    )
    assert "traefik.http.routers.dashboard.rule=Host(`traefik.example.internal`)" in job.services[0].tags
    assert job.hcl2_vars["ingress_domain"] == "example.internal"
    assert json.loads(job.hcl2_vars["datacenters"]) == ["dc2"]
    # Nomad's runtime interpolation is left for the client.
    assert task(job, "traefik").env["TRAEFIK_ENTRYPOINTS_TRAEFIK_ADDRESS"] == "${NOMAD_ADDR_admin}"


def test_an_overridden_variable_is_validated_like_the_file():
    with pytest.raises(JobValidationError) as caught:
        validate_jobs([(JOBS_DIR / "traefik.nomad.hcl", {"image": "traefik:latest"})], ALLOWED)
    assert [(v.rule, v.where) for v in caught.value.violations] == [
        ("images-pinned", 'job "traefik" group "traefik" task "traefik"')
    ]


# -- Prometheus and Grafana -----------------------------------------------------------------------------
def test_prometheus_config_discovers_through_the_local_agent_without_agent_read(jobs):
    t = task(jobs["prometheus"], "prometheus")
    template = next(tp for tp in t.templates if tp["destination"] == "local/prometheus.yml")
    config = yaml.safe_load(
        render(template["data"], NOMAD_REGION="global", NOMAD_DC="dc1", **{"node.unique.name": "client-0"})
    )
    jobs_by_name = {scrape["job_name"]: scrape for scrape in config["scrape_configs"]}
    assert set(jobs_by_name) == {"nomad-servers", "nomad-clients", "consul-agent", "consul-services"}
    sd_configs = [sd for scrape in config["scrape_configs"] for sd in scrape.get("consul_sd_configs", [])]
    assert len(sd_configs) == 3
    for sd in sd_configs:
        assert (sd["server"], sd["scheme"], sd["datacenter"]) == ("127.0.0.1:8501", "https", "dc1")
        # A copy nobody (Prometheus's user) can read: tests/workloads/test_job_files.py.
        assert sd["authorization"] == {"credentials_file": "/secrets/prometheus-consul-token"}
        assert sd["tls_config"] == {"ca_file": "/cluster-ca/ca.pem"}
    assert jobs_by_name["consul-services"]["consul_sd_configs"][0]["tags"] == ["prometheus"]
    for name, server_name in (("nomad-servers", "server.global.nomad"), ("nomad-clients", "client.global.nomad")):
        scrape = jobs_by_name[name]
        assert (scrape["scheme"], scrape["metrics_path"], scrape["params"]) == (
            "https",
            "/v1/metrics",
            {"format": ["prometheus"]},
        )
        assert scrape["tls_config"]["server_name"] == server_name
    agent = jobs_by_name["consul-agent"]
    assert agent["static_configs"][0]["targets"] == ["127.0.0.1:8501"]
    assert agent["metrics_path"] == "/v1/agent/metrics"


def test_grafana_provisions_prometheus_and_three_dashboards(jobs):
    t = task(jobs["grafana"], "grafana")
    assert t.env["GF_PATHS_PROVISIONING"] == "/local/provisioning"
    assert t.env["GF_AUTH_DISABLE_LOGIN_FORM"] == "true" and t.env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    by_destination = {tp["destination"]: tp for tp in t.templates}
    source = yaml.safe_load(render(by_destination["local/provisioning/datasources/prometheus.yaml"]["data"], other="x"))
    (datasource,) = source["datasources"]
    assert (datasource["uid"], datasource["type"]) == ("prometheus", "prometheus")
    assert 'service "prometheus"' in by_destination["local/provisioning/datasources/prometheus.yaml"]["data"]
    provider = yaml.safe_load(by_destination["local/provisioning/dashboards/hashistack.yaml"]["data"])
    assert provider["providers"][0]["options"]["path"] == "/local/dashboards"

    dashboards = {d: tp for d, tp in by_destination.items() if d.startswith("local/dashboards/")}
    assert set(dashboards) == {f"local/dashboards/{n}.json" for n in ("nomad", "consul", "traefik")}
    for destination, tp in dashboards.items():
        # Moved delimiters: nothing in the JSON is a template action, so the file is the JSON itself.
        assert (tp["left_delimiter"], tp["right_delimiter"]) == ("[[", "]]")
        assert "[[" not in tp["data"] and "]]" not in tp["data"]
        dashboard = json.loads(tp["data"])
        prefix = Path(destination).stem + "_"
        panels = dashboard["panels"]
        assert len(panels) >= 3, destination
        exprs = [target["expr"] for panel in panels for target in panel["targets"]]
        assert exprs and any(prefix in expr for expr in exprs), destination
        for panel in panels:
            assert panel["datasource"] == {"type": "prometheus", "uid": datasource["uid"]}, (
                destination,
                panel["title"],
            )


# -- Vault, Java, the mesh ------------------------------------------------------------------------------
def test_hello_vault_reads_its_own_kv_path_by_workload_identity(jobs):
    job = jobs["hello-vault"]
    t = task(job, "http-echo")
    (vault,) = t.vault
    assert "policies" not in vault and vault["env"] is False
    (template,) = t.templates
    assert '{{ with secret "kv/data/apps/hello-vault/config" }}{{ .Data.data.greeting' in template["data"]
    assert template["env"] is True and template["data"].startswith("ECHO_TEXT=")


def test_hello_java_runs_a_checksummed_jar(jobs):
    t = task(jobs["hello-java"], "wiremock")
    (artifact,) = t.artifacts
    assert artifact["source"].startswith("https://repo1.maven.org/maven2/")
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", block(artifact, "options")["checksum"])
    assert t.config["jar_path"] == artifact["destination"]


def test_countdash_api_is_reachable_only_through_the_mesh(jobs):
    job = jobs["countdash"]
    groups = {g.name: g for g in job.groups}
    assert set(groups) == {"count-api", "count-dashboard"}
    api_network = block(groups["count-api"].raw, "network")
    assert api_network == {"mode": "bridge"}, "count-api must publish no port"
    (api,) = groups["count-api"].services
    assert api.connect == {"sidecar_service": [{}]} and api.checks[0]["expose"] is True
    assert "traefik.enable=true" not in api.tags
    (dashboard,) = groups["count-dashboard"].services
    upstream = block(block(block(dashboard.connect, "sidecar_service"), "proxy"), "upstreams")
    assert upstream == {"destination_name": "count-api", "local_bind_port": 8080}
    assert "traefik.enable=true" in dashboard.tags
    assert task(job, "dashboard").env["COUNTING_SERVICE_URL"] == "http://${NOMAD_UPSTREAM_ADDR_count_api}"
    assert job.upstreams == (("count-dashboard", "count-api"),)


def test_only_hello_vault_uses_vault_and_only_countdash_has_upstreams(jobs):
    assert jobs
    assert {job.id for job in jobs.values() if job.uses_vault} == {"hello-vault"}
    assert {job.id for job in jobs.values() if job.upstreams} == {"countdash"}


# -- the rules are data ------------------------------------------------------------------------------------
def test_rules_are_extensible(jobs):
    no_host_network = Rule(
        "no-host-network",
        "tasks stay off the host's network namespace",
        Scope.TASK,
        lambda ctx: "network_mode = host" if ctx.task.config.get("network_mode") == "host" else None,
    )
    rules = [*RULES, no_host_network]
    found = {(v.file, v.rule) for job in jobs.values() for v in check_job(job, ALLOWED, rules)}
    assert found == {("jobs/traefik.nomad.hcl", "no-host-network"), ("jobs/prometheus.nomad.hcl", "no-host-network")}
    with pytest.raises(JobValidationError, match="no-host-network"):
        validate_jobs({path: None for path in job_files()}, ALLOWED, rules)
    # A rule replaced in a copy: the module's list is untouched.
    relaxed = [replace(rule, check=lambda ctx: None) if rule.id == "namespace-allowed" else rule for rule in RULES]
    assert check_job(jobs["traefik"], {"apps"}, relaxed) == []
    assert [v.rule for v in check_job(jobs["traefik"], {"apps"})] == ["namespace-allowed"]
