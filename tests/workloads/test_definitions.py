"""Short job definitions (components/workloads/definitions.py): every problem a definition can have, as
the developer reads it (`<file>: <key>: <value> — <what is allowed>`, all of a file's problems at once),
and what a good one becomes. Rendering, the site policy and the pipeline: test_job_pipeline.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from components.workloads.definitions import MAX_NAME, Definition, Secret, Upstream, load_definition

GOOD = 'name = "shop"\ntier = "quality"\nimage = "nginx:1.27.0"\nhttp = "web"\nports = { web = 8080 }\n'
NO_HTTP = 'name = "shop"\ntier = "quality"\nimage = "nginx:1.27.0"\n'
NAME = "a DNS label of at most 61 characters (the job is <tier letter>-<name>)"
COMMAND = "must be a list of strings: the command, then its arguments"
SECRET_PATH = (
    "must be a path under the job's own prefix kv/<namespace>/<job>/, such as config or db/main (relative, no"
    " '..'): the job's Vault policy grants nothing else"
)
SECRET_KEY = "must be the key inside the secret (letters, digits, _)"
NEEDS_PORT = "the mesh reaches the job through its service"


def load(tmp_path: Path, text: str) -> Definition | list[str]:
    path = tmp_path / "shop.nomadgen.toml"
    path.write_text(text)
    return load_definition(path)


PROBLEMS = {
    "nothing": ("", [
        f"name: None — is required: {NAME}",
        "tier: None — is required: one of production, quality, test",
        "image: None — is required: a container image with a full version tag or a digest",
    ]),
    "an unknown key": (GOOD + 'colour = "blue"\n', [
        "colour: 'blue' — is not a key here; allowed: name, tier, image, command, count, http, health, ports,"
        " resources, env, secrets, upstreams, mesh",
    ]),
    "a name one character too long": (GOOD.replace('"shop"', f'"{"a" * (MAX_NAME + 1)}"'), [
        f"name: '{'a' * (MAX_NAME + 1)}' — must be {NAME}",
    ]),
    "a name that is no string": (GOOD.replace('"shop"', "5"), [f"name: 5 — must be {NAME}"]),
    "a name that is no DNS label": (GOOD.replace('"shop"', '"-shop"'), [f"name: '-shop' — must be {NAME}"]),
    "an unknown tier": (GOOD.replace('"quality"', '"staging"'), [
        "tier: 'staging' — must be one of production, quality, test",
    ]),
    "an image that is no string": (GOOD.replace('"nginx:1.27.0"', "5"), [
        "image: 5 — must be a container image with a full version tag or a digest (is not a string)",
    ]),
    "an image by a moving tag": (GOOD.replace("nginx:1.27.0", "nginx:latest"), [
        "image: 'nginx:latest' — must be a container image with a full version tag or a digest"
        ' (image "nginx:latest" — pin an exact version tag)',
    ]),
    "a command as one string": (GOOD + 'command = "nginx"\n', [f"command: 'nginx' — {COMMAND}"]),
    "a command with an empty word": (GOOD + 'command = ["a", ""]\n', [f"command: ['a', ''] — {COMMAND}"]),
    "a command with a number": (GOOD + 'command = ["a", 1]\n', [f"command: ['a', 1] — {COMMAND}"]),
    "a count above 100": (GOOD + "count = 101\n", ["count: 101 — must be an integer from 1 to 100"]),
    "a count of 0": (GOOD + "count = 0\n", ["count: 0 — must be an integer from 1 to 100"]),
    "a count that is a boolean": (GOOD + "count = true\n", ["count: True — must be an integer from 1 to 100"]),
    "a count that is a string": (GOOD + 'count = "3"\n', ["count: '3' — must be an integer from 1 to 100"]),
    "a port name in capitals": (NO_HTTP + "ports = { Web = 8080 }\n", [
        "ports.Web: 8080 — the port's name must be lower case letters, digits and _",
    ]),
    "port 0": (NO_HTTP + "ports = { web = 0 }\n", ["ports.web: 0 — must be an integer from 1 to 65535"]),
    "port 65536": (NO_HTTP + "ports = { web = 65536 }\n", ["ports.web: 65536 — must be an integer from 1 to 65535"]),
    "ports that are no table": (NO_HTTP + 'ports = "x"\n', [
        "ports: 'x' — must be a table: port name = the container's port (1-65535)",
    ]),
    "http without any port": (NO_HTTP + 'http = "web"\n', [
        "http: 'web' — must name a port declared in [ports] (declared: none)",
    ]),
    "http naming another port": (GOOD.replace('http = "web"', 'http = "api"'), [
        "http: 'api' — must name a port declared in [ports] (declared: web)",
    ]),
    "a health path that is no string": (GOOD + "health = 5\n", [
        "health: 5 — must be an absolute HTTP path such as /health",
    ]),
    "a relative health path": (GOOD + 'health = "status"\n', [
        "health: 'status' — must be an absolute HTTP path such as /health",
    ]),
    "a health path without http": (NO_HTTP + 'health = "/h"\nports = { web = 1 }\n', [
        "health: '/h' — applies only to an HTTP port: set http",
    ]),
    "an unknown resource": (GOOD + "[resources]\ncpu = 100\ndisk = 5\n", [
        "resources.disk: 5 — is not a key here; allowed: cpu, memory",
    ]),
    "resources above their maximum": (GOOD + "[resources]\ncpu = 1000001\nmemory = 1048577\n", [
        "resources.cpu: 1000001 — must be an integer from 10 to 1000000",
        "resources.memory: 1048577 — must be an integer from 10 to 1048576",
    ]),
    "resources below their minimum": (GOOD + "[resources]\ncpu = 9\nmemory = 9\n", [
        "resources.cpu: 9 — must be an integer from 10 to 1000000",
        "resources.memory: 9 — must be an integer from 10 to 1048576",
    ]),
    "resources that are no table": (GOOD + "resources = 3\n", [
        "resources: 3 — must be a table with cpu (MHz) and memory (MiB)",
    ]),
    "an env name that is no variable": (GOOD + '[env]\n1X = "a"\n', [
        "env.1X: 'a' — the name must be a shell variable name",
    ]),
    "an env value that is no string": (GOOD + "[env]\nX = 5\n", ["env.X: 5 — must be a string"]),
    "env that is no table": (GOOD + 'env = "a"\n', ["env: 'a' — must be a table: variable name = string"]),
    "a secret's name that is no variable": (GOOD + '[secrets.1X]\npath = "config"\nkey = "t"\n', [
        "secrets.1X: {'path': 'config', 'key': 't'} — the name must be a shell variable name",
    ]),
    "a secret also in env": (GOOD + '[env]\nTOKEN = "x"\n[secrets.TOKEN]\npath = "config"\nkey = "t"\n', [
        "secrets.TOKEN: {'path': 'config', 'key': 't'} — is also set in [env]: a variable comes from one place",
    ]),
    "a secret that is no table": (GOOD + '[secrets]\nTOKEN = "x"\n', [
        "secrets.TOKEN: 'x' — must be a table",
        f"secrets.TOKEN.path: None — {SECRET_PATH}",
        f"secrets.TOKEN.key: None — {SECRET_KEY}",
    ]),
    "secrets that are no table": (GOOD + 'secrets = "x"\n', [
        "secrets: 'x' — must be a table: variable name = { path, key, generate }",
    ]),
    "an unknown key of a secret": (GOOD + '[secrets.TOKEN]\npath = "config"\nkey = "t"\nmount = "x"\n', [
        "secrets.TOKEN.mount: 'x' — is not a key here; allowed: path, key, generate",
    ]),
    "a secret without path or key": (GOOD + "[secrets.TOKEN]\n", [
        f"secrets.TOKEN.path: None — {SECRET_PATH}",
        f"secrets.TOKEN.key: None — {SECRET_KEY}",
    ]),
    "a secret's path out of its prefix": (GOOD + '[secrets.TOKEN]\npath = "a/../b"\nkey = "t"\n', [
        f"secrets.TOKEN.path: 'a/../b' — {SECRET_PATH}",
    ]),
    "an absolute secret path": (GOOD + '[secrets.TOKEN]\npath = "/kv/data/x"\nkey = "t"\n', [
        f"secrets.TOKEN.path: '/kv/data/x' — {SECRET_PATH}",
    ]),
    "a secret's key with a dash": (GOOD + '[secrets.TOKEN]\npath = "config"\nkey = "a-b"\n', [
        f"secrets.TOKEN.key: 'a-b' — {SECRET_KEY}",
    ]),
    "a secret's generate that is no boolean": (
        GOOD + '[secrets.TOKEN]\npath = "config"\nkey = "t"\ngenerate = "yes"\n',
        ["secrets.TOKEN.generate: 'yes' — must be true (the program seeds a random value) or false"],
    ),
    "upstreams as a table": (GOOD + 'upstreams = { service = "db" }\n', [
        "upstreams: {'service': 'db'} — must be a list of { service, port }: mesh services the job calls, each"
        " on a local port",
    ]),
    "an upstream that is no table": (GOOD + 'upstreams = ["db"]\n', [
        "upstreams[0]: 'db' — must be a table",
        "upstreams[0].service: None — must be the Consul service's name (a DNS label)",
        "upstreams[0].port: None — must be an integer from 1024 to 65535",
    ]),
    "an upstream's service that is no DNS label": (GOOD + '[[upstreams]]\nservice = "DB_1"\nport = 9000\n', [
        "upstreams[0].service: 'DB_1' — must be the Consul service's name (a DNS label)",
    ]),
    "an upstream on a privileged port": (GOOD + '[[upstreams]]\nservice = "db"\nport = 1023\n', [
        "upstreams[0].port: 1023 — must be an integer from 1024 to 65535",
    ]),
    "an upstream on the job's own port": (GOOD + '[[upstreams]]\nservice = "db"\nport = 8080\n', [
        "upstreams[0].port: 8080 — is also a port of the job: pick a free local port",
    ]),
    "an unknown key of an upstream": (GOOD + '[[upstreams]]\nservice = "db"\nport = 9000\nmode = "x"\n', [
        "upstreams[0].mode: 'x' — is not a key here; allowed: service, port",
    ]),
    "upstreams without a port of the job": (NO_HTTP + '[[upstreams]]\nservice = "db"\nport = 9000\n', [
        f"upstreams: [{{'service': 'db', 'port': 9000}}] — need a declared port: {NEEDS_PORT}",
    ]),
    "http naming none of several ports, with a health path": (
        NO_HTTP + 'http = "api"\nhealth = "/h"\nports = { web = 8080, admin = 9000 }\n', [
            "http: 'api' — must name a port declared in [ports] (declared: web, admin)",
            "health: '/h' — applies only to an HTTP port: set http",
        ]),
    "two secrets, the first badly named": (
        GOOD + '[secrets.1X]\npath = "config"\nkey = "t"\n[secrets.TOKEN]\npath = "/x"\nkey = "t"\n', [
            "secrets.1X: {'path': 'config', 'key': 't'} — the name must be a shell variable name",
            f"secrets.TOKEN.path: '/x' — {SECRET_PATH}",
        ]),
    "mesh that is no boolean": (GOOD + 'mesh = "yes"\n', [
        "mesh: 'yes' — must be true: the job's service joins the mesh (a Connect sidecar) so that other jobs"
        " can call it, or false",
    ]),
    "mesh without a port": (NO_HTTP + "mesh = true\n", [f"mesh: True — needs a declared port: {NEEDS_PORT}"]),
}  # fmt: skip


@pytest.mark.parametrize(("text", "expected"), PROBLEMS.values(), ids=PROBLEMS.keys())
def test_each_problem_names_the_file_the_key_the_value_and_what_is_allowed(tmp_path, text, expected):
    found = load(tmp_path, text)
    file = str(tmp_path / "shop.nomadgen.toml")
    assert found == [f"{file}: {problem}" for problem in expected]


def test_a_file_that_cannot_be_read_or_parsed_says_so(tmp_path):
    missing = tmp_path / "gone.nomadgen.toml"
    assert load_definition(missing) == [f"{missing}: cannot read: No such file or directory"]
    (bad,) = load(tmp_path, "name = [")
    assert bad.startswith(f"{tmp_path / 'shop.nomadgen.toml'}: not valid TOML: ")


def test_a_good_definition_is_what_it_says_with_the_defaults_filled_in(tmp_path):
    found = load(tmp_path, GOOD)
    assert found == Definition(
        file=str(tmp_path / "shop.nomadgen.toml"), path=tmp_path / "shop.nomadgen.toml", name="shop", tier="quality",
        image="nginx:1.27.0", command=(), count=1, ports={"web": 8080}, http="web", health="/", cpu=None,
        memory=None, env={}, secrets=(), upstreams=(), mesh=False,
    )  # fmt: skip
    assert (found.job_id, found.service_port) == ("q-shop", "web")


def test_every_key_of_a_full_definition_lands_where_the_renderer_reads_it(tmp_path):
    text = (
        NO_HTTP.replace('"shop"', f'"{"a" * MAX_NAME}"').replace('"quality"', '"production"')
        + """
