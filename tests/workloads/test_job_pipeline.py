"""The developers' job pipeline: short definitions (components/workloads/definitions.py), their rendering
(render.py), the site policy (site_policy.py) and the pipeline that runs them before the rules
(pipeline.py). Nomad behaviour the rendered jobs rely on is cited where the code states it."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from components.config.settings import JOBS_DIR, Platform
from components.workloads import hcl_document
from components.workloads.definitions import load_definition
from components.workloads.job_model import job_files, load_job_text
from components.workloads.job_rules import RULES, JobValidationError, check_job
from components.workloads.pipeline import build_jobs, job_sources, seeded_secrets
from components.workloads.render import ClusterParameters, render
from components.workloads.site_policy import (
    SITE_POLICY,
    SitePolicyError,
    apply_site_policy,
    load_site_policy,
    parse_site_policy,
    policy_rules,
)

CLUSTER = ClusterParameters(datacenters=("dc1",), ingress_domain="hashistack.test")
NAMESPACES = ("default", "apps")
MINIMAL = """
name = "shop"
tier = "quality"
image = "nginx:1.27.0"
http = "web"
ports = { web = 8080 }
"""


def definition(tmp_path: Path, text: str = MINIMAL, name: str = "shop"):
    path = tmp_path / f"{name}.nomadgen.toml"
    path.write_text(textwrap.dedent(text))
    return load_definition(path)


def problems(tmp_path: Path, text: str) -> str:
    result = definition(tmp_path, text)
    assert isinstance(result, list), f"expected problems, got {result}"
    return "\n".join(result)


def rendered_job(tmp_path: Path, text: str = MINIMAL):
    result = definition(tmp_path, text)
    assert not isinstance(result, list), result
    return load_job_text(render(result, CLUSTER), result.path)


def passes_the_rules(job) -> bool:
    """The rendered job, once the site policy gave it its defaults, passes every rule."""
    return check_job(modified(job.text), NAMESPACES, (*RULES, *policy_rules(POLICY))) == []


# -- short definitions ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (MINIMAL + 'colour = "blue"\n', "colour: 'blue' — is not a key here; allowed: name, tier"),
        (
            MINIMAL.replace("nginx:1.27.0", "nginx"),
            "image: 'nginx' — must be a container image with a full version tag",
        ),
        (MINIMAL.replace("nginx:1.27.0", "nginx:latest"), "image: 'nginx:latest'"),
        (
            MINIMAL.replace('http = "web"', 'http = "api"'),
            "http: 'api' — must name a port declared in [ports] (declared: web)",
        ),
        (MINIMAL.replace('name = "shop"', 'name = "Shop_1"'), "name: 'Shop_1' — must be a DNS label"),
        (
            MINIMAL.replace('tier = "quality"', 'tier = "staging"'),
            "tier: 'staging' — must be one of production, quality, test",
        ),
        (MINIMAL.replace('name = "shop"\n', ""), "name: None — is required"),
        (MINIMAL + "count = 0\n", "count: 0 — must be an integer from 1 to 100"),
        (
            MINIMAL + '[secrets.TOKEN]\npath = "../other/config"\nkey = "token"\n',
            "secrets.TOKEN.path: '../other/config' — must be a path under the job's own prefix",
        ),
        (
            MINIMAL + '[secrets.TOKEN]\npath = "/kv/data/apps/x"\nkey = "token"\n',
            "secrets.TOKEN.path: '/kv/data/apps/x'",
        ),
        (MINIMAL + '[secrets.TOKEN]\npath = "config"\nkey = "a-b"\n', "secrets.TOKEN.key: 'a-b'"),
        (
            MINIMAL + '[env]\nTOKEN = "x"\n[secrets.TOKEN]\npath = "config"\nkey = "t"\n',
            "secrets.TOKEN: {'path': 'config', 'key': 't'} — is also set in [env]",
        ),
        (
            MINIMAL + '[[upstreams]]\nservice = "db"\nport = 8080\n',
            "upstreams[0].port: 8080 — is also a port of the job",
        ),
        (MINIMAL + "[resources]\ncpu = 5\n", "resources.cpu: 5 — must be an integer from 10"),
        (MINIMAL + 'health = "status"\n', "health: 'status' — must be an absolute HTTP path"),
        ('name = "x"\n', "tier: None — is required"),
        ("name = [", "not valid TOML"),
    ],
)
def test_a_bad_definition_names_the_file_the_key_and_what_is_allowed(tmp_path, text, expected):
    message = problems(tmp_path, text)
    assert message.startswith(str(tmp_path / "shop.nomadgen.toml")) or message.startswith("/"), message
    assert expected in message


def test_every_problem_of_a_definition_is_reported_at_once(tmp_path):
    message = problems(tmp_path, 'name = "A"\ntier = "x"\nimage = "nginx"\n')
    assert "name: 'A'" in message and "tier: 'x'" in message and "image: 'nginx'" in message


# -- rendering ---------------------------------------------------------------------------------------------
def test_a_rendered_job_has_the_cluster_filled_in_and_passes_the_rules(tmp_path):
    job = rendered_job(tmp_path)
    assert (job.id, job.namespace, job.datacenters, job.type) == ("q-shop", "apps", ["dc1"], "service")
    assert job.raw["meta"][0] == {"tier": "quality", "source": str(tmp_path / "shop.nomadgen.toml")}
    (group,) = job.groups
    assert group.raw["network"][0] == {"mode": "bridge", "port": [{"web": {"to": 8080}}]}
    (service,) = job.services
    assert service.name == "q-shop" and service.port == "web" and service.connect is None
    assert service.tags == (
        "traefik.enable=true",
        "traefik.http.routers.q-shop.rule=Host(`q-shop.hashistack.test`)",
        "traefik.http.routers.q-shop.entrypoints=websecure",
        "traefik.http.routers.q-shop.tls=true",
    )
    assert service.checks[0]["type"] == "http" and service.checks[0]["path"] == "/"
    (task,) = job.tasks
    assert task.name == "q-shop" and task.driver == "docker" and task.image == "nginx:1.27.0"
    assert task.resources is None, "the site policy gives the default"
    assert [v.rule for v in check_job(job, NAMESPACES, RULES)] == ["resources-set"], "without the policy"
    assert passes_the_rules(job)


def test_a_job_without_http_gets_a_tcp_check_and_no_ingress(tmp_path):
    job = rendered_job(tmp_path, MINIMAL.replace('http = "web"\n', ""))
    (service,) = job.services
    assert service.tags == () and service.checks[0]["type"] == "tcp" and service.checks[0]["name"] == "q-shop-tcp"
    assert passes_the_rules(job)


def test_secrets_come_from_the_jobs_own_prefix_through_workload_identity(tmp_path):
    job = rendered_job(
        tmp_path, MINIMAL + '[secrets.DB_PASSWORD]\npath = "db/main"\nkey = "password"\ngenerate = true\n'
    )
    (task,) = job.tasks
    assert task.vault == ({"env": False, "disable_file": True, "change_mode": "restart"},)
    (template,) = task.templates
    assert template["env"] is True and template["destination"] == "secrets/vault.env"
    assert template["data"] == (
        'DB_PASSWORD={{ with secret "kv/data/apps/q-shop/db/main" }}{{ .Data.data.password | toJSON }}{{ end }}\n'
    )
    assert passes_the_rules(job)


def test_upstreams_get_a_sidecar_with_its_own_tags_and_command_becomes_command_and_args(tmp_path):
    text = MINIMAL + 'command = ["/bin/app", "--port", "8080"]\n[[upstreams]]\nservice = "count-api"\nport = 9191\n'
    job = rendered_job(tmp_path, text)
    assert job.upstreams == (("q-shop", "count-api"),)
    (service,) = job.services
    sidecar = service.connect["sidecar_service"][0]
    assert sidecar["tags"] == ["mesh"]
    assert sidecar["proxy"][0]["upstreams"] == [{"destination_name": "count-api", "local_bind_port": 9191}]
    (task,) = job.tasks
    assert task.config["command"] == "/bin/app" and task.config["args"] == ["--port", "8080"]
    assert passes_the_rules(job)


def test_the_whole_jobspec_a_definition_renders_to(tmp_path):
    """Every line, as the pipeline submits it: the Consul service with its check's interval and timeout,
    the Connect sidecar, the task's ports, command and args (all but the first word), and the secrets
    template that restarts the task when a secret changes."""
    text = MINIMAL + (
        'command = ["/bin/app", "--port"]\n[[upstreams]]\nservice = "count-api"\nport = 9191\n'
        '[secrets.DB_PASSWORD]\npath = "db/main"\nkey = "password"\ngenerate = true\n'
    )
    result = definition(tmp_path, text)
    source = tmp_path / "shop.nomadgen.toml"
    secret = (
        'DB_PASSWORD={{ with secret \\"kv/data/apps/q-shop/db/main\\" }}{{ .Data.data.password | toJSON }}{{ end }}\\n'
    )
    assert render(result, CLUSTER) == textwrap.dedent(f"""\
        job "q-shop" {{
          namespace   = "apps"
          type        = "service"
          datacenters = [
            "dc1",
          ]

          meta {{
            tier   = "quality"
            source = "{source}"
          }}

          group "q-shop" {{
            count = 1

            network {{
              mode = "bridge"

              port "web" {{
                to = 8080
              }}
            }}

            service {{
              name     = "q-shop"
              provider = "consul"
              port     = "web"
              tags     = [
                "traefik.enable=true",
                "traefik.http.routers.q-shop.rule=Host(`q-shop.hashistack.test`)",
                "traefik.http.routers.q-shop.entrypoints=websecure",
                "traefik.http.routers.q-shop.tls=true",
              ]

              connect {{
                sidecar_service {{
                  tags = [
                    "mesh",
                  ]

                  proxy {{
                    upstreams {{
                      destination_name = "count-api"
                      local_bind_port  = 9191
                    }}
                  }}
                }}
              }}

              check {{
                name     = "q-shop-http"
                type     = "http"
                path     = "/"
                interval = "10s"
                timeout  = "3s"
              }}
            }}

            task "q-shop" {{
              driver = "docker"

              vault {{
                env          = false
                disable_file = true
                change_mode  = "restart"
              }}

              config {{
                image   = "nginx:1.27.0"
                ports   = [
                  "web",
                ]
                command = "/bin/app"
                args    = [
                  "--port",
                ]
              }}

              template {{
                destination = "secrets/vault.env"
                env         = true
                change_mode = "restart"
                data        = "{secret}"
              }}
            }}
          }}
        }}
        """)  # fmt: skip


def test_a_string_with_a_template_directive_is_escaped_for_hcl(tmp_path):
    job = rendered_job(tmp_path, MINIMAL + '[env]\nGREETING = "%{hello} ${NOMAD_PORT_web}"\n')
    assert job.tasks[0].env["GREETING"] == "%{hello} ${NOMAD_PORT_web}"


# -- the site policy ----------------------------------------------------------------------------------------
POLICY = load_site_policy()


def modified(text: str, platform: Platform = Platform.LIBVIRT, policy=POLICY):
    document = apply_site_policy(hcl_document.parse(text), policy, platform)
    return load_job_text(hcl_document.dump(document), Path("x.nomad.hcl"))


def test_the_policy_spreads_updates_places_and_fills_resources_of_a_tiered_job(tmp_path):
    result = definition(tmp_path)
    job = modified(render(result, CLUSTER))
    assert job.raw["spread"] == [
        {"attribute": "${meta.zone}", "weight": 100},
        {"attribute": "${node.datacenter}", "weight": 100},
    ]
    assert job.raw["update"] == [{"max_parallel": 1, "auto_revert": True}]
    assert job.raw["constraint"] == [{"attribute": "${node.class}", "operator": "set_contains_any", "value": "apps"}]
    assert job.raw["node_pool"] == "default"
    assert job.tasks[0].resources == {"cpu": 100, "memory": 128}, "the quality tier's defaults"
    aws = modified(render(result, CLUSTER), Platform.AWS)
    assert aws.raw["spread"][0]["attribute"] == "${attr.platform.aws.placement.availability-zone}"


def test_what_a_job_sets_itself_wins(tmp_path):
    text = render(definition(tmp_path, MINIMAL + "[resources]\ncpu = 300\n"), CLUSTER)
    text = text.replace(
        'type        = "service"',
        'type = "service"\n  update {\n    max_parallel = 3\n  }\n  spread {\n    attribute = "${node.unique.name}"\n    weight = 50\n  }',
    )
    job = modified(text)
    assert job.raw["update"] == [{"max_parallel": 3, "auto_revert": True}]
    assert job.raw["spread"] == [{"attribute": "${node.unique.name}", "weight": 50}]
    assert job.tasks[0].resources == {"cpu": 300, "memory": 128}


def test_a_system_job_gets_no_spread_and_no_update_and_untiered_jobs_are_platform():
    traefik = modified((JOBS_DIR / "traefik.nomad.hcl").read_text())
    assert "spread" not in traefik.raw and "update" not in traefik.raw
    assert "constraint" not in traefik.raw, "the platform tier names no node class"
    prometheus = modified((JOBS_DIR / "prometheus.nomad.hcl").read_text())
    assert len(prometheus.raw["spread"]) == 2 and prometheus.raw["update"][0]["auto_revert"] is True


def test_a_request_above_the_tiers_maximum_is_refused_not_cut(tmp_path):
    text = render(definition(tmp_path, MINIMAL + "[resources]\nmemory = 4096\ncpu = 2500\n"), CLUSTER)
    job = modified(text)
    assert job.tasks[0].resources == {"cpu": 2500, "memory": 4096}, "left as asked"
    (violation,) = check_job(job, NAMESPACES, policy_rules(POLICY))
    assert violation.rule == "resources-within-tier"
    assert violation.message == (
        "cpu = 2500 MHz is above the quality tier's maximum of 2000 MHz (jobs/site-policy.toml tiers.quality.cpu.max); "
        "memory = 4096 MiB is above the quality tier's maximum of 2048 MiB (jobs/site-policy.toml tiers.quality.memory.max)"
    )
    at_cap = modified(render(definition(tmp_path, MINIMAL + "[resources]\nmemory = 2048\ncpu = 2000\n"), CLUSTER))
    assert check_job(at_cap, NAMESPACES, policy_rules(POLICY)) == []


def test_an_unknown_tier_is_left_alone_and_refused():
    text = (
        (JOBS_DIR / "hello-docker.nomad.hcl")
        .read_text()
        .replace('type        = "service"', 'type = "service"\n  meta {\n    tier = "gold"\n  }')
    )
    job = modified(text)
    assert "spread" not in job.raw
    violations = check_job(job, NAMESPACES, policy_rules(POLICY))
    assert [v.rule for v in violations] == ["tier-known"]
    assert (
        'meta.tier "gold" is not a tier of jobs/site-policy.toml (production, quality, test, platform)'
        in violations[0].message
    )


@pytest.mark.parametrize("path", job_files(), ids=lambda p: p.name)
def test_the_validator_still_refuses_what_it_refused(path):
    """Every rule that fires on a broken copy of a real job fires after the policy too (the policy adds
    placement and defaults; it never makes a job pass a rule)."""
    broken = (
        path.read_text()
        .replace('driver = "docker"', 'driver = "raw_exec"', 1)
        .replace('driver = "java"', 'driver = "raw_exec"', 1)
    )
    before = {v.rule for v in check_job(load_job_text(broken, path), NAMESPACES, RULES)}
    after = {v.rule for v in check_job(modified(broken), NAMESPACES, RULES)}
    assert "no-raw-exec" in before and before == after


@pytest.mark.parametrize("path", job_files(), ids=lambda p: p.name)
def test_parsing_and_writing_back_keeps_what_every_job_means(path):
    text = path.read_text()
    again = hcl_document.dump(hcl_document.parse(text))
    original, written = load_job_text(text, path), load_job_text(again, path)
    assert (original.raw, original.declared) == (written.raw, written.declared)
    assert hcl_document.dump(hcl_document.parse(again)) == again, "stable: a second pass changes nothing"
    assert "\n\n\n" not in again and not any(line != line.rstrip() for line in again.splitlines() if "<<" not in line)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"spread": {"attributes": ["rack"]}}, "spread.attributes: ['rack'] — must be a list of zone, datacenter"),
        ({"spread": {"weight": 0}}, "spread.weight: 0 — must be an integer from 1 to 100"),
        ({"update": {"max_parallel": 0}}, "update.max_parallel: 0 — must be at least 1"),
        ({"update": {"auto_revert": "yes"}}, "update.auto_revert: 'yes' — must be true or false"),
        ({"colour": 1}, "colour: 1 — is not a key here"),
        ({"tiers": {"production": None}}, "tiers.quality: None — is required"),
    ],
)
def test_a_bad_site_policy_names_the_key_and_what_is_allowed(change, expected):
    import tomllib

    raw = tomllib.loads(SITE_POLICY.read_text())
    raw.update(change)
    with pytest.raises(SitePolicyError) as raised:
        parse_site_policy(raw, "jobs/site-policy.toml")
    assert expected in str(raised.value)


def test_a_tier_default_above_its_maximum_is_refused():
    import tomllib

    raw = tomllib.loads(SITE_POLICY.read_text())
    raw["tiers"]["test"]["memory"] = {"default": 2048, "max": 1024}
    with pytest.raises(SitePolicyError, match=r"tiers.test.memory.default: 2048 — must not be above its max \(1024\)"):
        parse_site_policy(raw, "jobs/site-policy.toml")


# -- the pipeline -----------------------------------------------------------------------------------------
def test_the_pipeline_renders_applies_and_checks_every_file(tmp_path):
    (tmp_path / "shop.nomadgen.toml").write_text(
        MINIMAL + '[secrets.KEY]\npath = "config"\nkey = "key"\ngenerate = true\n'
    )
    (tmp_path / "hello-docker.nomad.hcl").write_text((JOBS_DIR / "hello-docker.nomad.hcl").read_text())
    jobs = build_jobs(NAMESPACES, {"datacenters": ["dc1"]}, CLUSTER, Platform.LIBVIRT, tmp_path)
    assert sorted(jobs) == ["hello-docker", "shop"]
    assert jobs["shop"].id == "q-shop" and jobs["shop"].seeded_secrets == {"config": ("key",)}
    assert jobs["hello-docker"].seeded_secrets == {}
    for job in jobs.values():
        assert "spread {" in job.text and "max_parallel = 1" in job.text, "the text submitted has the policy"


def test_the_pipeline_reports_every_problem_of_every_file(tmp_path):
    (tmp_path / "shop.nomadgen.toml").write_text(MINIMAL.replace("nginx:1.27.0", "nginx"))
    (tmp_path / "big.nomadgen.toml").write_text(MINIMAL.replace('"shop"', '"big"') + "[resources]\nmemory = 9000\n")
    (tmp_path / "twice.nomadgen.toml").write_text(MINIMAL.replace('"shop"', '"twice"'))
    (tmp_path / "twice.nomad.hcl").write_text('job "twice" {}\n')
    with pytest.raises(JobValidationError) as raised:
        build_jobs(NAMESPACES, {}, CLUSTER, Platform.LIBVIRT, tmp_path)
    message = str(raised.value)
    assert "shop.nomadgen.toml: image: 'nginx'" in message
    assert "resources-within-tier: memory = 9000 MiB" in message
    assert "twice.nomad.hcl and " in message and "one job name, two files" in message


def test_a_name_used_twice_or_a_file_that_is_not_hcl_stops_nothing_after_it(tmp_path):
    """Each is reported, and every file after it (in name order) is still checked."""
    (tmp_path / "a-dup.nomadgen.toml").write_text(MINIMAL.replace('"shop"', '"a-dup"'))
    (tmp_path / "a-dup.nomad.hcl").write_text('job "a-dup" {}\n')
    (tmp_path / "b-broken.nomad.hcl").write_text('job "b-broken" {\n')
    (tmp_path / "shop.nomadgen.toml").write_text(MINIMAL.replace("nginx:1.27.0", "nginx"))
    with pytest.raises(JobValidationError) as raised:
        build_jobs(NAMESPACES, {}, CLUSTER, Platform.LIBVIRT, tmp_path)
    message = str(raised.value)
    assert "a-dup.nomad.hcl and " in message and "one job name, two files" in message
    assert "b-broken.nomad.hcl" in message, "the file that is not HCL, reported when it is loaded"
    assert "shop.nomadgen.toml: image: 'nginx'" in message


def test_without_a_directory_of_job_files_the_pipeline_says_so(tmp_path):
    assert job_sources(tmp_path / "none") == {}
    with pytest.raises(JobValidationError, match=r"none: no such directory of job files"):
        build_jobs(NAMESPACES, {}, CLUSTER, Platform.LIBVIRT, tmp_path / "none")


def test_secrets_generated_at_one_path_are_seeded_together(tmp_path):
    text = MINIMAL + (
        '[secrets.USER]\npath = "db"\nkey = "user"\ngenerate = true\n'
        '[secrets.PASSWORD]\npath = "db"\nkey = "password"\ngenerate = true\n'
        '[secrets.TOKEN]\npath = "api"\nkey = "token"\n'
    )
    assert seeded_secrets(definition(tmp_path, text)) == {"db": ("user", "password")}, "TOKEN is not generated"
    (template,) = rendered_job(tmp_path, text).tasks[0].templates
    assert [line.split("=", 1)[0] for line in template["data"].splitlines()] == ["USER", "PASSWORD", "TOKEN"]


def test_the_seeds_example_renders_and_passes_the_rules():
    jobs = build_jobs(NAMESPACES, {}, CLUSTER, Platform.LIBVIRT, JOBS_DIR)
    cerebro = jobs["es-cerebro"]
    assert cerebro.id == "p-es-cerebro" and cerebro.file == "jobs/es-cerebro.nomadgen.toml"
    assert cerebro.groups[0].count == 2 and cerebro.tasks[0].image == "lmenezes/cerebro:0.9.4"
    assert cerebro.seeded_secrets == {"config": ("password",)}
    assert "Host(`p-es-cerebro.hashistack.test`)" in cerebro.text
    assert check_job(cerebro, NAMESPACES, (*RULES, *policy_rules(POLICY))) == []


def test_the_stacks_place_clients_in_the_class_the_policy_names_and_libvirt_publishes_a_zone():
    from components.nodes.node_plan import cluster_spec
    from scripts.stack_files import stack_settings

    for stack in ("dev", "aws"):
        settings = stack_settings(stack)
        assert settings.client_node_class in POLICY.tiers["production"].node_classes, stack
        assert settings.jobs.count("es-cerebro") == 1, "the seed's example is deployed"
    assert cluster_spec(stack_settings("dev")).zone == "dc1" and cluster_spec(stack_settings("aws")).zone is None
    assert stack_settings("dev", {"jobs": ["es-cerebro"]}).jobs == ("es-cerebro",)
