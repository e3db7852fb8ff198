"""Nomad jobs: every file in jobs/ parses and passes the rules with its defaults; each rule catches
what it is for and lets the rest through; variables resolve as Nomad's HCL2 parser would; what the
jobs tell Traefik, Prometheus, Grafana and Vault is what the cluster expects."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pulumi
import pytest
import yaml

from components import CHECKOUT
from components.access.namespaces import NOMAD_NAMESPACES
from components.workloads import job_rules
from components.workloads.job_rules import (
    JOBS_DIR,
    RULES,
    Job,
    JobLoadError,
    JobValidationError,
    Rule,
    Scope,
    Violation,
    check_job,
    checksum_problem,
    host_path_problem,
    image_problem,
    image_repository,
    isolates_network,
    job_files,
    load_job,
    template_actions,
    validate_directory,
    validate_jobs,
    vault_grants,
    vault_request,
)

ALLOWED = frozenset(NOMAD_NAMESPACES)
EXPECTED_JOBS = {"traefik", "prometheus", "grafana", "hello-docker", "hello-java", "hello-vault", "countdash"}
DIGEST = "sha256:" + "ab" * 32


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
    # environment (client/allocrunner/taskrunner/consul_hook.go@v1.10.3), and which uid 65534 can read
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


# -- the rules, one failing and one passing example each ----------------------------------------------------
def job_hcl(
    *,
    namespace: str | None = "apps",
    driver: str = "docker",
    config: str = 'image = "nginx:1.27.0"',
    resources: str | None = "cpu = 100\n      memory = 64",
    task_extra: str = "",
    service: str = 'name = "web"\n      provider = "consul"\n      port = "http"\n      check {\n        type = "http"\n        path = "/"\n        interval = "10s"\n        timeout = "2s"\n      }',
    variables: str = "",
    network_mode: str | None = None,
) -> str:
    """A small job that passes every rule with the defaults; each argument replaces one part."""
    lines = [variables, 'job "demo" {']
    if namespace is not None:
        lines.append(f'  namespace = "{namespace}"')
    lines += ['  group "web" {', "    network {"]
    if network_mode is not None:
        lines.append(f'      mode = "{network_mode}"')
    lines += ['      port "http" {}', "    }"]
    if service:
        lines += ["    service {", f"      {service}", "    }"]
    lines += ['    task "server" {', f'      driver = "{driver}"', "      config {", f"        {config}", "      }"]
    if resources is not None:
        lines += ["      resources {", f"      {resources}", "      }"]
    lines += [f"      {task_extra}", "    }", "  }", "}"]
    return "\n".join(lines) + "\n"


def exec_job(config: str = 'command = "/bin/true"', driver: str = "exec", **kwargs) -> str:
    """job_hcl with an exec (or java) task, in a bridge-mode group unless network_mode says otherwise."""
    kwargs.setdefault("network_mode", "bridge")
    return job_hcl(driver=driver, config=config, **kwargs)


def java_job(config: str = "", **kwargs) -> str:
    """exec_job with a java task running local/app.jar, plus `config` lines."""
    return exec_job("\n        ".join(filter(None, ['jar_path = "local/app.jar"', config])), driver="java", **kwargs)


def write(tmp_path: Path, text: str, name: str = "demo.nomad.hcl") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def docker(*lines: str) -> str:
    """A docker task config: the default image plus the given lines."""
    return "\n        ".join(['image = "nginx:1.27.0"', *lines])


def mount(kind: str | None, source: str | None = None, target: str = "/data") -> str:
    body = [f'type = "{kind}"'] if kind else []
    if source is not None:
        body.append(f'source = "{source}"')
    body.append(f'target = "{target}"')
    return "mount {\n          " + "\n          ".join(body) + "\n        }"


def template(data: str, destination: str = "local/x", extra: str = "") -> str:
    """A template block with `data` as a heredoc (no HCL escaping of its quotes)."""
    return f'template {{\n  destination = "{destination}"\n{extra}  data = <<-EOT\n  {data}\n  EOT\n}}'


def vault_job(data: str, **kwargs) -> str:
    """A job whose task has a vault block and a template with `data`."""
    return job_hcl(task_extra="vault {}\n" + template(data, **kwargs))


def artifact(source: str, checksum: str | None = None) -> str:
    options = f'\n  options {{\n    checksum = "{checksum}"\n  }}' if checksum is not None else ""
    return f'artifact {{\n  source = "{source}"{options}\n}}'


def mesh_service(proxy: str) -> str:
    """A Connect service whose sidecar proxy has the given body."""
    return (
        'name = "web"\n      port = "http"\n      connect {\n        sidecar_service {\n          proxy {\n'
        f"            {proxy}\n          }}\n        }}\n      }}\n"
        '      check {\n        type = "http"\n        path = "/"\n        interval = "10s"\n        timeout = "2s"\n      }'
    )


UPSTREAM = (
    'upstreams {\n              destination_name = "count-api"\n              local_bind_port = 8080\n            }'
)
PEER_UPSTREAM = (
    'upstreams {\n              destination_peer = "other"\n              local_bind_port = 8080\n            }'
)
JAR = "https://example.com/app.jar"
SHA512 = "sha512:" + "cd" * 64

UNDOCUMENTED_VARIABLE = 'variable "size" {\n  type = number\n  default = 1\n}\n'
DOCUMENTED_VARIABLE = 'variable "size" {\n  type = number\n  description = "How many"\n  default = 1\n}\n'
SCOPED_SECRET = 'template {\n  destination = "local/x"\n  data = "{{ with secret \\"kv/data/apps/demo/config\\" }}{{ .Data.data.x }}{{ end }}"\n}'
OTHER_SECRET = 'template {\n  destination = "local/x"\n  data = "{{ with secret \\"kv/data/default/grafana/admin\\" }}{{ .Data.data.x }}{{ end }}"\n}'

HOST_NETWORK = 'image = "nginx:1.27.0"\n        network_mode = "host"'
HOST_NETWORK_REASON = 'meta {\n  host_network_reason = "it reads the agent on the host loopback"\n}'
HOST_NETWORK_EXCEPTION = f'user = "65534:65534"\n{HOST_NETWORK_REASON}'

# (rule, failing job, what its message says, passing job)
CASES = [
    (
        "images-pinned",
        job_hcl(config='image = "nginx:latest"'),
        'image "nginx:latest" — pin an exact version tag',
        job_hcl(),
    ),
    (
        "images-pinned",
        job_hcl(config='image = "nginx"'),
        'image "nginx" has no tag',
        job_hcl(config=f'image = "nginx@{DIGEST}"'),
    ),
    (
        "images-pinned",
        job_hcl(config='image = "registry.local:5000/team/app"'),
        "has no tag",
        job_hcl(config='image = "registry.local:5000/team/app:2.1.0"'),
    ),
    # A major or minor tag moves with every release under it.
    (
        "images-pinned",
        job_hcl(config='image = "traefik:v3"'),
        'image "traefik:v3": tag "v3" is not a full version',
        job_hcl(config='image = "traefik:v3.4.3"'),
    ),
    (
        "images-pinned",
        job_hcl(config='image = "nginx:1.27"'),
        'tag "1.27" is not a full version',
        job_hcl(config='image = "nginx:1.27.0-alpine"'),
    ),
    (
        "images-pinned",
        job_hcl(config='image = "example/demo-api:v3"'),
        'tag "v3" is not a full version',
        job_hcl(config=f'image = "example/demo-api@{DIGEST}"'),
    ),
    # "+" is not in Docker's tag grammar, so Nomad's docker driver cannot parse the reference.
    (
        "images-pinned",
        job_hcl(config='image = "example/app:1.2.3+build"'),
        "is not a valid image reference",
        job_hcl(config='image = "example/app:1.2.3_build"'),
    ),
    ("resources-set", job_hcl(resources=None), "no resources block", job_hcl()),
    (
        "resources-set",
        job_hcl(resources="cpu = 100"),
        "resources sets no memory",
        job_hcl(resources="cores = 1\n      memory = 64"),
    ),
    (
        "namespace-allowed",
        job_hcl(namespace="prod"),
        'namespace "prod" is not allowed — use one of: apps, default',
        job_hcl(),
    ),
    (
        "namespace-allowed",
        job_hcl(namespace=None),
        'no namespace — set one of: apps, default (Nomad would use "default")',
        job_hcl(namespace="default"),
    ),
    (
        "no-raw-exec",
        job_hcl(driver="raw_exec", config='command = "/bin/true"', network_mode="bridge"),
        'driver "raw_exec"',
        exec_job(),
    ),
    (
        "task-sandboxed",
        job_hcl(config=docker("privileged = true")),
        "privileged = true",
        job_hcl(config=docker('ipc_mode = "private"')),
    ),
    (
        "task-sandboxed",
        job_hcl(config=docker('volumes = ["/:/host"]')),
        'volumes entry "/:/host": source "/" is a host path outside the allocation directory',
        job_hcl(config=docker('volumes = ["local/config:/etc/app", "secrets/tls:/tls:ro", "../alloc/data:/data"]')),
    ),
    (
        "task-sandboxed",
        job_hcl(config=docker('volumes = ["../../etc:/etc"]')),
        'source "../../etc" is a host path outside the allocation directory',
        job_hcl(config=docker('volumes = ["..:/alloc-root"]')),
    ),
    (
        "task-sandboxed",
        job_hcl(config=docker('volumes = ["data"]')),
        'volumes entry "data" is not <source>:<destination>[:<mode>]',
        job_hcl(config=docker('volumes = ["data:/data"]')),
    ),
    (
        "task-sandboxed",
        job_hcl(config=docker('volumes = ["${NOMAD_ALLOC_DIR}/data:/data"]')),
        "is interpolated by Nomad at run time",
        job_hcl(config=docker('volumes = ["alloc/data:/data"]')),
    ),
    (
        "task-sandboxed",
        job_hcl(config=docker('volume_driver = "local"', 'volumes = ["cache:/cache"]')),
        'volume_driver = "local"',
        job_hcl(config=docker('volume_driver = ""', 'volumes = ["cache:/cache"]')),
    ),
    (
        "task-sandboxed",
        job_hcl(config=docker(mount("bind", "/etc", "/etc"))),
        'mount of type "bind": source "/etc" is a host path outside the allocation directory',
        job_hcl(config=docker(mount("bind", "local/etc", "/etc/app"))),
    ),
    (
        "task-sandboxed",
        job_hcl(config=docker(mount(None, "cache"))),
        'mount of type "volume" (cache), a Docker volume',
        job_hcl(config=docker(mount("tmpfs"))),
    ),
    (
        "task-sandboxed",
        job_hcl(config=docker(mount("bind", "secrets/../../../etc"))),
        'source "secrets/../../../etc" is a host path',
        job_hcl(config=docker(mount("bind", "secrets/../local"))),
    ),
    (
        "task-sandboxed",
        job_hcl(config=docker('cap_add = ["sys_admin"]')),
        'cap_add = ["sys_admin"]',
        job_hcl(config=docker('cap_drop = ["all"]')),
    ),
    (
        "task-sandboxed",
        job_hcl(config=docker('devices = [{ host_path = "/dev/sda" }]')),
        "devices (host devices)",
        job_hcl(),
    ),
    (
        "task-sandboxed",
        job_hcl(config=docker('pid_mode = "host"', 'cgroupns = "host"')),
        'pid_mode = "host"; cgroupns = "host"',
        job_hcl(config=docker('pid_mode = "private"', 'cgroupns = "private"')),
    ),
    (
        "task-sandboxed",
        job_hcl(config=docker('userns_mode = "host"', 'uts_mode = "host"')),
        'userns_mode = "host"; uts_mode = "host"',
        job_hcl(),
    ),
    (
        "task-sandboxed",
        job_hcl(config=docker('security_opt = ["seccomp=unconfined", "apparmor:unconfined", "label=disable"]')),
        'security_opt "seccomp=unconfined"; security_opt "apparmor:unconfined"; security_opt "label=disable"',
        job_hcl(config=docker('security_opt = ["no-new-privileges", "label=type:svirt_apache_t"]')),
    ),
    # The exec and java drivers' own namespace and capability options (drivers/exec/driver.go@v1.10.3).
    (
        "task-sandboxed",
        exec_job('command = "/bin/true"\n        pid_mode = "host"\n        ipc_mode = "host"'),
        'pid_mode = "host"; ipc_mode = "host"',
        exec_job('command = "/bin/true"\n        pid_mode = "private"\n        ipc_mode = "private"'),
    ),
    (
        "task-sandboxed",
        java_job('cap_add = ["net_raw"]'),
        'cap_add = ["net_raw"]',
        java_job(),
    ),
    (
        "host-network-exception",
        job_hcl(config=HOST_NETWORK),
        "no meta host_network_reason saying why it needs the host's network; user None is not a numeric non-root uid",
        job_hcl(config=HOST_NETWORK, task_extra=HOST_NETWORK_EXCEPTION),
    ),
    (
        "host-network-exception",
        job_hcl(config=HOST_NETWORK, task_extra=f'user = "nobody"\n{HOST_NETWORK_REASON}'),
        "user 'nobody' is not a numeric non-root uid",
        job_hcl(config=HOST_NETWORK, task_extra=f'user = "1000"\n{HOST_NETWORK_REASON}'),
    ),
    (
        "host-network-exception",
        job_hcl(config=HOST_NETWORK, task_extra=f'user = "0:1000"\n{HOST_NETWORK_REASON}'),
        "user '0:1000' is not a numeric non-root uid",
        job_hcl(config='image = "nginx:1.27.0"\n        network_mode = "bridge"', task_extra='user = "0"'),
    ),
    (
        "host-network-exception",
        job_hcl(config=HOST_NETWORK, task_extra='user = "1000"\nmeta {\n  host_network_reason = " "\n}'),
        "no meta host_network_reason",
        # A docker task in a host-mode group gets Docker's own network, not the host's.
        job_hcl(network_mode="host"),
    ),
    # exec and java run in the group's network namespace, the host's in Nomad's default mode
    # (client/allocrunner/network_manager_linux.go@v1.10.3).
    (
        "host-network-exception",
        java_job(network_mode=None),
        'driver "java" in a group whose network mode is "host" runs in the host\'s network namespace: no meta'
        " host_network_reason saying why it needs the host's network; user None is not a numeric non-root uid (root in"
        " the host's network namespace can bind any port and open raw sockets on the node's interfaces) — or give the"
        ' group network { mode = "bridge" }',
        java_job(),
    ),
    (
        "host-network-exception",
        exec_job(network_mode="host"),
        'driver "exec" in a group whose network mode is "host"',
        exec_job(network_mode="cni/mynet"),
    ),
    (
        "host-network-exception",
        exec_job(network_mode="driver"),
        'network mode is "driver"',
        exec_job(network_mode="none"),
    ),
    (
        "host-network-exception",
        java_job(network_mode=None, task_extra=f'user = "nobody"\n{HOST_NETWORK_REASON}'),
        "user 'nobody' is not a numeric non-root uid",
        java_job(network_mode=None, task_extra=HOST_NETWORK_EXCEPTION),
    ),
    (
        "vault-workload-identity",
        job_hcl(task_extra='vault {\n  policies = ["admin"]\n}'),
        "vault block sets policies",
        job_hcl(task_extra="vault {}"),
    ),
    (
        "vault-workload-identity",
        job_hcl(task_extra='env {\n  VAULT_TOKEN = "hvs.x"\n}'),
        "env sets VAULT_TOKEN",
        job_hcl(task_extra='env {\n  GREETING = "hi"\n}'),
    ),
    (
        "vault-workload-identity",
        job_hcl(task_extra='template {\n  destination = "local/t"\n  data = "{{ env \\"VAULT_TOKEN\\" }}"\n}'),
        'template "local/t" reads the Vault token',
        job_hcl(task_extra=f"vault {{}}\n{SCOPED_SECRET}"),
    ),
    # Only a read of the token itself: a KV key named vault_token_ttl, or VAULT_TOKEN in plain text, is none.
    (
        "vault-workload-identity",
        vault_job('{{ file "/secrets/vault_token" }}'),
        'template "local/x" reads the Vault token',
        vault_job(
            'ttl={{ with secret "kv/data/apps/demo/config" }}{{ .Data.data.vault_token_ttl }}{{ end }} VAULT_TOKEN'
        ),
    ),
    (
        "vault-workload-identity",
        vault_job('{{ envOrDefault "VAULT_TOKEN" "" }}'),
        "reads the Vault token",
        vault_job('{{ env "VAULT_TOKEN_TTL" }} {{ file "local/vault_token" }}'),
    ),
    (
        "vault-workload-identity",
        job_hcl(task_extra='vault {}\ntemplate {\n  source = "secrets/vault_token"\n  destination = "local/t"\n}'),
        'template "local/t" reads the Vault token',
        job_hcl(task_extra='vault {}\ntemplate {\n  source = "local/vault_token.tpl"\n  destination = "local/t"\n}'),
    ),
    (
        "vault-workload-identity",
        job_hcl(task_extra='vault {}\nenv {\n  TOKEN = "$${VAULT_TOKEN}"\n  COPY = "${VAULT_TOKEN}"\n}'),
        "env COPY, TOKEN copies ${VAULT_TOKEN}",
        job_hcl(task_extra='vault {}\nenv {\n  TOKEN_NAME = "VAULT_TOKEN"\n  ADDR = "${VAULT_ADDR}"\n}'),
    ),
    (
        "vault-paths-scoped",
        job_hcl(task_extra=f"vault {{}}\n{OTHER_SECRET}"),
        "template reads kv/data/default/grafana/admin, outside kv/data/apps/demo[/...] (read)",
        job_hcl(task_extra=f"vault {{}}\n{SCOPED_SECRET}"),
    ),
    # consul-template inserts data/ (reads) and metadata/ (lists) on a KV v2 mount
    # (dependency/vault_read.go, vault_list.go@v0.41.0).
    (
        "vault-paths-scoped",
        vault_job('{{ with secret "kv/default/grafana/admin" }}{{ .Data.data.x }}{{ end }}'),
        'reads kv/data/default/grafana/admin (secret "kv/default/grafana/admin")',
        vault_job('{{ with secret "kv/apps/demo/config?version=2" }}{{ .Data.data.x }}{{ end }}'),
    ),
    # The policy grants list on kv/metadata/<namespace>/*, read on kv/metadata nowhere.
    (
        "vault-paths-scoped",
        vault_job('{{ with secret "kv/metadata/apps/demo/config" }}{{ .Data }}{{ end }}'),
        "reads kv/metadata/apps/demo/config",
        vault_job(
            '{{ range secrets "kv/metadata/apps/" }}{{ . }}{{ end }} {{ range secrets "kv/apps/demo" }}{{ end }}'
        ),
    ),
    (
        "vault-paths-scoped",
        vault_job('{{ range secrets "kv/metadata/default/" }}{{ . }}{{ end }}'),
        'lists kv/metadata/default (secrets "kv/metadata/default/"), outside',
        vault_job('{{- range secrets "kv/metadata/apps" -}}{{ . }}{{ end }}'),
    ),
    (
        "vault-paths-scoped",
        vault_job('{{ range secrets "kv/data/apps/demo" }}{{ . }}{{ end }}'),
        'lists kv/metadata/data/apps/demo (secrets "kv/data/apps/demo")',
        vault_job('{{ range secrets "kv/metadata/apps/demo" }}{{ . }}{{ end }}'),
    ),
    (
        "vault-paths-scoped",
        vault_job('{{ with secret "kv/data/apps/demo/config" "greeting=hi" }}{{ end }}'),
        'writes kv/data/apps/demo/config (secret "kv/data/apps/demo/config" with key=value arguments)',
        vault_job('{{ secret "kv/data/apps/demo/config" | toJSON }} {{ with secret "kv/data/apps/demo/x" -}}{{ end }}'),
    ),
    (
        "vault-paths-scoped",
        vault_job('{{ with secret "kv/data/apps/demo/../../default/grafana" }}{{ end }}'),
        "reads kv/data/apps/demo/../../default/grafana",
        vault_job('{{ with secret "pki/issue/web" "common_name=web" }}{{ end }}'),
    ),
    # A computed path cannot be checked; a literal one (even with "}}" or "secret" in other strings) can.
    (
        "vault-paths-scoped",
        vault_job('{{ with secret (printf "kv/data/%s/config" (env "NOMAD_NAMESPACE")) }}{{ end }}'),
        'template "local/x": {{ with secret (printf "kv/data/%s/config" (env "NOMAD_NAMESPACE")) }}: the Vault path is'
        " not a string literal",
        vault_job(
            '{{ printf "}} secret %s" "x" }} {{ with $secret := secret `kv/data/apps/demo/config` }}'
            "{{ $secret.Data.data.secret }}{{ end }}"
        ),
    ),
    (
        "vault-paths-scoped",
        vault_job('{{ with "kv/data/apps/demo/config" | secret }}{{ end }}'),
        "the Vault path is not a string literal",
        vault_job('{{/* secret (printf "x") */}}{{ with (secret "kv/data/apps/demo/config") }}{{ .Data }}{{ end }}'),
    ),
    (
        "vault-paths-scoped",
        vault_job(
            '[[ with secret "kv/data/default/grafana/admin" ]][[ end ]]',
            extra='  left_delimiter = "[["\n  right_delimiter = "]]"\n',
        ),
        "reads kv/data/default/grafana/admin",
        vault_job(
            '{{ secret "kv/data/default/grafana/admin" }} [[ with secret "kv/data/apps/demo" ]][[ end ]]',
            extra='  left_delimiter = "[["\n  right_delimiter = "]]"\n',
        ),
    ),
    (
        "artifacts-checksummed",
        java_job(task_extra=artifact(JAR)),
        f"artifact {JAR} has no checksum",
        java_job(task_extra=artifact(JAR, DIGEST)),
    ),
    # go-getter takes the checksum from the URL (checksum.go@v1.7.8); Nomad adds options to the query.
    (
        "artifacts-checksummed",
        java_job(task_extra=artifact(f"{JAR}?archive=false")),
        "has no checksum",
        java_job(task_extra=artifact(f"{JAR}?checksum={DIGEST}")),
    ),
    (
        "artifacts-checksummed",
        java_job(task_extra=artifact(f"{JAR}?checksum=md5:{'ab' * 16}")),
        'the URL\'s checksum parameter: checksum type "md5" — use sha256 or sha512',
        java_job(task_extra=artifact(f"{JAR}?checksum={SHA512}")),
    ),
    (
        "artifacts-checksummed",
        java_job(task_extra=artifact(f"{JAR}?checksum=file:https://example.com/SHA256SUMS")),
        "is fetched from a URL at download time",
        java_job(task_extra=artifact(f"{JAR}?checksum={'ab' * 32}")),
    ),
    (
        "artifacts-checksummed",
        java_job(task_extra=artifact(f"{JAR}?checksum={'ab' * 20}")),
        'checksum "' + "ab" * 20 + '" is not "<type>:<hex>"',
        java_job(task_extra=artifact(f"{JAR}?checksum={'ab' * 64}")),
    ),
    (
        "artifacts-checksummed",
        java_job(task_extra=artifact(JAR, "ab" * 32)),
        'options.checksum: checksum "' + "ab" * 32 + '" is not "<type>:<hex>"',
        java_job(task_extra=artifact(f"{JAR}?checksum=md5:{'ab' * 16}", DIGEST)),
    ),
    (
        "artifacts-checksummed",
        java_job(task_extra=artifact(JAR, "sha256:abc")),
        'checksum "sha256:abc" is not a sha256 digest (64 hex digits)',
        java_job(task_extra=artifact(JAR, "sha256:${NOMAD_META_jar_sha256}")),
    ),
    (
        "service-names-dns",
        job_hcl(
            service='name = "Web_Front"\n      check {\n        type = "tcp"\n        interval = "10s"\n        timeout = "2s"\n      }'
        ),
        "service name 'Web_Front' is not a DNS label",
        job_hcl(),
    ),
    (
        "services-consul-checked",
        job_hcl(
            service='name = "web"\n      provider = "nomad"\n      check {\n        type = "tcp"\n        interval = "10s"\n        timeout = "2s"\n      }'
        ),
        'provider "nomad"',
        job_hcl(),
    ),
    ("services-consul-checked", job_hcl(service='name = "web"\n      port = "http"'), "no check", job_hcl()),
    (
        "mesh-upstreams-named",
        job_hcl(network_mode="bridge", service=mesh_service(PEER_UPSTREAM)),
        'upstream(s) {"destination_peer": "other", "local_bind_port": 8080} without a literal destination_name',
        job_hcl(network_mode="bridge", service=mesh_service(UPSTREAM)),
    ),
    (
        "mesh-no-transparent-proxy",
        job_hcl(network_mode="bridge", service=mesh_service("transparent_proxy {}")),
        "transparent_proxy — the program derives Consul intentions only from explicit upstreams",
        job_hcl(network_mode="bridge", service=mesh_service(UPSTREAM)),
    ),
    (
        "variables-documented",
        job_hcl(variables=UNDOCUMENTED_VARIABLE),
        "variable(s) size without type or description",
        job_hcl(variables=DOCUMENTED_VARIABLE),
    ),
]


def test_every_rule_has_examples():
    assert RULES and CASES
    assert {case[0] for case in CASES} == {rule.id for rule in RULES}
    assert len({rule.id for rule in RULES}) == len(RULES), "rule ids must be unique"
    for rule in RULES:
        assert rule.description, rule.id


@pytest.mark.parametrize(
    ("rule", "failing", "message", "passing"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)]
)
def test_rule_catches_its_failing_example_and_passes_the_other(tmp_path, rule, failing, message, passing):
    bad = load_job(write(tmp_path, failing, "bad.nomad.hcl"))
    violations = check_job(bad, ALLOWED)
    assert [v.rule for v in violations] == [rule], [str(v) for v in violations]
    assert message in violations[0].message, violations[0].message
    good = load_job(write(tmp_path, passing, "good.nomad.hcl"))
    assert check_job(good, ALLOWED) == [], [str(v) for v in check_job(good, ALLOWED)]


def test_a_host_network_violation_says_all_of_it(tmp_path):
    (violation,) = check_job(load_job(write(tmp_path, job_hcl(config=HOST_NETWORK))), ALLOWED)
    assert violation.message == (
        'network_mode = "host": no meta host_network_reason saying why it needs the host\'s network; user None is'
        " not a numeric non-root uid (root in the host's network namespace can bind any port and open raw sockets"
        " on the node's interfaces) — or leave network_mode unset"
    )


def test_image_references():
    assert image_problem("traefik:v3.4.3") is None
    assert image_problem(f"docker.io/library/nginx:1.27.0@{DIGEST}") is None
    assert image_problem(f"nginx@{DIGEST}") is None
    assert image_problem(f"nginx:1.27@{DIGEST}") is None, "Nomad pulls by the digest, whatever the tag"
    assert "malformed digest" in image_problem("nginx@sha256:abc")
    assert "malformed digest" in image_problem(f"nginx@sha512:{'ab' * 64}")
    assert "pin an exact version tag" in image_problem("nginx:stable")
    assert "pin an exact version tag" in image_problem("nginx:LATEST")
    assert "expression" in image_problem("${var.image}")
    assert "is not a string" in image_problem(None) and "is not a string" in image_problem("")
    for pinned in (
        "nginx:1.27.0",
        "grafana/grafana:12.1.0-ubuntu",
        "prom/prometheus:v3.5.0",
        "x:1.2.3.4",
        "x:10.0.0_1",
    ):
        assert image_problem(pinned) is None, pinned
    for moving in ("traefik:v3", "grafana/grafana:12", "nginx:1.27", "nginx:1", "x:1.2.3-", "x:20240101", "x:v1.2"):
        assert "is not a full version" in image_problem(moving), moving
    for invalid in ("Nginx:1.2.3", "nginx:1.2.3+build", "nginx:-1.2.3", "nginx::1.2.3"):
        assert "is not a valid image reference" in image_problem(invalid), invalid


def test_image_repositories_are_compared_in_canonical_form():
    """distribution/reference normalize.go@v0.6.0 splitDockerDomain, the parser Nomad's docker driver uses."""
    for familiar in ("nginx", "library/nginx", "docker.io/nginx", "docker.io/library/nginx", "index.docker.io/nginx"):
        assert image_repository(familiar) == "docker.io/library/nginx", familiar
    assert image_repository("grafana/grafana") == "docker.io/grafana/grafana"
    assert image_repository("ghcr.io/org/app") == "ghcr.io/org/app"
    assert image_repository("localhost/app") == "localhost/app"
    assert image_repository("registry.local:5000/app") == "registry.local:5000/app"
    assert image_repository("Registry/app") == "Registry/app", "an uppercase first component is a domain"


