"""Nomad job files: loading them with their variables, and the rules every job must pass.

Pure Python (python-hcl2), no Nomad binary and no cluster: the program validates jobs/*.nomad.hcl
before it declares any resource, so a bad job stops `pulumi preview` with every problem listed at
once, and a policy pack can run the same rules. A rule is data (`Rule` in `RULES`); an operator
adds one by appending to a copy of the list and passing it to `check_job` / `validate_jobs`.

What the loader resolves is what Nomad's HCL2 parser resolves from variables: `var.x` and
`"...${var.x}..."`. Nomad's runtime interpolation (`${NOMAD_PORT_http}`, `${node.datacenter}`) is
left as written, as Nomad leaves it for the client. Functions and `locals` are not evaluated: a
value built from them stays an expression (`${...}`), and the rules that need a literal say so.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import hcl2
import pulumi
from hcl2.utils import SerializationOptions

ROOT = Path(__file__).resolve().parent.parent
JOBS_DIR = ROOT / "jobs"
JOB_SUFFIX = ".nomad.hcl"
# Nomad's namespace for a job that names none.
DEFAULT_NAMESPACE = "default"
# Vault's KV v2 mount for workloads (components/access.py KV_PATH); its policy grants a task read on
# kv/data/<namespace>/<job>[/...] and nothing else, so a template reading elsewhere never renders.
KV_MOUNT = "kv"

# The Nomad namespaces jobs may use: "default" (built in) and "apps" (components/access.py makes it).
PLATFORM_NAMESPACE = "default"
"""Where the platform's own jobs run (Traefik, Prometheus, Grafana); built into Nomad."""
APPS_NAMESPACE = "apps"
"""Where the demo apps run; components/access.py creates it."""
JOB_NAMESPACES = (PLATFORM_NAMESPACE, APPS_NAMESPACE)
_PARSE_OPTIONS = SerializationOptions(with_comments=False, preserve_heredocs=False)
_VAR_NAME = r"[A-Za-z_][A-Za-z0-9_-]*"
# `${var.x}` inside a string, not the `$${` escape.
_VAR_INTERPOLATION = re.compile(rf"(?<!\$)\$\{{\s*var\.({_VAR_NAME})\s*\}}")
_VAR_REFERENCE = re.compile(rf"\bvar\.({_VAR_NAME})")
_INTERPOLATION = re.compile(r"(?<!\$)\$\{([^}]*)\}")
_EXPRESSION = re.compile(r"^\$\{(.*)\}$", re.S)
_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
# Tags that move: the image behind them changes without the job changing.
FLOATING_TAGS = frozenset({"latest", "stable", "edge", "nightly", "main", "master"})
# Drivers whose `config.image` is a container image reference.
IMAGE_DRIVERS = frozenset({"docker", "podman", "containerd-driver"})
# The task meta key by which a job states why a task runs in the host's network namespace (the rule
# "host-network-exception"); Nomad passes it to the task as NOMAD_META_host_network_reason, harmlessly.
HOST_NETWORK_REASON = "host_network_reason"
_SECRET_PATH = re.compile(r"""\bsecrets?\s+["`]([^"`]+)["`]""")
_VAULT_TOKEN_READ = re.compile(r"VAULT_TOKEN|vault_token")


class JobError(pulumi.RunError):
    """A job file that cannot be loaded or does not pass the rules. A RunError, so the Pulumi CLI
    prints the message without a traceback."""


class JobLoadError(JobError):
    """A job file that cannot be parsed or whose variables cannot be resolved."""


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


# -- the model ----------------------------------------------------------------------------------------
_MISSING: Any = object()


@dataclass(frozen=True)
class Variable:
    name: str
    type: str | None
    """The type expression as written (`string`, `list(string)`), None when undeclared."""
    description: str | None
    default: Any = _MISSING

    @property
    def required(self) -> bool:
        return self.default is _MISSING


@dataclass(frozen=True)
class Service:
    name: str
    provider: str
    port: Any
    tags: tuple[str, ...]
    checks: tuple[dict[str, Any], ...]
    connect: dict[str, Any] | None
    raw: dict[str, Any] = field(repr=False)


