"""The job rules (components/workloads/job_rules.py, the rules in components/workloads/rules/): each rule
catches what it is for and lets the rest through, one failing and one passing example each (CASES, whose
messages test_job_rule_messages.py keeps whole); validation reports every problem of every file at once.
The rules' helpers: test_rules_images.py, test_rules_isolation.py, test_rules_vault.py (with the template
lexer) and test_rules_artifacts.py."""

from __future__ import annotations

from pathlib import Path

import pulumi
import pytest
from test_jobs import ALLOWED

from components.workloads import job_rules
from components.workloads.job_model import JOBS_DIR, job_files, load_job
from components.workloads.job_rules import RULES, JobValidationError, check_job, validate_directory, validate_jobs
from components.workloads.rule_framework import Violation

DIGEST = "sha256:" + "ab" * 32


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
    # The exec and java drivers' own namespace and capability options (drivers/exec/driver.go@v2.0.5).
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
    # (client/allocrunner/network_manager_linux.go@v2.0.5).
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
    # (dependency/vault_read.go, vault_list.go@v0.42.1).
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
    # go-getter takes the checksum from the URL (checksum.go@v1.8.8); Nomad adds options to the query.
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
    (
        "vault-template-safe",
        vault_job('{{ with secret "kv/data/apps/demo+1/config" }}{{ end }}').replace('job "demo"', 'job "demo+1"'),
        'job ID "demo+1"',
        vault_job('{{ with secret "kv/data/apps/demo-1/config" }}{{ end }}').replace('job "demo"', 'job "demo-1"'),
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