def test_unversioned_images_may_use_another_tag_but_never_a_floating_one():
    allowlist = {"hashicorpdev/counter-api": "publishes v-tags only"}
    assert image_problem("hashicorpdev/counter-api:v3", allowlist) is None
    assert image_problem("docker.io/hashicorpdev/counter-api:v3", allowlist) is None
    assert "is not a full version" in image_problem("hashicorpdev/counter-dashboard:v3", allowlist)
    assert "pin an exact version tag" in image_problem("hashicorpdev/counter-api:latest", allowlist)
    assert "has no tag" in image_problem("hashicorpdev/counter-api", allowlist)


def test_the_rule_reads_the_module_allowlist(tmp_path, monkeypatch):
    path = write(tmp_path, job_hcl(config='image = "example/demo-api:v3"'))
    assert [v.rule for v in check_job(load_job(path), ALLOWED)] == ["images-pinned"]
    monkeypatch.setitem(job_rules.UNVERSIONED_IMAGES, "example/demo-api", "publishes v-tags only")
    assert check_job(load_job(path), ALLOWED) == []
    # The shipped demo's images are listed, each with its reason.
    assert set(job_rules.UNVERSIONED_IMAGES) >= {"hashicorpdev/counter-api", "hashicorpdev/counter-dashboard"}