@dataclass(frozen=True)
class Task:
    name: str
    driver: str
    config: dict[str, Any]
    resources: dict[str, Any] | None
    env: dict[str, Any]
    vault: tuple[dict[str, Any], ...]
    """The `vault` blocks that apply to the task: its own, else its group's, else its job's."""
    templates: tuple[dict[str, Any], ...]
    artifacts: tuple[dict[str, Any], ...]
    services: tuple[Service, ...]
    raw: dict[str, Any] = field(repr=False)

    @property
    def image(self) -> Any:
        return self.config.get("image")


@dataclass(frozen=True)
class Group:
    name: str
    count: Any
    tasks: tuple[Task, ...]
    services: tuple[Service, ...]
    raw: dict[str, Any] = field(repr=False)


@dataclass(frozen=True)
class Job:
    file: str
    """The file as reported in messages: relative to the repository when inside it."""
    path: Path
    id: str
    type: str
    namespace: str
    """The job's namespace, Nomad's "default" when the file names none (see `namespace_set`)."""
    namespace_set: bool
    datacenters: Any
    groups: tuple[Group, ...]
    declared: dict[str, Variable]
    variables: dict[str, Any]
    """Every declared variable's value: the one given to load_job, else its default."""
    text: str = field(repr=False)
    """The file's text, the jobspec to submit (with `variables` as its HCL2 variables)."""
    raw: dict[str, Any] = field(repr=False)
    """The parsed job block, variables resolved: blocks are lists of dicts, as python-hcl2 gives them."""

    @property
    def tasks(self) -> tuple[Task, ...]:
        return tuple(task for group in self.groups for task in group.tasks)

    @property
    def services(self) -> tuple[Service, ...]:
        """Group and task services, in file order per group."""
        services: list[Service] = []
        for group in self.groups:
            services.extend(group.services)
            for task in group.tasks:
                services.extend(task.services)
        return tuple(services)

    @property
    def service_names(self) -> tuple[str, ...]:
        return tuple(service.name for service in self.services)

    @property
    def uses_vault(self) -> bool:
        """Whether a task has a `vault` block (its own, its group's or the job's)."""
        return any(task.vault for task in self.tasks)

    @property
    def upstreams(self) -> tuple[tuple[str, str], ...]:
        """(service, upstream service) for every Connect upstream: the intentions the mesh needs."""
        pairs = []
        for service in self.services:
            for sidecar in _blocks(service.connect or {}, "sidecar_service"):
                for proxy in _blocks(sidecar, "proxy"):
                    for upstream in _blocks(proxy, "upstreams"):
                        pairs.append((service.name, upstream["destination_name"]))
        return tuple(pairs)

    @property
    def hcl2_vars(self) -> dict[str, str]:
        """`variables` as Nomad's HCL2 parser takes them (nomad.JobHcl2Args(vars=...)): strings as
        they are, everything else in HCL/JSON syntax (`["dc1"]`, `2`, `true`)."""
        return {name: _var_string(value) for name, value in sorted(self.variables.items())}


def _var_string(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value)


# -- loading --------------------------------------------------------------------------------------------
def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def job_files(directory: Path = JOBS_DIR) -> list[Path]:
    """The job files of a directory (jobs/ by default), sorted."""
    return sorted(directory.glob(f"*{JOB_SUFFIX}"))


def _blocks(body: Mapping[str, Any], name: str) -> list[dict[str, Any]]:
    value = body.get(name)
    if value is None:
        return []
    return [b for b in (value if isinstance(value, list) else [value]) if isinstance(b, dict)]


def _labelled(body: Mapping[str, Any], name: str) -> list[tuple[str, dict[str, Any]]]:
    """`name "label" { ... }` blocks as (label, body) pairs."""
    return [(label, inner) for block in _blocks(body, name) for label, inner in block.items()]


def _one(body: Mapping[str, Any], name: str) -> dict[str, Any] | None:
    blocks = _blocks(body, name)
    return blocks[0] if blocks else None


def _check_type(name: str, type_expr: str | None, value: Any) -> str | None:
    """Why `value` does not fit the variable's type, or None. Types not understood are not checked."""
    if type_expr is None:
        return None
    text = type_expr.strip()
    match = _EXPRESSION.match(text)
    text = (match.group(1) if match else text).replace(" ", "")

    def fits(t: str, v: Any) -> bool:
        if t in ("any", ""):
            return True
        if t == "string":
            return isinstance(v, str)
        if t == "number":
            return isinstance(v, int | float) and not isinstance(v, bool)
        if t == "bool":
            return isinstance(v, bool)
        inner = re.fullmatch(r"(list|set|map)\((.*)\)", t)
        if inner:
            kind, element = inner.groups()
            if kind == "map":
                return isinstance(v, Mapping) and all(fits(element, x) for x in v.values())
            return isinstance(v, list | tuple) and all(fits(element, x) for x in v)
        return True

    if fits(text, value):
        return None
    return f'variable "{name}": {value!r} is not a {text}'


