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
import posixpath
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import hcl2
import pulumi
from hcl2.utils import SerializationOptions

from components import CHECKOUT
from components.access.namespaces import KV_MOUNT

JOBS_DIR = CHECKOUT / "jobs"
JOB_SUFFIX = ".nomad.hcl"
# Nomad's namespace for a job that names none.
DEFAULT_NAMESPACE = "default"
_PARSE_OPTIONS = SerializationOptions(with_comments=False, preserve_heredocs=False)
_VAR_NAME = r"[A-Za-z_][A-Za-z0-9_-]*"
# `${var.x}` inside a string, not the `$${` escape.
_VAR_INTERPOLATION = re.compile(rf"(?<!\$)\$\{{\s*var\.({_VAR_NAME})\s*\}}")
_VAR_REFERENCE = re.compile(rf"\bvar\.({_VAR_NAME})")
_INTERPOLATION = re.compile(r"(?<!\$)\$\{([^}]*)\}")
_EXPRESSION = re.compile(r"^\$\{(.*)\}$", re.S)
_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
# Tags that move by name: the image behind them changes without the job changing.
FLOATING_TAGS = frozenset({"latest", "stable", "edge", "nightly", "main", "master"})
# A pinned tag: a full version, MAJOR.MINOR.PATCH with an optional leading "v", optionally followed by
# a suffix that starts with "-", "_" or "." (`1.27.0-alpine`, `12.1.0-ubuntu`, `v3.4.3`, `1.2.3.4`).
# `v3`, `12` and `1.27` are not: each moves to the next patch (or minor) release. A "+build" suffix
# cannot occur: "+" is not in a Docker tag (`[\w][\w.-]{0,127}`, distribution/reference
# regexp.go@v0.6.0, the grammar Nomad parses images with), so such a reference is reported as invalid.
_PINNED_TAG = re.compile(r"v?[0-9]+\.[0-9]+\.[0-9]+(?:[-_.][\w.-]+)?", re.ASCII)
# Image repositories that may use a tag which is not a full version (still never a FLOATING_TAGS
# name), each with the reason: images whose publisher makes no version tags, so that only a digest
# would otherwise do. Keys as written in jobs ("nginx", "ghcr.io/org/app"); they are compared in
# Docker's canonical form, so "nginx" also covers "docker.io/library/nginx".
UNVERSIONED_IMAGES: dict[str, str] = {
    # HashiCorp's Connect demo (jobs/countdash.nomad.hcl): tagged only v1, v2, v3 (and -amd64/-arm64
    # variants); Nomad's own example runs ":v3" (command/asset/connect.nomad.hcl at v1.10.3). A
    # production job pins a digest instead (image = "repo@sha256:...").
    "hashicorpdev/counter-api": "publishes only major-version tags (v1, v2, v3)",
    "hashicorpdev/counter-dashboard": "publishes only major-version tags (v1, v2, v3)",
}
# Drivers whose `config.image` is a container image reference.
IMAGE_DRIVERS = frozenset({"docker", "podman", "containerd-driver"})
# Drivers that run a task in its group's network namespace, which is the host's unless the group's
# network mode isolates it: the exec and java drivers support the "host" and "group" isolation modes
# only (driverCapabilities in drivers/exec/driver.go and drivers/java/driver.go@v1.10.3), and the
# executor joins a network namespace only when the alloc has one (NetworkIsolation,
# drivers/shared/executor/executor_linux.go@v1.10.3).
GROUP_NETWORK_DRIVERS = frozenset({"exec", "java"})
# The task meta key by which a job states why a task runs in the host's network namespace (the rule
# "host-network-exception"); Nomad passes it to the task as NOMAD_META_host_network_reason, harmlessly.
HOST_NETWORK_REASON = "host_network_reason"
# Docker run options that put a container in a namespace of the host's (pid, ipc, userns, uts,
# cgroupns = "host"); the task config keys of drivers/docker/config.go@v1.10.3.
DOCKER_HOST_NAMESPACE_OPTIONS = ("pid_mode", "ipc_mode", "userns_mode", "uts_mode", "cgroupns")
# The exec and java drivers' own namespace options (taskConfigSpec, drivers/exec/driver.go@v1.10.3).
EXEC_HOST_NAMESPACE_OPTIONS = ("pid_mode", "ipc_mode")
# Checksum types that pin an artifact: go-getter and Nomad also take md5 and sha1 (checksum.go@v1.7.8,
# TaskArtifact.validateChecksum in nomad/structs/structs.go@v1.10.3), whose collisions can be made.
ARTIFACT_CHECKSUM_HEX_DIGITS = {"sha256": 64, "sha512": 128}
# A Vault token file read: Nomad's vault hook writes the task's token to secrets/vault_token
# (client/allocrunner/taskrunner/vault_hook.go@v1.10.3), i.e. ${NOMAD_SECRETS_DIR}/vault_token.
_VAULT_TOKEN_FILE = re.compile(r"(?:^|/)(?:secrets|\$\{\s*NOMAD_SECRETS_DIR\s*\})/vault_token$")
# `${VAULT_TOKEN}` in a value Nomad interpolates from the task's environment (env values); HCL's
# `$${VAULT_TOKEN}` is the same by then, as the loader resolves the escape as jobspec2 does.
_VAULT_TOKEN_INTERPOLATION = re.compile(r"\$\{\s*VAULT_TOKEN\s*\}")
# consul-template's functions that read the task's environment (template/template.go@v0.41.0, the
# consul-template of Nomad v1.10.3's go.mod).
_ENV_FUNCTIONS = frozenset({"env", "mustEnv", "envOrDefault"})
# Its functions that read (secret "path"), write (secret "path" "k=v") or list (secrets "path") Vault.
_VAULT_FUNCTIONS = frozenset({"secret", "secrets"})


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
        """(service, upstream service) for every Connect upstream: the intentions the mesh needs. An
        upstream without a literal destination_name has none to derive; the rule "mesh-upstreams-named"
        reports it."""
        pairs = []
        for service in self.services:
            for proxy in _proxies(service):
                for upstream in _blocks(proxy, "upstreams"):
                    name = upstream_name(upstream)
                    if name is not None:
                        pairs.append((service.name, name))
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
        return str(path.resolve().relative_to(CHECKOUT))
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