@pytest.mark.parametrize(
    ("source", "inside"),
    [
        ("local/config", True),
        ("secrets/tls", True),
        ("alloc/data", True),
        ("../alloc/data", True),
        ("./local", True),
        ("..", True),  # the alloc dir itself
        ("../other-task/local", True),  # another task's dir is inside the allocation too
        ("", True),
        ("/etc", False),
        ("/", False),
        ("../../etc", False),
        ("local/../../..", False),
        ("../..x", False),  # isParentPath tests the relative path's prefix, so "..x" counts as outside
        ("${NOMAD_TASK_DIR}/x", False),
    ],
)
def test_mount_sources_resolve_against_the_task_dir_as_nomad_does(source, inside):
    """drivers/docker/driver.go@v1.10.3 containerBinds/toDockerMount: expandPath(task dir, source), then
    isParentPath(alloc dir, ...) (drivers/docker/utils.go@v1.10.3) with volumes.enabled = false."""
    assert (host_path_problem(source, "server") is None) is inside


def test_a_mount_source_that_is_not_a_string_is_reported():
    assert host_path_problem(None, "server") == "source None is not a string"


@pytest.mark.parametrize(
    ("extra", "reads"),
    [
        ('template {\n  source = "${NOMAD_SECRETS_DIR}/vault_token"\n  destination = "local/t"\n}', True),
        ('template {\n  source = "local/secrets/vault_token.tpl"\n  destination = "local/t"\n}', False),
        (template('{{ mustEnv "VAULT_TOKEN" }}'), True),
        (template('{{ env "VAULT_TOKEN" | toJSON }}'), True),
        (template('{{ file "secrets//vault_token" }}'), True),
        (template('{{ env "HOME" }} vault_token secrets/vault_token'), False),  # text outside actions
        (template('{{ file "secrets/vault_token_ttl" }}'), False),
    ],
)
def test_vault_token_reads_are_matched_precisely(tmp_path, extra, reads):
    """Nomad writes the task's token to secrets/vault_token (client/allocrunner/taskrunner/vault_hook.go@v1.10.3)."""
    rules = [v.rule for v in check_job(load_job(write(tmp_path, job_hcl(task_extra=f"vault {{}}\n{extra}"))), ALLOWED)]
    assert rules == (["vault-workload-identity"] if reads else [])