def _parse_variables(document: Mapping[str, Any], file: str) -> dict[str, Variable]:
    declared: dict[str, Variable] = {}
    for name, body in _labelled(document, "variable"):
        if name in declared:
            raise JobLoadError(f'{file}: variable "{name}" is declared twice')
        declared[name] = Variable(
            name=name,
            type=body.get("type"),
            description=body.get("description"),
            default=body.get("default", _MISSING),
        )
        if not declared[name].required:
            problem = _check_type(name, declared[name].type, declared[name].default)
            if problem:
                raise JobLoadError(f"{file}: {problem} (its default)")
    return declared


def _resolve(value: Any, values: Mapping[str, Any], file: str) -> Any:
    """python-hcl2's output as plain data with variable references replaced, as Nomad's HCL2 parser
    would: block markers dropped, quoted strings (and labels, keys) decoded, `var.x` replaced by its
    value, `"...${var.x}..."` interpolated. Other expressions stay `${...}` strings."""
    if isinstance(value, dict):
        return {
            _resolve(k, {}, file): _resolve(v, values, file)
            for k, v in value.items()
            if not (isinstance(k, str) and k.startswith("__"))
        }
    if isinstance(value, list):
        return [_resolve(v, values, file) for v in value]
    if not isinstance(value, str):
        return value

    quoted = len(value) >= 2 and value[0] == value[-1] == '"'
    if quoted:
        try:
            text = json.loads(value)
        except ValueError:  # an HCL escape JSON lacks (\UNNNNNNNN): keep what is between the quotes
            text = value[1:-1]
        # A string references variables only inside its unescaped `${...}`.
        expressions = _INTERPOLATION.findall(text)
    else:
        whole = _EXPRESSION.match(value)
        text = value
        expressions = [whole.group(1)] if whole else []
    for name in (n for e in expressions for n in _VAR_REFERENCE.findall(e)):
        if name not in values:
            raise JobLoadError(f'{file}: reference to undeclared variable "var.{name}"')
    if not quoted:
        reference = re.fullmatch(rf"\$\{{\s*var\.({_VAR_NAME})\s*\}}", text)
        return values[reference.group(1)] if reference else text

    def substitute(match: re.Match[str]) -> str:
        replacement = values[match.group(1)]
        if isinstance(replacement, Mapping | list | tuple):
            raise JobLoadError(
                f'{file}: variable "{match.group(1)}" is a collection and cannot be interpolated into a string'
            )
        return _var_string(replacement)

    # What Nomad receives: HCL's `$${` and `%%{` escapes stand for a literal `${` and `%{`.
    return _VAR_INTERPOLATION.sub(substitute, text).replace("$${", "${").replace("%%{", "%{")


def _service(raw: dict[str, Any], default_name: str) -> Service:
    connect = _one(raw, "connect")
    return Service(
        name=raw.get("name", default_name),
        # Nomad's default provider is Consul.
        provider=raw.get("provider", "consul"),
        port=raw.get("port"),
        tags=tuple(raw.get("tags") or ()),
        checks=tuple(_blocks(raw, "check")),
        connect=connect,
        raw=raw,
    )