# -- images --------------------------------------------------------------------------------------------------
# distribution/reference regexp.go@v0.6.0 (Nomad v1.10.3's go.mod), which drivers/docker/utils.go@v1.10.3
# parseDockerImage matches images against: an image it does not match is rejected by the driver.
_REF_ALNUM = r"[a-z0-9]+"
_REF_SEPARATOR = r"(?:[._]|__|[-]+)"
_REF_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_REF_DOMAIN = rf"(?:{_REF_DOMAIN_COMPONENT}(?:\.{_REF_DOMAIN_COMPONENT})*|\[(?:[a-fA-F0-9:]+)\])(?::[0-9]+)?"
_REF_PATH_COMPONENT = rf"{_REF_ALNUM}(?:{_REF_SEPARATOR}{_REF_ALNUM})*"
_REF_NAME = rf"(?:{_REF_DOMAIN}/)?{_REF_PATH_COMPONENT}(?:/{_REF_PATH_COMPONENT})*"
_REF_TAG = r"[\w][\w.-]{0,127}"
_REF_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][0-9a-fA-F]{32,}"
_IMAGE_REFERENCE = re.compile(rf"({_REF_NAME})(?::({_REF_TAG}))?(?:@({_REF_DIGEST}))?", re.ASCII)


def image_repository(name: str) -> str:
    """A repository name in Docker's canonical form (`nginx` -> `docker.io/library/nginx`), as
    splitDockerDomain in distribution/reference normalize.go@v0.6.0 makes it."""
    domain, slash, rest = name.partition("/")
    if not slash:
        return f"docker.io/library/{name}"
    if domain == "index.docker.io":
        domain = "docker.io"
    elif not (domain == "localhost" or any(c in domain for c in ".:") or domain.lower() != domain):
        domain, rest = "docker.io", name
    if domain == "docker.io" and "/" not in rest:
        rest = f"library/{rest}"
    return f"{domain}/{rest}"