def test_a_template_with_both_problems_reports_both(tmp_path):
    data = '{{ with secret "kv/data/default/x" }}{{ end }}{{ with secret $path }}{{ end }}'
    (violation,) = check_job(load_job(write(tmp_path, vault_job(data))), ALLOWED)
    assert "template reads kv/data/default/x, outside" in violation.message
    assert 'template "local/x": {{ with secret $path }}: the Vault path is not a string literal' in violation.message


def test_the_first_checksum_parameter_counts_as_in_go(tmp_path):
    """url.Values.Get gives the first value (go-getter checksum.go@v1.7.8 extractChecksum)."""
    first_bad = java_job(task_extra=artifact(f"{JAR}?checksum=md5:{'ab' * 16}&checksum={DIGEST}"))
    assert [v.rule for v in check_job(load_job(write(tmp_path, first_bad)), ALLOWED)] == ["artifacts-checksummed"]
    first_good = java_job(task_extra=artifact(f"{JAR}?checksum={DIGEST}&checksum=md5:{'ab' * 16}"))
    assert check_job(load_job(write(tmp_path, first_good)), ALLOWED) == []


def test_the_mounts_list_is_checked_like_mount_blocks(tmp_path):
    """`mounts` is a block list of the same body as `mount` (drivers/docker/config.go@v1.10.3)."""
    config = docker('mounts = [{ type = "bind", source = "/var/run/docker.sock", target = "/sock" }]')
    (violation,) = check_job(load_job(write(tmp_path, job_hcl(config=config))), ALLOWED)
    assert violation.rule == "task-sandboxed" and '"/var/run/docker.sock" is a host path' in violation.message
    inside = docker('mounts = [{ type = "bind", source = "local/x", target = "/x" }]')
    assert check_job(load_job(write(tmp_path, job_hcl(config=inside))), ALLOWED) == []