command = ["/bin/shop", "--port", "8080"]
count = 100
health = "/healthz"
http = "api"
ports = { metrics = 9102, api = 8080 }
[resources]
cpu = 10
memory = 1048576
[env]
MODE = "live"
[secrets.DB_PASSWORD]
path = "db/main"
key = "password"
generate = true
[secrets.API_KEY]
path = "config"
key = "api_key"
[[upstreams]]
service = "orders"
port = 65535
[[upstreams]]
service = "stock"
port = 1024
"""
    )
    found = load(tmp_path, text)
    assert not isinstance(found, list), found
    assert (found.name, found.tier, found.job_id) == ("a" * MAX_NAME, "production", f"p-{'a' * MAX_NAME}")
    assert (found.command, found.count, found.health, found.http) == (("/bin/shop", "--port", "8080"), 100, "/healthz",
                                                                     "api")  # fmt: skip
    assert list(found.ports.items()) == [("metrics", 9102), ("api", 8080)], "in the file's order"
    assert found.service_port == "api", "the HTTP port, not the first declared"
    assert (found.cpu, found.memory, found.env) == (10, 1048576, {"MODE": "live"})
    assert found.secrets == (Secret("DB_PASSWORD", "db/main", "password", True), Secret("API_KEY", "config", "api_key",
                                                                                         False))  # fmt: skip
    assert found.upstreams == (Upstream("orders", 65535), Upstream("stock", 1024))
    assert found.mesh is True, "upstreams need the job's own sidecar"


def test_mesh_is_asked_for_or_needed_and_the_first_port_serves_without_http(tmp_path):
    plain = load(tmp_path, NO_HTTP + "ports = { grpc = 9000, admin = 9001 }\n")
    assert (plain.mesh, plain.http, plain.service_port) == (False, None, "grpc")
    asked = load(tmp_path, NO_HTTP + "ports = { grpc = 9000 }\nmesh = true\n")
    assert asked.mesh is True
    assert load(tmp_path, NO_HTTP + "mesh = false\n").service_port is None, "no port, no service port"