def image_problem(image: Any, unversioned: Mapping[str, str] | None = None) -> str | None:
    """Why an image reference is not pinned, or None. Pinned: a digest (`@sha256:<64 hex>`, which
    Nomad pulls by whatever the tag), or a full version tag (`_PINNED_TAG`). A repository named in
    `unversioned` (UNVERSIONED_IMAGES by default) may use another tag, never a FLOATING_TAGS one."""
    unversioned = UNVERSIONED_IMAGES if unversioned is None else unversioned
    if not isinstance(image, str) or not image:
        return f"image {image!r} is not a string — pin an exact version tag"
    if _is_expression(image):
        return f'image "{image}" is an expression the validator cannot resolve — use a variable with a default'
    if "@" in image and not re.fullmatch(r"sha256:[0-9a-f]{64}", image.split("@", 1)[1]):
        return f'image "{image}" has a malformed digest — use @sha256:<64 hex digits>'
    reference = _IMAGE_REFERENCE.fullmatch(image)
    if reference is None:
        return (
            f'image "{image}" is not a valid image reference (Nomad\'s docker driver rejects it): a lowercase'
            " repository, then :<tag> of letters, digits, '_', '.' or '-', or @sha256:<digest>"
        )
    name, tag, digest = reference.groups()
    if digest is not None:  # sha256:<64 hex>, checked above
        return None
    if tag is None:
        return f'image "{image}" has no tag (Nomad would pull "latest") — pin an exact version tag'
    if tag.lower() in FLOATING_TAGS:
        return f'image "{image}" — pin an exact version tag'
    if _PINNED_TAG.fullmatch(tag):
        return None
    if image_repository(name) in {image_repository(key) for key in unversioned}:
        return None
    return (
        f'image "{image}": tag "{tag}" is not a full version, so the image behind it moves — pin MAJOR.MINOR.PATCH'
        ' (an optional leading "v" and a suffix such as "-alpine") or a digest (@sha256:...), or add the repository'
        " to UNVERSIONED_IMAGES in components/workloads/job_rules.py with the reason it has no version tags"
    )


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


# -- the sandbox ---------------------------------------------------------------------------------------------
# Where the rules place the allocation directory to resolve a mount source; any absolute path does,
# as the real one (<data_dir>/alloc/<alloc id>) is not known before the allocation exists.
_ALLOC_DIR = "/nomad-alloc-dir"


def host_path_problem(source: Any, task_name: str) -> str | None:
    """Why a bind-mount source is not inside the allocation directory, or None: the check Nomad's
    docker driver makes with `volumes.enabled = false` (the default; drivers/docker/config.go@v1.10.3).
    A relative source is resolved against the task directory (<alloc dir>/<task>) and cleaned, an
    absolute one only cleaned (expandPath, drivers/docker/utils.go@v1.10.3), and the result must be
    the alloc dir or under it (isParentPath: its path relative to the alloc dir does not start with
    ".."). So `local/x`, `secrets/x`, `../alloc/data` and `..` pass; `/etc` and `../../etc` do not.
    An absolute source can only be inside the alloc dir by naming the client's data_dir, which no job
    can know, so every absolute source counts as a host path."""
    if not isinstance(source, str):
        return f"source {source!r} is not a string"
    if _is_expression(source):
        return (
            f'source "{source}" is interpolated by Nomad at run time, which the rules cannot resolve (and'
            " ${NOMAD_ALLOC_DIR} and the like are absolute container paths there, which Nomad rejects)"
        )
    task_dir = posixpath.join(_ALLOC_DIR, task_name)
    resolved = posixpath.normpath(source if source.startswith("/") else posixpath.join(task_dir, source))
    if posixpath.relpath(resolved, _ALLOC_DIR).startswith(".."):
        return f'source "{source}" is a host path outside the allocation directory'
    return None