def test_group_network_modes():
    """client/allocrunner/network_manager_linux.go@v1.10.3: "host" by default; bridge, none and cni/*
    isolate (netModeToIsolationMode)."""
    assert [isolates_network(m) for m in ("bridge", "Bridge", "none", "cni/mynet")] == [True] * 4
    assert [isolates_network(m) for m in ("host", "driver", "", "cnix")] == [False] * 4


@pytest.mark.parametrize(
    ("function", "path", "expected"),
    [
        ("secret", "kv/data/apps/demo/config", ("read", "kv/data/apps/demo/config")),
        ("secret", "kv/apps/demo/config", ("read", "kv/data/apps/demo/config")),
        ("secret", " /kv/apps/demo/config?version=2 ", ("read", "kv/data/apps/demo/config")),
        ("secret", "kv/metadata/apps/demo", ("read", "kv/metadata/apps/demo")),
        ("secret", "kv/subkeys/apps/demo", ("read", "kv/subkeys/apps/demo")),
        ("secret", "kv", ("read", "kv/data")),
        ("secret", "pki/issue/web", ("read", "pki/issue/web")),
        ("secrets", "kv/metadata/apps/", ("list", "kv/metadata/apps")),
        ("secrets", "kv/apps/demo", ("list", "kv/metadata/apps/demo")),
        ("secrets", "kv/data/apps/demo", ("list", "kv/metadata/data/apps/demo")),
        ("secrets", "kv", ("list", "kv/metadata")),
        ("secrets", "transit/keys", ("list", "transit/keys")),
    ],
)
def test_vault_requests_are_what_consul_template_sends(function, path, expected):
    """dependency/vault_read.go shimKVv2Path and vault_list.go shimKvV2ListPath at consul-template
    v0.41.0, the version in Nomad v1.10.3's go.mod."""
    assert vault_request(function, path) == expected