def load_job(path: Path, variables: Mapping[str, object] | None = None) -> Job:
    """Parses a job file and resolves its variables from `variables`, else their defaults.

    Values for variables the file does not declare are ignored. Raises JobLoadError naming the file
    for a syntax error, a mistyped value, a reference to an undeclared variable, a required variable
    without a value, or a file without exactly one job.
    """
    path = Path(path)
    file = _display(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise JobLoadError(f"{file}: cannot read: {error.strerror}") from error
    return load_job_text(text, path, variables)


def load_job_text(text: str, path: Path, variables: Mapping[str, object] | None = None) -> Job:
    """load_job for a jobspec already in hand (e.g. a nomad.Job's input); `path` names it in messages."""
    file = _display(Path(path))
    try:
        parsed = hcl2.loads(text, serialization_options=_PARSE_OPTIONS)
    except Exception as error:  # lark's exceptions have no common base worth naming
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise JobLoadError(f"{file}: not valid HCL: {first_line}") from error

    # Variable blocks first, with no variables to refer to: defaults are literals.
    declared = _parse_variables(_resolve({"variable": parsed.get("variable", [])}, {}, file), file)
    # Values for variables the file does not declare are ignored, so that one set of program-wide
    # values can serve every job; validate_jobs reports a name that no job declares (a typo).
    given = {name: value for name, value in (variables or {}).items() if name in declared}
    values: dict[str, Any] = {}
    for name, variable in declared.items():
        if name in given:
            problem = _check_type(name, variable.type, given[name])
            if problem:
                raise JobLoadError(f"{file}: {problem}")
            values[name] = given[name]
        elif variable.required:
            raise JobLoadError(f'{file}: variable "{name}" has no default and no value was given')
        else:
            values[name] = variable.default

    jobs = _labelled(_resolve({"job": parsed.get("job", [])}, values, file), "job")
    if len(jobs) != 1:
        raise JobLoadError(f"{file}: expected exactly one job block, found {len(jobs)}")
    job_id, body = jobs[0]
    return _build_job(path, file, text, job_id, body, declared, values)


def _build_job(
    path: Path,
    file: str,
    text: str,
    job_id: str,
    body: dict[str, Any],
    declared: dict[str, Variable],
    values: dict[str, Any],
) -> Job:
    job_vault = tuple(_blocks(body, "vault"))
    groups = []
    for group_name, group_body in _labelled(body, "group"):
        group_vault = tuple(_blocks(group_body, "vault")) or job_vault
        tasks = []
        for task_name, task_body in _labelled(group_body, "task"):
            default_service = f"{job_id}-{group_name}-{task_name}"
            tasks.append(
                Task(
                    name=task_name,
                    driver=task_body.get("driver", ""),
                    config=_one(task_body, "config") or {},
                    resources=_one(task_body, "resources"),
                    env=_one(task_body, "env") or {},
                    vault=tuple(_blocks(task_body, "vault")) or group_vault,
                    templates=tuple(_blocks(task_body, "template")),
                    artifacts=tuple(_blocks(task_body, "artifact")),
                    services=tuple(_service(s, default_service) for s in _blocks(task_body, "service")),
                    raw=task_body,
                )
            )
        groups.append(
            Group(
                name=group_name,
                count=group_body.get("count", 1),
                tasks=tuple(tasks),
                services=tuple(_service(s, f"{job_id}-{group_name}") for s in _blocks(group_body, "service")),
                raw=group_body,
            )
        )
    return Job(
        file=file,
        path=path,
        id=job_id,
        type=body.get("type", "service"),
        namespace=body.get("namespace", DEFAULT_NAMESPACE),
        namespace_set="namespace" in body,
        datacenters=body.get("datacenters"),
        groups=tuple(groups),
        declared=declared,
        variables=values,
        text=text,
        raw=body,
    )


# -- rules ----------------------------------------------------------------------------------------------
class Scope(StrEnum):
    """What a rule's check is called for: once per job, per group, per task or per service."""

    JOB = "job"
    GROUP = "group"
    TASK = "task"
    SERVICE = "service"


@dataclass(frozen=True)
class JobContext:
    job: Job
    allowed_namespaces: frozenset[str]
    group: Group | None = None
    task: Task | None = None
    service: Service | None = None

    @property
    def where(self) -> str:
        parts = [f'job "{self.job.id}"']
        if self.group:
            parts.append(f'group "{self.group.name}"')
        if self.task:
            parts.append(f'task "{self.task.name}"')
        if self.service:
            parts.append(f'service "{self.service.name}"')
        return " ".join(parts)


@dataclass(frozen=True)
class Rule:
    id: str
    description: str
    scope: Scope
    check: Callable[[JobContext], str | None]
    """Returns what is wrong (one message), or None when the job/group/task/service passes."""


@dataclass(frozen=True)
class Violation:
    file: str
    where: str
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.where}: {self.rule}: {self.message}"


def _is_expression(value: Any) -> bool:
    return isinstance(value, str) and "${" in value