def _docker_sandbox_problems(task: Task) -> list[str]:
    config = task.config
    problems = []
    if config.get("privileged") is True:
        problems.append("privileged = true")
    if config.get("cap_add"):
        problems.append(f"cap_add = {json.dumps(config['cap_add'])}")
    if config.get("devices"):
        problems.append("devices (host devices)")
    for option in DOCKER_HOST_NAMESPACE_OPTIONS:
        if config.get(option) == "host":
            problems.append(f'{option} = "host"')
    # seccomp/apparmor/systempaths=unconfined and label=disable switch a confinement off
    # (parseSecurityOpts, drivers/docker/driver.go@v1.10.3, takes "key=value" or "key:value").
    for option in config.get("security_opt") or ():
        key, value = _split_opt(str(option))
        if value == "unconfined" or (key == "label" and value == "disable"):
            problems.append(f'security_opt "{option}"')
    # With a volume driver, `volumes` are named volumes: refused unless volumes are enabled
    # (containerBinds, drivers/docker/driver.go@v1.10.3).
    if config.get("volume_driver"):
        problems.append(f'volume_driver = "{config["volume_driver"]}" (a Docker volume, outside the allocation)')
    else:
        for volume in config.get("volumes") or ():
            parts = volume.split(":") if isinstance(volume, str) else []
            if len(parts) < 2:  # parseVolumeSpecLinux, drivers/docker/utils.go@v1.10.3
                problems.append(f"volumes entry {json.dumps(volume)} is not <source>:<destination>[:<mode>]")
                continue
            problem = host_path_problem(parts[0], task.name)
            if problem:
                problems.append(f'volumes entry "{volume}": {problem}')
    # `mount` blocks and the `mounts` list (toDockerMount, drivers/docker/driver.go@v1.10.3): a bind
    # is checked like a volume; tmpfs has no source; any other type (default "volume") is refused.
    for mount in [*_blocks(config, "mount"), *_blocks(config, "mounts")]:
        kind = mount.get("type", "volume")
        if kind == "bind":
            problem = host_path_problem(mount.get("source", ""), task.name)
            if problem:
                problems.append(f'mount of type "bind": {problem}')
        elif kind != "tmpfs":
            problems.append(f'mount of type "{kind}" ({mount.get("source", "?")}), a Docker volume')
    return problems


def _split_opt(option: str) -> tuple[str, str]:
    """A security_opt as (key, value): "key=value", else "key:value" (parseSecurityOpts)."""
    for separator in ("=", ":"):
        if separator in option:
            key, value = option.split(separator, 1)
            return key, value
    return option, ""


def _exec_sandbox_problems(task: Task) -> list[str]:
    config = task.config
    problems = [f'{option} = "host"' for option in EXEC_HOST_NAMESPACE_OPTIONS if config.get(option) == "host"]
    if config.get("cap_add"):
        problems.append(f"cap_add = {json.dumps(config['cap_add'])}")
    return problems


def _task_sandboxed(ctx: JobContext) -> str | None:
    task = ctx.task
    assert task is not None
    if task.driver in IMAGE_DRIVERS:
        problems = _docker_sandbox_problems(task)
    elif task.driver in GROUP_NETWORK_DRIVERS:
        problems = _exec_sandbox_problems(task)
    else:
        return None
    if problems:
        return (
            "; ".join(problems)
            + " — a task keeps to its sandbox: no privileged mode, added capabilities, host namespaces or"
            " host mounts; mount only paths inside the allocation (local/..., secrets/..., ../alloc/...) or a"
            ' Nomad volume with volume_mount (e.g. the read-only "cluster-ca" host volume)'
        )
    return None


# -- the host's network namespace ---------------------------------------------------------------------------
def group_network_mode(group: Group) -> str:
    """The group's network mode; Nomad's default is "host" (newNetworkManager,
    client/allocrunner/network_manager_linux.go@v1.10.3)."""
    network = _one(group.raw, "network") or {}
    mode = network.get("mode")
    return mode if isinstance(mode, str) and mode else "host"


def isolates_network(mode: str) -> bool:
    """Whether a group network mode gives the allocation its own network namespace: "bridge", "none"
    and "cni/<name>" do, "host" and anything else not (netModeToIsolationMode,
    client/allocrunner/network_manager_linux.go@v1.10.3)."""
    mode = mode.lower()
    return mode in ("bridge", "none") or mode.startswith("cni/")


def is_numeric_non_root(user: Any) -> bool:
    """Whether a task's `user` names a non-zero numeric uid (`uid` or `uid:gid`). A name is not
    enough: what it means is decided by the image's /etc/passwd, which the rules cannot read."""
    if not isinstance(user, str):
        return False
    uid = user.split(":", 1)[0]
    return uid.isdigit() and int(uid) != 0