def test_vault_grants_follow_the_nomad_workloads_policy():
    """policies/vault/nomad-workloads.hcl: read kv/data/<ns>/<job> and kv/data/<ns>/<job>/*, list kv/metadata/<ns>/*."""
    policy = (CHECKOUT / "policies/vault/nomad-workloads.hcl").read_text()
    assert re.findall(r'path "kv/(\w+)/[^"]*?(\*?)" {\s*capabilities = \["(\w+)"\]', policy) == [
        ("data", "*", "read"),
        ("data", "", "read"),
        ("metadata", "*", "list"),
    ]
    assert vault_grants("read", "kv/data/apps/demo", "apps", "demo")
    assert vault_grants("read", "kv/data/apps/demo/config", "apps", "demo")
    assert not vault_grants("read", "kv/data/apps/demo-2/config", "apps", "demo")
    assert not vault_grants("read", "kv/data/apps", "apps", "demo")
    assert not vault_grants("read", "kv/metadata/apps/demo", "apps", "demo")
    assert not vault_grants("list", "kv/data/apps/demo", "apps", "demo")
    assert vault_grants("list", "kv/metadata/apps", "apps", "demo")
    assert vault_grants("list", "kv/metadata/apps/other-job", "apps", "demo")
    assert not vault_grants("list", "kv/metadata/default", "apps", "demo")
    assert not vault_grants("write", "kv/data/apps/demo/config", "apps", "demo")
    assert not vault_grants("write", "kv/metadata/apps/demo", "apps", "demo")
    assert not vault_grants("read", "kv/data/apps/demo/../../default/x", "apps", "demo")


