"""Short job definitions: jobs/<name>.nomadgen.toml, what an application developer writes instead of a
jobspec (seed 001's nomadgen.toml), read with the standard library's tomllib and checked here.

A definition says what the application is (image, command, ports, resources, secrets, upstreams); the
renderer (components/workloads/render.py) adds what the cluster is (datacenters, namespace, ingress,
Consul, Vault) and the site policy (components/workloads/site_policy.py) what the site wants. Every
problem of a file is reported at once, each naming the file, the key, the bad value and what is
allowed; the program stops before any resource (components/workloads/pipeline.py).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components.workloads.job_model import _display
from components.workloads.rules.images import image_problem

TIERS = ("production", "quality", "test")
"""A job's tier; its first letter starts the job's name (`p-es-cerebro`) and so its ingress host."""
_DNS_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?")
# Port names become Nomad port labels and NOMAD_PORT_<name> variables: an identifier.
_PORT_NAME = re.compile(r"[a-z][a-z0-9_]*")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# A secret's path under the job's own KV prefix: relative segments, no "." or "..".
_SECRET_SEGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_SECRET_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HTTP_PATH = re.compile(r"/[\x21-\x7e]*")
# The job id `<letter>-<name>` is a DNS label too (the ingress host), so at most 63 characters.
MAX_NAME = 61

KEYS = {
    "name": "a DNS label of at most 61 characters (the job is <tier letter>-<name>)",
    "tier": f"one of {', '.join(TIERS)}",
    "image": "a container image with a full version tag or a digest",
    "command": "a list of strings: the command, then its arguments",
    "count": "an integer from 1 to 100",
    "http": "the name of the port that serves HTTP (exposed through the ingress)",
    "health": "the HTTP path Consul checks (default /)",
    "ports": "a table: port name = the container's port (1-65535)",
    "resources": "a table with cpu (MHz) and memory (MiB)",
    "env": "a table: variable name = string",
    "secrets": "a table: variable name = { path, key, generate }",
    "upstreams": "a list of { service, port }: mesh services the job calls, each on a local port",
    "mesh": "true: the job's service joins the mesh (a Connect sidecar) so that other jobs can call it",
}
"""A definition's keys and what each allows; any other key is refused."""


@dataclass(frozen=True)
class Secret:
    variable: str
    path: str
    """Relative to the job's KV prefix kv/<namespace>/<job>/."""
    key: str
    generate: bool
    """The program seeds a random value for it (a Pulumi secret), instead of an operator writing it."""


@dataclass(frozen=True)
class Upstream:
    service: str
    port: int
    """The local port the sidecar listens on for it (NOMAD_UPSTREAM_ADDR_<service>)."""


@dataclass(frozen=True)
class Definition:
    file: str
    path: Path
    name: str
    tier: str
    image: str
    command: tuple[str, ...]
    count: int
    ports: dict[str, int]
    """Port name -> the container's port, in the file's order."""
    http: str | None
    health: str
    cpu: int | None
    memory: int | None
    env: dict[str, str]
    secrets: tuple[Secret, ...]
    upstreams: tuple[Upstream, ...]
    mesh: bool
    """Whether its service has a Connect sidecar: asked for, or needed by its upstreams."""

    @property
    def job_id(self) -> str:
        return f"{self.tier[0]}-{self.name}"

    @property
    def service_port(self) -> str | None:
        """The port the job's service registers: the HTTP one, else the first declared."""
        return self.http or next(iter(self.ports), None)