def _host_network_exception(ctx: JobContext) -> str | None:
    task, group = ctx.task, ctx.group
    assert task is not None and group is not None
    if task.driver in IMAGE_DRIVERS:
        # A container without network_mode gets Docker's own network (or the group's namespace), never
        # the host's (createContainerConfig, drivers/docker/driver.go@v1.10.3).
        if task.config.get("network_mode") != "host":
            return None
        what, instead = 'network_mode = "host"', "or leave network_mode unset"
    elif task.driver in GROUP_NETWORK_DRIVERS:
        mode = group_network_mode(group)
        if isolates_network(mode):
            return None
        what = f'driver "{task.driver}" in a group whose network mode is "{mode}" runs in the host\'s network namespace'
        # The exec driver looks its user up by name (HasValidIDs, drivers/exec/driver.go@v1.10.3), so a
        # numeric uid fails there: for exec, bridge mode is the way.
        instead = 'or give the group network { mode = "bridge" }'
    else:
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
        return f"{what}: " + "; ".join(problems) + f" — {instead}"
    return None


# -- templates -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Token:
    kind: str
    """string, field, var, ident, number, pipe, lparen, rparen or other."""
    text: str

    @property
    def literal(self) -> str | None:
        """A string token's value (Go's escapes as JSON's), else None."""
        if self.kind != "string":
            return None
        if self.text.startswith("`"):
            return self.text[1:-1]
        try:
            return json.loads(self.text)
        except ValueError:  # a Go escape JSON lacks (\x41, \a): what is between the quotes
            return self.text[1:-1]


# Go text/template's lexemes inside an action, enough to tell a function's arguments apart.
_GO_TOKEN = re.compile(
    r"""(?P<string>"(?:[^"\\\n]|\\.)*"|`[^`]*`)
      |(?P<char>'(?:[^'\\\n]|\\.)*')
      |(?P<comment>/\*.*?\*/)
      |(?P<field>(?:\.[A-Za-z_][A-Za-z0-9_]*)+|\.)
      |(?P<var>\$[A-Za-z0-9_]*)
      |(?P<ident>[A-Za-z_][A-Za-z0-9_]*)
      |(?P<number>[0-9][0-9A-Za-z_.+-]*)
      |(?P<space>\s+)
      |(?P<pipe>\|)
      |(?P<lparen>\()
      |(?P<rparen>\))
      |(?P<other>.)""",
    re.X | re.S,
)


def template_actions(text: str, left: str = "{{", right: str = "}}") -> list[tuple[str, list[_Token]]]:
    """Each action of a Go template (consul-template's language) as (its text, its tokens, spaces,
    comments and trim markers left out). As in Go's text/template lexer, a right delimiter inside a
    string does not end an action, and "{{- " and " -}}" trim the text around it."""
    trim_left = re.compile(r"-[ \t\r\n]")
    trim_right = re.compile(r"[ \t\r\n]-" + re.escape(right))
    actions = []
    start = text.find(left)
    while start != -1:
        pos = start + len(left)
        if trim_left.match(text, pos):
            pos += 1
        tokens: list[_Token] = []
        while pos < len(text) and not text.startswith(right, pos):
            if trim_right.match(text, pos):
                pos += 2
                break
            match = _GO_TOKEN.match(text, pos)
            assert match is not None  # `other` matches any character
            kind = match.lastgroup or "other"
            if kind == "char":
                kind = "other"
            if kind not in ("space", "comment"):
                tokens.append(_Token(kind, match.group()))
            pos = match.end()
        actions.append((text[start : pos + len(right)], tokens))
        start = text.find(left, pos + len(right))
    return actions


def _template_actions_of(template: Mapping[str, Any]) -> list[tuple[str, list[_Token]]]:
    data = template.get("data")
    if not isinstance(data, str):
        return []
    return template_actions(data, template.get("left_delimiter", "{{"), template.get("right_delimiter", "}}"))


@dataclass(frozen=True)
class _Call:
    function: str
    arguments: tuple[tuple[_Token, ...], ...]
    """Each argument's tokens (a parenthesised argument is one); none when the value is piped in."""