def test_template_actions_are_lexed_as_go_does():
    actions = template_actions('a {{ printf "}}" }} b {{- secret `kv/x` -}} {{/* c */}}{{ .Data.secret }}')
    assert [text for text, _ in actions] == [
        '{{ printf "}}" }}',
        "{{- secret `kv/x` -}}",
        "{{/* c */}}",
        "{{ .Data.secret }}",
    ]
    assert [[t.kind for t in tokens] for _, tokens in actions] == [
        ["ident", "string"],
        ["ident", "string"],
        [],
        ["field"],
    ]
    assert actions[1][1][1].literal == "kv/x"


def test_checksums():
    """nomad/structs/structs.go@v1.10.3 TaskArtifact.validateChecksum and go-getter checksum.go@v1.7.8."""
    assert checksum_problem(DIGEST, in_url=False) is None
    assert checksum_problem(SHA512, in_url=True) is None
    assert checksum_problem(f" {DIGEST.upper().replace('SHA256', 'sha256')} ", in_url=False) is None
    assert checksum_problem("ab" * 32, in_url=True) is None
    assert 'is not "<type>:<hex>"' in checksum_problem("ab" * 32, in_url=False)
    assert "use sha256 or sha512" in checksum_problem("sha1:" + "ab" * 20, in_url=False)
    assert "use sha256 or sha512" in checksum_problem("crc32:abcd", in_url=True)
    assert "is not a sha512 digest (128 hex digits)" in checksum_problem("sha512:" + "ab" * 32, in_url=False)
    assert "is not a string" in checksum_problem(5, in_url=False)


def test_upstreams_without_a_name_are_skipped_not_a_traceback(tmp_path):
    """Job.upstreams gives the intentions' pairs; an unnamed upstream is the rule mesh-upstreams-named's."""
    both = mesh_service(f"{UPSTREAM}\n            {PEER_UPSTREAM}")
    job = load_job(write(tmp_path, job_hcl(network_mode="bridge", service=both)))
    assert job.upstreams == (("web", "count-api"),)
    assert [v.rule for v in check_job(job, ALLOWED)] == ["mesh-upstreams-named"]
    computed = mesh_service('upstreams {\n              destination_name = "${NOMAD_META_api}"\n            }')
    job = load_job(write(tmp_path, job_hcl(network_mode="bridge", service=computed)))
    assert job.upstreams == ()
    assert [v.rule for v in check_job(job, ALLOWED)] == ["mesh-upstreams-named"]


# -- every file of jobs/, enabled or not -------------------------------------------------------------------------
def test_validate_directory_checks_every_file_with_the_program_variables(tmp_path):
    variables = 'variable "datacenters" {\n  type = list(string)\n  description = "where"\n  default = ["*"]\n}\n'
    write(
        tmp_path,
        job_hcl(variables=variables).replace('job "demo" {', 'job "one" {\n  datacenters = var.datacenters'),
        "one.nomad.hcl",
    )
    write(tmp_path, job_hcl().replace('job "demo"', 'job "two"'), "two.nomad.hcl")
    write(tmp_path, "not a job file", "notes.txt")
    jobs = validate_directory(ALLOWED, {"datacenters": ["dc1"]}, tmp_path)
    assert list(jobs) == ["one", "two"]
    assert jobs["one"].datacenters == ["dc1"] and jobs["two"].variables == {}


def test_validate_directory_reports_all_problems_of_all_files(tmp_path):
    write(tmp_path, job_hcl(config='image = "nginx:1.27"').replace('job "demo"', 'job "one"'), "one.nomad.hcl")
    write(tmp_path, java_job(network_mode=None).replace('job "demo"', 'job "two"'), "two.nomad.hcl")
    write(tmp_path, "job {", "broken.nomad.hcl")
    with pytest.raises(JobValidationError) as caught:
        validate_directory(ALLOWED, {"ingress_domain": "example.internal"}, tmp_path)
    error = caught.value
    assert sorted(v.rule for v in error.violations) == ["host-network-exception", "images-pinned"]
    assert len(error.errors) == 1 and "broken.nomad.hcl: not valid HCL" in error.errors[0]


def test_validate_directory_reports_values_no_file_declares_and_duplicate_ids(tmp_path):
    first, second = write(tmp_path, job_hcl(), "a.nomad.hcl"), write(tmp_path, job_hcl(), "b.nomad.hcl")
    with pytest.raises(JobValidationError) as caught:
        validate_directory(ALLOWED, {"ingress_domain": "example.internal"}, tmp_path)
    assert caught.value.errors == (
        f'value given for variable "ingress_domain", which no job declares ({first}, {second})',
        f'{second}: job id "demo" is also the id of {first} — job ids must be unique',
    )