def image_problem(image: Any) -> str | None:
    """Why an image reference is not pinned, or None. A digest (`@sha256:...`) pins it by itself."""
    if not isinstance(image, str) or not image:
        return f"image {image!r} is not a string — pin an exact version tag"
    if _is_expression(image):
        return f'image "{image}" is an expression the validator cannot resolve — use a variable with a default'
    if "@" in image:
        digest = image.split("@", 1)[1]
        if re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
            return None
        return f'image "{image}" has a malformed digest — use @sha256:<64 hex digits>'
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return f'image "{image}" has no tag — pin an exact version tag'
    tag = last.split(":", 1)[1]
    if not tag or tag.lower() in FLOATING_TAGS:
        return f'image "{image}" — pin an exact version tag'
    return None


def _images_pinned(ctx: JobContext) -> str | None:
    task = ctx.task
    assert task is not None
    if task.driver not in IMAGE_DRIVERS and "image" not in task.config:
        return None
    return image_problem(task.image)


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


def _no_raw_exec(ctx: JobContext) -> str | None:
    task = ctx.task
    assert task is not None
    if task.driver == "raw_exec":
        return 'driver "raw_exec" runs the task unisolated as root — use exec, docker or java'
    return None


def _docker_unprivileged(ctx: JobContext) -> str | None:
    task = ctx.task
    assert task is not None
    if task.driver not in IMAGE_DRIVERS:
        return None
    config = task.config
    problems = []
    if config.get("privileged") is True:
        problems.append("privileged = true")
    if config.get("cap_add"):
        problems.append(f"cap_add = {json.dumps(config['cap_add'])}")
    if config.get("volumes"):
        problems.append(f"volumes = {json.dumps(config['volumes'])}")
    if config.get("devices"):
        problems.append("devices")
    mounts = [*_blocks(config, "mount"), *(m for m in config.get("mounts") or () if isinstance(m, dict))]
    for mount in mounts:
        if mount.get("type", "volume") in ("bind", "volume"):
            problems.append(f'mount of type "{mount.get("type", "volume")}" ({mount.get("source", "?")})')
    for mode in ("pid_mode", "ipc_mode", "userns_mode", "uts_mode"):
        if config.get(mode) == "host":
            problems.append(f'{mode} = "host"')
    if problems:
        return (
            ", ".join(problems)
            + " — no privileged containers or host mounts; use a Nomad volume/volume_mount (e.g. the read-only"
            ' "cluster-ca" host volume)'
        )
    return None


def is_numeric_non_root(user: Any) -> bool:
    """Whether a task's `user` names a non-zero numeric uid (`uid` or `uid:gid`). A name is not
    enough: what it means is decided by the image's /etc/passwd, which the rules cannot read."""
    if not isinstance(user, str):
        return False
    uid = user.split(":", 1)[0]
    return uid.isdigit() and int(uid) != 0


def _host_network_exception(ctx: JobContext) -> str | None:
    task = ctx.task
    assert task is not None
    if task.driver not in IMAGE_DRIVERS or task.config.get("network_mode") != "host":
        return None
    problems = []
    reason = (_one(task.raw, "meta") or {}).get(HOST_NETWORK_REASON)
    if not (isinstance(reason, str) and reason.strip()):
        problems.append(f"no meta {HOST_NETWORK_REASON} saying why it needs the host's network")
    user = task.raw.get("user")
    if not is_numeric_non_root(user):
        problems.append(
            f"user {user!r} is not a numeric non-root uid (root in the host's network namespace can bind any"
            " port and open raw sockets on the node's interfaces)"
        )
    if problems:
        return 'network_mode = "host": ' + "; ".join(problems) + " — or leave network_mode unset"
    return None


def _vault_workload_identity(ctx: JobContext) -> str | None:
    task = ctx.task
    assert task is not None
    problems = []
    for block in task.vault:
        if "policies" in block:
            problems.append("vault block sets policies (the legacy token workflow, removed in Nomad 1.10)")
        if "token" in block:
            problems.append("vault block sets a token")
    if "VAULT_TOKEN" in task.env:
        problems.append("env sets VAULT_TOKEN")
    for template in task.templates:
        if _VAULT_TOKEN_READ.search(str(template.get("data", "")) + str(template.get("source", ""))):
            problems.append(f'template "{template.get("destination", "?")}" reads the Vault token')
    if problems:
        return (
            "; ".join(problems)
            + " — use a vault block without policies (workload identity) and let templates read secrets"
        )
    return None