def _calls(tokens: Sequence[_Token], functions: frozenset[str]) -> list[_Call]:
    """Calls of the named functions in an action's tokens."""
    calls = []
    for index, token in enumerate(tokens):
        if token.kind != "ident" or token.text not in functions:
            continue
        arguments: list[tuple[_Token, ...]] = []
        current: list[_Token] = []
        depth = 0
        for following in tokens[index + 1 :]:
            if depth == 0 and following.kind in ("pipe", "rparen"):
                break
            current.append(following)
            depth += {"lparen": 1, "rparen": -1}.get(following.kind, 0)
            if depth == 0:
                arguments.append(tuple(current))
                current = []
        calls.append(_Call(token.text, tuple(arguments)))
    return calls


def _reads_vault_token(template: Mapping[str, Any]) -> bool:
    """Whether a template reads the task's Vault token: `env "VAULT_TOKEN"` (or mustEnv, envOrDefault),
    the token file secrets/vault_token named in an action, or that file as the template's source."""
    source = template.get("source")
    if isinstance(source, str) and _VAULT_TOKEN_FILE.search(posixpath.normpath(source)):
        return True
    for _, tokens in _template_actions_of(template):
        for call in _calls(tokens, _ENV_FUNCTIONS):
            if call.arguments and call.arguments[0][0].literal == "VAULT_TOKEN":
                return True
        for token in tokens:
            value = token.literal
            if value and _VAULT_TOKEN_FILE.search(posixpath.normpath(value)):
                return True
    return False


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
    copied = sorted(k for k, v in task.env.items() if isinstance(v, str) and _VAULT_TOKEN_INTERPOLATION.search(v))
    if copied:
        problems.append(f"env {', '.join(copied)} copies ${{VAULT_TOKEN}}")
    for template in task.templates:
        if _reads_vault_token(template):
            problems.append(f'template "{template.get("destination", "?")}" reads the Vault token')
    if problems:
        return (
            "; ".join(problems)
            + " — use a vault block without policies (workload identity) and let templates read secrets"
        )
    return None


def vault_request(function: str, path: str) -> tuple[str, str]:
    """(operation, Vault path) that consul-template v0.41.0 (Nomad v1.10.3's) sends for `secret "path"`
    (read) or `secrets "path"` (list) on this cluster's KV v2 mount: spaces and slashes trimmed,
    a read's query string dropped (NewVaultReadQuery, NewVaultListQuery); a read gets "data/" after
    the mount unless it names data/, metadata/ or subkeys/ (shimKVv2Path, dependency/vault_read.go),
    a list gets "metadata/" unless it starts with it (shimKvV2ListPath, dependency/vault_list.go).
    Paths on other mounts are returned trimmed."""
    path = path.strip().strip("/")
    mount = KV_MOUNT
    if function == "secrets":
        if path == mount:
            return "list", posixpath.join(mount, "metadata")
        if not path.startswith(mount + "/") or path.startswith(posixpath.join(mount, "metadata")):
            return "list", path
        return "list", posixpath.normpath(posixpath.join(mount, "metadata", path[len(mount) + 1 :]))
    path = urlsplit(path).path
    if path == mount:
        return "read", posixpath.join(mount, "data")
    if not path.startswith(mount + "/"):
        return "read", path
    rest = path[len(mount) + 1 :]
    if rest.startswith(("data/", "metadata/", "subkeys/")):
        return "read", path
    return "read", posixpath.join(mount, "data", rest)


def vault_grants(operation: str, path: str, namespace: str, job_id: str) -> bool:
    """Whether the nomad-workloads policy (policies/vault/nomad-workloads.hcl) grants a task of this
    job `operation` on `path`: read on kv/data/<namespace>/<job>[/...], list on
    kv/metadata/<namespace>[/...] (Vault gives a list path a trailing slash, so kv/metadata/<ns> itself
    matches kv/metadata/<ns>/*: "List Operations Always Use Trailing Slash", Vault 0.7.0 upgrade guide)."""
    segments = path.split("/")
    if any(segment in ("", ".", "..") for segment in segments):
        return False
    if operation == "read":
        return segments[:4] == [KV_MOUNT, "data", namespace, job_id]
    return operation == "list" and segments[:3] == [KV_MOUNT, "metadata", namespace]