class _Checker:
    """Collects a file's problems, each as `file: key: value — allowed`."""

    def __init__(self, file: str):
        self.file = file
        self.problems: list[str] = []

    def problem(self, key: str, value: Any, allowed: str) -> None:
        self.problems.append(f"{self.file}: {key}: {value!r} — {allowed}")

    def integer(self, key: str, value: Any, low: int, high: int) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self.problem(key, value, f"must be an integer from {low} to {high}")
            return None
        return value

    def table(self, key: str, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.problem(key, value, f"must be {KEYS.get(key, 'a table')}")
            return {}
        return value

    def unknown(self, key: str, table: dict[str, Any], allowed: tuple[str, ...]) -> None:
        for name in table:
            if name not in allowed:
                self.problem(
                    f"{key}.{name}" if key else name, table[name], f"is not a key here; allowed: {', '.join(allowed)}"
                )


def load_definition(path: Path) -> Definition | list[str]:
    """The definition in `path`, or the list of its problems."""
    file = _display(path)
    try:
        raw = tomllib.loads(path.read_text())
    except OSError as error:
        return [f"{file}: cannot read: {error.strerror}"]
    except tomllib.TOMLDecodeError as error:
        return [f"{file}: not valid TOML: {error}"]
    return parse_definition(raw, path)


def parse_definition(raw: dict[str, Any], path: Path) -> Definition | list[str]:
    check = _Checker(_display(path))
    check.unknown("", raw, tuple(KEYS))
    for required in ("name", "tier", "image"):
        if required not in raw:
            check.problem(required, None, f"is required: {KEYS[required]}")

    name = raw.get("name", "")
    if "name" in raw and not (isinstance(name, str) and _DNS_LABEL.fullmatch(name) and len(name) <= MAX_NAME):
        check.problem("name", name, f"must be {KEYS['name']}")
    tier = raw.get("tier", "")
    if "tier" in raw and tier not in TIERS:
        check.problem("tier", tier, f"must be {KEYS['tier']}")
    image = raw.get("image", "")
    if "image" in raw:
        problem = image_problem(image) if isinstance(image, str) else "is not a string"
        if problem:
            check.problem("image", image, f"must be {KEYS['image']} ({problem})")

    command = raw.get("command", [])
    if not (isinstance(command, list) and all(isinstance(part, str) and part for part in command)):
        check.problem("command", command, f"must be {KEYS['command']}")
        command = []
    count = check.integer("count", raw.get("count", 1), 1, 100) or 1

    ports: dict[str, int] = {}
    for port_name, number in check.table("ports", raw.get("ports", {})).items():
        if not _PORT_NAME.fullmatch(port_name):
            check.problem(f"ports.{port_name}", number, "the port's name must be lower case letters, digits and _")
        value = check.integer(f"ports.{port_name}", number, 1, 65535)
        if value is not None:
            ports[port_name] = value
    http = raw.get("http")
    if http is not None and http not in ports:
        declared = ", ".join(ports) or "none"
        check.problem("http", http, f"must name a port declared in [ports] (declared: {declared})")
        http = None
    health = raw.get("health", "/")
    if not (isinstance(health, str) and _HTTP_PATH.fullmatch(health)):
        check.problem("health", health, "must be an absolute HTTP path such as /health")
    elif "health" in raw and http is None:
        check.problem("health", health, "applies only to an HTTP port: set http")

    resources = check.table("resources", raw.get("resources", {}))
    check.unknown("resources", resources, ("cpu", "memory"))
    cpu = check.integer("resources.cpu", resources["cpu"], 10, 1_000_000) if "cpu" in resources else None
    memory = check.integer("resources.memory", resources["memory"], 10, 1_048_576) if "memory" in resources else None

    env: dict[str, str] = {}
    for variable, value in check.table("env", raw.get("env", {})).items():
        if not _ENV_NAME.fullmatch(variable):
            check.problem(f"env.{variable}", value, "the name must be a shell variable name")
        elif not isinstance(value, str):
            check.problem(f"env.{variable}", value, "must be a string")
        else:
            env[variable] = value

    secrets = _secrets(check, raw.get("secrets", {}), env)
    upstreams = _upstreams(check, raw.get("upstreams", []), ports)
    mesh = raw.get("mesh", False)
    if not isinstance(mesh, bool):
        check.problem("mesh", mesh, f"must be {KEYS['mesh']}, or false")
    elif mesh and not ports:
        check.problem("mesh", mesh, "needs a declared port: the mesh reaches the job through its service")
    if check.problems:
        return check.problems
    return Definition(
        file=check.file,
        path=path,
        name=name,
        tier=tier,
        image=image,
        command=tuple(command),
        count=count,
        ports=ports,
        http=http,
        health=health,
        cpu=cpu,
        memory=memory,
        env=env,
        secrets=secrets,
        upstreams=upstreams,
        mesh=bool(mesh) or bool(upstreams),
    )


def _secrets(check: _Checker, value: Any, env: dict[str, str]) -> tuple[Secret, ...]:
    secrets = []
    for variable, spec in check.table("secrets", value).items():
        key = f"secrets.{variable}"
        if not _ENV_NAME.fullmatch(variable):
            check.problem(key, spec, "the name must be a shell variable name")
            continue
        if variable in env:
            check.problem(key, spec, "is also set in [env]: a variable comes from one place")
        spec = check.table(key, spec)
        check.unknown(key, spec, ("path", "key", "generate"))
        path, field, generate = spec.get("path"), spec.get("key"), spec.get("generate", False)
        segments = path.split("/") if isinstance(path, str) else []
        if not segments or not all(_SECRET_SEGMENT.fullmatch(s) for s in segments):
            check.problem(
                f"{key}.path",
                path,
                "must be a path under the job's own prefix kv/<namespace>/<job>/, such as config or db/main"
                " (relative, no '..'): the job's Vault policy grants nothing else",
            )
        if not (isinstance(field, str) and _SECRET_KEY.fullmatch(field)):
            check.problem(f"{key}.key", field, "must be the key inside the secret (letters, digits, _)")
        if not isinstance(generate, bool):
            check.problem(f"{key}.generate", generate, "must be true (the program seeds a random value) or false")
        if isinstance(path, str) and isinstance(field, str) and isinstance(generate, bool):
            secrets.append(Secret(variable, path, field, generate))
    return tuple(secrets)


def _upstreams(check: _Checker, value: Any, ports: dict[str, int]) -> tuple[Upstream, ...]:
    if not isinstance(value, list):
        check.problem("upstreams", value, f"must be {KEYS['upstreams']}")
        return ()
    upstreams = []
    for index, spec in enumerate(value):
        key = f"upstreams[{index}]"
        spec = check.table(key, spec)
        check.unknown(key, spec, ("service", "port"))
        service = spec.get("service")
        if not (isinstance(service, str) and _DNS_LABEL.fullmatch(service)):
            check.problem(f"{key}.service", service, "must be the Consul service's name (a DNS label)")
        port = check.integer(f"{key}.port", spec.get("port"), 1024, 65535)
        if port is not None and port in ports.values():
            check.problem(f"{key}.port", port, "is also a port of the job: pick a free local port")
        if isinstance(service, str) and port is not None:
            upstreams.append(Upstream(service, port))
    if upstreams and not ports:
        check.problem("upstreams", value, "need a declared port: the mesh reaches the job through its service")
    return tuple(upstreams)