def _vault_paths_scoped(ctx: JobContext) -> str | None:
    task = ctx.task
    assert task is not None
    job = ctx.job
    scope = f"{KV_MOUNT}/data/{job.namespace}/{job.id}"
    outside = [
        path
        for template in task.templates
        for path in _SECRET_PATH.findall(str(template.get("data", "")))
        if path.startswith(f"{KV_MOUNT}/") and not (path == scope or path.startswith(scope + "/"))
    ]
    if outside:
        return (
            f"template reads {', '.join(sorted(set(outside)))}, outside {scope}[/...] — the nomad-workloads Vault policy"
            " grants a task its own namespace and job only, so the template would never render"
        )
    return None


def _artifacts_checksummed(ctx: JobContext) -> str | None:
    task = ctx.task
    assert task is not None
    unchecked = [a.get("source", "?") for a in task.artifacts if not (_one(a, "options") or {}).get("checksum")]
    if unchecked:
        return f'artifact {", ".join(unchecked)} has no options.checksum — pin it with checksum = "sha256:..."'
    return None


def _service_name_dns(ctx: JobContext) -> str | None:
    service = ctx.service
    assert service is not None
    if not isinstance(service.name, str) or not _DNS_LABEL.match(service.name):
        return f"service name {service.name!r} is not a DNS label — lowercase letters, digits and '-', at most 63"
    return None


def _service_consul_checked(ctx: JobContext) -> str | None:
    service = ctx.service
    assert service is not None
    if service.provider != "consul":
        return f'provider "{service.provider}" — register services in Consul (provider = "consul")'
    if not service.checks:
        return "no check — Consul and Traefik route only to instances whose health checks pass"
    return None


def _variables_documented(ctx: JobContext) -> str | None:
    undocumented = sorted(name for name, v in ctx.job.declared.items() if not v.type or not v.description)
    if undocumented:
        return f"variable(s) {', '.join(undocumented)} without type or description"
    return None


RULES: tuple[Rule, ...] = (
    Rule("namespace-allowed", "the job names a namespace of the allowed set", Scope.JOB, _namespace_allowed),
    Rule("variables-documented", "every variable has a type and a description", Scope.JOB, _variables_documented),
    Rule(
        "images-pinned",
        "container images carry an exact version tag or a digest, never latest",
        Scope.TASK,
        _images_pinned,
    ),
    Rule("resources-set", "every task sets cpu and memory", Scope.TASK, _resources_set),
    Rule("no-raw-exec", "no task uses the raw_exec driver", Scope.TASK, _no_raw_exec),
    Rule(
        "docker-unprivileged",
        "no privileged containers, capabilities, docker volumes or host mounts",
        Scope.TASK,
        _docker_unprivileged,
    ),
    Rule(
        "host-network-exception",
        "a container in the host's network namespace states why (meta host_network_reason) and runs as a"
        " numeric non-root uid",
        Scope.TASK,
        _host_network_exception,
    ),
    Rule(
        "vault-workload-identity",
        "Vault only through workload identity: no policies, no token in env or templates",
        Scope.TASK,
        _vault_workload_identity,
    ),
    Rule(
        "vault-paths-scoped",
        "templates read Vault KV under kv/data/<namespace>/<job> only",
        Scope.TASK,
        _vault_paths_scoped,
    ),
    Rule("artifacts-checksummed", "every artifact is pinned with a checksum", Scope.TASK, _artifacts_checksummed),
    Rule("service-names-dns", "service names are DNS labels", Scope.SERVICE, _service_name_dns),
    Rule(
        "services-consul-checked",
        "services register in Consul with a health check",
        Scope.SERVICE,
        _service_consul_checked,
    ),
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
) -> list[Job]:
    """Loads and checks every job; returns them in the order given, or raises JobValidationError
    listing every load error and violation of every file at once. Job ids must be unique: Vault's
    entity alias for a workload is its job id (components/access.py)."""
    items = list(paths_with_variables.items() if isinstance(paths_with_variables, Mapping) else paths_with_variables)
    rules = tuple(rules)
    allowed = frozenset(allowed_namespaces)
    jobs: list[Job] = []
    errors: list[str] = []
    violations: list[Violation] = []
    loaded = 0
    for path, variables in items:
        try:
            job = load_job(Path(path), variables)
        except JobLoadError as error:
            errors.append(str(error))
            continue
        loaded += 1
        jobs.append(job)
        violations.extend(check_job(job, allowed, rules))
    if loaded == len(items):
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