def _vault_paths_scoped(ctx: JobContext) -> str | None:
    task = ctx.task
    assert task is not None
    job = ctx.job
    outside: list[str] = []
    computed: list[str] = []
    for template in task.templates:
        destination = template.get("destination", "?")
        for action, tokens in _template_actions_of(template):
            for call in _calls(tokens, _VAULT_FUNCTIONS):
                # A parenthesised first argument starts with "(", which is no literal.
                path = call.arguments[0][0].literal if call.arguments else None
                if path is None:
                    computed.append(f'template "{destination}": {action}')
                    continue
                operation, effective = vault_request(call.function, path)
                if call.function == "secret" and len(call.arguments) > 1:
                    operation = "write"  # secret "path" "k=v" writes (secretFunc, template/funcs.go@v0.41.0)
                if not effective.startswith(KV_MOUNT + "/") or vault_grants(
                    operation, effective, job.namespace, job.id
                ):
                    continue
                described = f"{operation}s {effective}"
                if operation == "write":
                    described += f' (secret "{path}" with key=value arguments)'
                elif effective != path:
                    described += f' ({call.function} "{path}")'
                outside.append(described)
    problems = []
    if outside:
        problems.append(
            f"template {', '.join(sorted(set(outside)))}, outside kv/data/{job.namespace}/{job.id}[/...] (read) and"
            f" kv/metadata/{job.namespace}/... (list) — the nomad-workloads Vault policy grants a task read on its"
            " own namespace and job and list on its namespace only, so the template would never render"
        )
    if computed:
        problems.append(
            f"{'; '.join(computed)}: the Vault path is not a string literal, so the rules cannot check where it"
            ' reads — write it as one (secret "kv/data/<namespace>/<job>/...")'
        )
    return "; ".join(problems) or None


# -- artifacts -----------------------------------------------------------------------------------------------------
def checksum_problem(checksum: Any, *, in_url: bool) -> str | None:
    """Why an artifact checksum does not pin the download, or None. "sha256:<64 hex>" or
    "sha512:<128 hex>"; in the URL, go-getter also takes the hex alone and tells the type by its
    length (extractChecksum, newChecksumFromValue: checksum.go@v1.7.8). A value Nomad interpolates at
    run time passes, as Nomad lets it (TaskArtifact.validateChecksum, nomad/structs/structs.go@v1.10.3)."""
    if not isinstance(checksum, str):
        return f"checksum {checksum!r} is not a string"
    if _is_expression(checksum):
        return None
    value = checksum.strip()
    kind, separator, digest = value.partition(":")
    if not separator:
        if in_url and re.fullmatch(r"[0-9a-fA-F]{64}|[0-9a-fA-F]{128}", value):
            return None
        return f'checksum "{checksum}" is not "<type>:<hex>"'
    if kind == "file":
        return f'checksum "{checksum}" is fetched from a URL at download time, so it pins nothing in the job'
    if kind not in ARTIFACT_CHECKSUM_HEX_DIGITS:
        return f'checksum type "{kind}" — use sha256 or sha512 (md5 and sha1 collisions can be made)'
    digits = ARTIFACT_CHECKSUM_HEX_DIGITS[kind]
    if not re.fullmatch(rf"[0-9a-fA-F]{{{digits}}}", digest):
        return f'checksum "{checksum}" is not a {kind} digest ({digits} hex digits)'
    return None


def artifact_problem(artifact: Mapping[str, Any]) -> str | None:
    """Why an artifact is not pinned, or None. Its checksum is options.checksum, else the source
    URL's `checksum` parameter: Nomad sets each option as a query parameter of the URL, over one of
    the same name (getURL, client/allocrunner/taskrunner/getter/util.go@v1.10.3)."""
    source = artifact.get("source", "?")
    options = _one(artifact, "options") or {}
    if "checksum" in options:
        problem = checksum_problem(options["checksum"], in_url=False)
        where = "options.checksum"
    else:
        query = parse_qs(urlsplit(source).query) if isinstance(source, str) else {}
        if "checksum" not in query:
            return (
                f'artifact {source} has no checksum — pin it with options {{ checksum = "sha256:..." }} or'
                " ?checksum=sha256:... in its URL"
            )
        problem = checksum_problem(query["checksum"][0], in_url=True)  # url.Values.Get: the first
        where = "the URL's checksum parameter"
    return f"artifact {source}: {where}: {problem}" if problem else None


def _artifacts_checksummed(ctx: JobContext) -> str | None:
    task = ctx.task
    assert task is not None
    problems = [problem for problem in map(artifact_problem, task.artifacts) if problem]
    return "; ".join(problems) or None


