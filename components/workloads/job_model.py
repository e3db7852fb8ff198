"""The Nomad job model and its loading: a job file parsed with python-hcl2, its variables resolved, as
the dataclasses `Job`, `Group`, `Task`, `Service` and `Variable`; the errors a file that cannot be
loaded raises.

Pure Python, no Nomad binary, no cluster and no provider SDK: the program and the policy pack load jobs
with it, and the job rules (components/workloads/job_rules.py) check what it gives.

What the loader resolves is what Nomad's HCL2 parser resolves from variables: `var.x` and
`"...${var.x}..."`. Nomad's runtime interpolation (`${NOMAD_PORT_http}`, `${node.datacenter}`) is
left as written, as Nomad leaves it for the client. Functions and `locals` are not evaluated: a
value built from them stays an expression (`${...}`), and the rules that need a literal say so.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hcl2
import pulumi
from hcl2.utils import SerializationOptions

from components import CHECKOUT
from components.config.settings import JOB_SUFFIX, JOBS_DIR

# Nomad's namespace for a job that names none.
DEFAULT_NAMESPACE = "default"
_PARSE_OPTIONS = SerializationOptions(with_comments=False, preserve_heredocs=False)
_VAR_NAME = r"[A-Za-z_][A-Za-z0-9_-]*"
# `${var.x}` inside a string, not the `$${` escape.
_VAR_INTERPOLATION = re.compile(rf"(?<!\$)\$\{{\s*var\.({_VAR_NAME})\s*\}}")
_VAR_REFERENCE = re.compile(rf"\bvar\.({_VAR_NAME})")
_INTERPOLATION = re.compile(r"(?<!\$)\$\{([^}]*)\}")
_EXPRESSION = re.compile(r"^\$\{(.*)\}$", re.S)


class JobError(pulumi.RunError):
    """A job file that cannot be loaded or does not pass the rules. A RunError, so the Pulumi CLI
    prints the message without a traceback."""


class JobLoadError(JobError):
    """A job file that cannot be parsed or whose variables cannot be resolved."""


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
    seeded_secrets: dict[str, tuple[str, ...]] = field(default_factory=dict, repr=False)
    """Secrets the program seeds in Vault for the job: path under kv/<namespace>/<job>/ -> keys (from a
    short definition's `generate = true`)."""

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


def _is_expression(value: Any) -> bool:
    return isinstance(value, str) and "${" in value


def _proxies(service: Service) -> list[dict[str, Any]]:
    """The service's Connect sidecar proxy blocks."""
    return [
        proxy for sidecar in _blocks(service.connect or {}, "sidecar_service") for proxy in _blocks(sidecar, "proxy")
    ]


def upstream_name(upstream: Mapping[str, Any]) -> str | None:
    """An upstream's destination_name when it is a literal service name, else None."""
    name = upstream.get("destination_name")
    return name if isinstance(name, str) and name and not _is_expression(name) else None


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