def test_validate_directory_of_a_missing_directory_is_an_error(tmp_path):
    with pytest.raises(JobValidationError, match="no such directory of job files"):
        validate_directory(ALLOWED, None, tmp_path / "absent")
    assert validate_directory(ALLOWED, None, tmp_path) == {}


def test_validate_directory_defaults_to_jobs_and_the_rules(monkeypatch):
    seen = {}

    def fake_validate_jobs(items, allowed, rules):
        seen.update(items=list(items), allowed=set(allowed), rules=tuple(rules))
        return [object() for _ in seen["items"]]

    monkeypatch.setattr(job_rules, "validate_jobs", fake_validate_jobs)
    names = validate_directory(ALLOWED, {"datacenters": ["dc1"]})
    assert list(names) == [p.name.removesuffix(".nomad.hcl") for p in job_files()]
    assert [p for p, _ in seen["items"]] == job_files(JOBS_DIR)
    assert all(v == {"datacenters": ["dc1"]} for _, v in seen["items"])
    assert seen["allowed"] == set(ALLOWED) and seen["rules"] == RULES


# -- messages and errors -----------------------------------------------------------------------------------
def test_violation_names_file_job_group_task_and_rule(tmp_path):
    violation = Violation(
        "jobs/x.nomad.hcl",
        'job "x" group "g" task "t"',
        "images-pinned",
        'image "nginx:latest" — pin an exact version tag',
    )
    assert (
        str(violation)
        == 'jobs/x.nomad.hcl: job "x" group "g" task "t": images-pinned: image "nginx:latest" — pin an exact version tag'
    )

    path = write(tmp_path, job_hcl(config='image = "nginx:latest"'))
    (found,) = check_job(load_job(path), ALLOWED)
    assert (
        str(found)
        == f'{path}: job "demo" group "web" task "server": images-pinned: image "nginx:latest" — pin an exact version tag'
    )
    (service,) = check_job(load_job(write(tmp_path, job_hcl(service='name = "web"\n      port = "http"'))), ALLOWED)
    assert service.where == 'job "demo" group "web" service "web"'


def test_validation_reports_all_problems_of_all_files_at_once(tmp_path):
    files = {
        write(tmp_path, job_hcl(config='image = "nginx:latest"', resources=None), "one.nomad.hcl"): None,
        write(tmp_path, job_hcl(namespace="prod").replace('job "demo"', 'job "two"'), "two.nomad.hcl"): None,
        write(tmp_path, "job {", "broken.nomad.hcl"): None,
    }
    with pytest.raises(JobValidationError) as caught:
        validate_jobs(files, ALLOWED)
    error = caught.value
    assert isinstance(error, pulumi.RunError), "the CLI prints a RunError without a traceback"
    assert sorted(v.rule for v in error.violations) == ["images-pinned", "namespace-allowed", "resources-set"]
    assert len(error.errors) == 1 and "broken.nomad.hcl: not valid HCL" in error.errors[0]
    message = str(error)
    assert "4 problem(s)" in message
    for fragment in (
        "one.nomad.hcl",
        "two.nomad.hcl",
        "broken.nomad.hcl",
        "images-pinned",
        "resources-set",
        "namespace-allowed",
    ):
        assert fragment in message


def test_duplicate_job_ids_are_an_error(tmp_path):
    first = write(tmp_path, job_hcl(), "a.nomad.hcl")
    second = write(tmp_path, job_hcl(), "b.nomad.hcl")
    with pytest.raises(JobValidationError, match='job id "demo" is also the id of'):
        validate_jobs([(first, None), (second, None)], ALLOWED)


def test_a_required_variable_without_value_names_file_and_variable(tmp_path):
    path = write(
        tmp_path,
        job_hcl(variables='variable "image" {\n  type = string\n  description = "x"\n}\n', config="image = var.image"),
    )
    with pytest.raises(JobLoadError) as caught:
        load_job(path)
    assert str(caught.value) == f'{path}: variable "image" has no default and no value was given'
    assert load_job(path, {"image": "nginx:1.27.0"}).tasks[0].image == "nginx:1.27.0"


@pytest.mark.parametrize(
    ("variables", "given", "error"),
    [
        (DOCUMENTED_VARIABLE, {"size": "two"}, "variable \"size\": 'two' is not a number"),
        ("", None, 'reference to undeclared variable "var.image"'),
    ],
)
def test_bad_variables_are_load_errors_naming_the_file(tmp_path, variables, given, error):
    path = write(tmp_path, job_hcl(variables=variables, config="image = var.image"))
    with pytest.raises(JobLoadError) as caught:
        load_job(path, given)
    assert str(caught.value).startswith(f"{path}: ") and error in str(caught.value)


def test_values_for_undeclared_variables_are_ignored_unless_no_job_declares_them(tmp_path):
    path = write(tmp_path, job_hcl(variables=DOCUMENTED_VARIABLE))
    job = load_job(path, {"size": 3, "ingress_domain": "example.internal"})
    assert job.variables == {"size": 3}
    (found,) = validate_jobs([(path, {"size": 3})], ALLOWED)
    assert found.variables == {"size": 3}
    with pytest.raises(JobValidationError) as caught:
        validate_jobs([(path, {"size": 3, "sise": 4})], ALLOWED)
    assert caught.value.errors == (f'value given for variable "sise", which no job declares ({path})',)


def test_interpolation_and_escapes_resolve_as_nomad_does(tmp_path):
    variables = 'variable "tag" {\n  type = string\n  description = "t"\n  default = "1.27.0"\n}\nvariable "n" {\n  type = number\n  description = "n"\n  default = 2\n}\n'
    config = 'image = "nginx:${var.tag}"\n        args = ["--copies=${var.n}", "--literal=$${var.tag}", "--port=${NOMAD_PORT_http}"]'
    job = load_job(write(tmp_path, job_hcl(variables=variables, config=config)))
    assert job.tasks[0].image == "nginx:1.27.0"
    assert job.tasks[0].config["args"] == ["--copies=2", "--literal=${var.tag}", "--port=${NOMAD_PORT_http}"]
    assert job.hcl2_vars == {"n": "2", "tag": "1.27.0"}


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