# -- services --------------------------------------------------------------------------------------------------
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


def _proxies(service: Service) -> list[dict[str, Any]]:
    """The service's Connect sidecar proxy blocks."""
    return [
        proxy for sidecar in _blocks(service.connect or {}, "sidecar_service") for proxy in _blocks(sidecar, "proxy")
    ]


def upstream_name(upstream: Mapping[str, Any]) -> str | None:
    """An upstream's destination_name when it is a literal service name, else None."""
    name = upstream.get("destination_name")
    return name if isinstance(name, str) and name and not _is_expression(name) else None


def _mesh_upstreams_named(ctx: JobContext) -> str | None:
    service = ctx.service
    assert service is not None
    unnamed = [
        json.dumps(upstream, sort_keys=True)
        for proxy in _proxies(service)
        for upstream in _blocks(proxy, "upstreams")
        if upstream_name(upstream) is None
    ]
    if unnamed:
        return (
            f"upstream(s) {', '.join(unnamed)} without a literal destination_name — the program allows mesh calls"
            " (Consul intentions) only to upstreams named by destination_name, so every call through it would be"
            " refused; name the Consul service it calls"
        )
    return None


def _mesh_no_transparent_proxy(ctx: JobContext) -> str | None:
    service = ctx.service
    assert service is not None
    if any("transparent_proxy" in proxy for proxy in _proxies(service)):
        return (
            "transparent_proxy — the program derives Consul intentions only from explicit upstreams"
            " (components/workloads/deploy.py), so under Consul's default-deny every call this service makes would be"
            ' refused; list its upstreams explicitly (proxy { upstreams { destination_name = "..." } }) instead'
        )
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
        "container images carry a full version tag (MAJOR.MINOR.PATCH, optional leading v and -suffix) or a"
        " sha256 digest; another tag only for a repository in UNVERSIONED_IMAGES, never latest",
        Scope.TASK,
        _images_pinned,
    ),
    Rule("resources-set", "every task sets cpu and memory", Scope.TASK, _resources_set),
    Rule("no-raw-exec", "no task uses the raw_exec driver", Scope.TASK, _no_raw_exec),
    Rule(
        "task-sandboxed",
        "a task keeps to its sandbox: no privileged mode, added capabilities, host devices, host pid/ipc/userns/"
        "uts/cgroup namespace, unconfined security_opt, Docker volumes or bind mounts from outside the allocation",
        Scope.TASK,
        _task_sandboxed,
    ),
    Rule(
        "host-network-exception",
        "a task in the host's network namespace (docker network_mode = host; exec/java in a group without"
        " bridge, none or cni networking) states why (meta host_network_reason) and runs as a numeric non-root uid",
        Scope.TASK,
        _host_network_exception,
    ),
    Rule(
        "vault-workload-identity",
        "Vault only through workload identity: no policies, no token read in env or templates",
        Scope.TASK,
        _vault_workload_identity,
    ),
    Rule(
        "vault-paths-scoped",
        "templates read Vault KV where the nomad-workloads policy allows (read kv/data/<namespace>/<job>, list"
        " kv/metadata/<namespace>), at literal paths",
        Scope.TASK,
        _vault_paths_scoped,
    ),
    Rule(
        "artifacts-checksummed",
        "every artifact is pinned with a sha256 or sha512 checksum (options.checksum or ?checksum= in its URL)",
        Scope.TASK,
        _artifacts_checksummed,
    ),
    Rule("service-names-dns", "service names are DNS labels", Scope.SERVICE, _service_name_dns),
    Rule(
        "services-consul-checked",
        "services register in Consul with a health check",
        Scope.SERVICE,
        _service_consul_checked,
    ),
    Rule(
        "mesh-upstreams-named",
        "every Connect upstream names its service (destination_name), from which the program derives intentions",
        Scope.SERVICE,
        _mesh_upstreams_named,
    ),
    Rule(
        "mesh-no-transparent-proxy",
        "no Connect transparent_proxy: upstreams are listed explicitly, as intentions are derived from them",
        Scope.SERVICE,
        _mesh_no_transparent_proxy,
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
    entity alias for a workload is its job id (components/access/grants.py)."""
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
