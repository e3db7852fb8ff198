"""__main__.py under mocks, once per stack file, as the engine runs it: inventory and security invariants."""

from __future__ import annotations

from collections import Counter

import pulumi
import yaml

from components.config.addressing import planned_servers
from scripts.stack_files import stack_settings

from conftest import (
    PROJECT,
    ROOT,
    STACKS,
    is_secret,
    one_server_secrets,
    plaintext_strings,
    run_program,
    run_pulumi,
    stack_config,
    unwrap,
)

SECRET_EXPORTS = {
    "consulManagementToken",
    "consulAgentToken",
    "consulNomadAgentToken",
    "consulVaultToken",
    "nomadBootstrapToken",
    "operatorKeyPem",
}


def _server_count(program) -> int:
    return int(stack_config(program.stack)[f"{PROJECT['name']}:serverCount"])


# Resource types each stack may register, by prefix: nothing of the other platform's SDK.
PLATFORM_TYPES = {
    "dev": ("hashistack:libvirt:", "libvirt:", "pulumi:providers:libvirt"),
    "aws": ("hashistack:aws:", "aws:"),
}
COMMON_TYPES = (
    "hashistack:secrets:",
    "hashistack:bootstrap:",
    "hashistack:access:",
    "hashistack:workloads:",
    "tls:",
    "random:",
    "pulumi-python:dynamic/hashistack:",
    "consul:",
    "nomad:",
    "vault:",
    "pulumi:providers:consul",
    "pulumi:providers:nomad",
    "pulumi:providers:vault",
)


def test_inventory(program):
    """The shared part exactly; each platform's own inventory is in test_<platform>_platform.py."""
    servers = _server_count(program)
    counts = Counter(r.type for r in program.registrations)
    issued = servers + 2  # each server, the shared client certificate, the operator certificate
    expected = {
        "hashistack:secrets:ClusterSecrets": 1,
        "tls:index/privateKey:PrivateKey": issued + 1,
        "tls:index/selfSignedCert:SelfSignedCert": 1,
        "tls:index/certRequest:CertRequest": issued,
        "tls:index/locallySignedCert:LocallySignedCert": issued,
        "random:index/randomBytes:RandomBytes": 2,
        "random:index/randomUuid:RandomUuid": 5,
        "pulumi-python:dynamic/hashistack:ServerHealth": servers,
        "hashistack:bootstrap:Bootstrap": 1,
        "pulumi-python:dynamic/hashistack:CaFile": 1,
        "pulumi-python:dynamic/hashistack:ConsulPresetTokens": 1,
        "pulumi-python:dynamic/hashistack:NomadAclBootstrap": 1,
        "pulumi-python:dynamic/hashistack:VaultInit": 1,
        "pulumi-python:dynamic/hashistack:VaultUnsealed": servers,
        "hashistack:access:Access": 1,
        "pulumi:providers:consul": 1,
        "pulumi:providers:nomad": 1,
        "pulumi:providers:vault": 1,
        "hashistack:workloads:Workloads": 1,
        "nomad:index/job:Job": len(stack_settings(program.stack).jobs),
        # countdash's one upstream (count-api); the seeded secrets of hello-vault and es-cerebro
        # (generate = true), each with its random value.
        "consul:index/configEntry:ConfigEntry": 1,
        "vault:kv/secretV2:SecretV2": 2,
        "random:index/randomPassword:RandomPassword": 2,
    }
    assert {t: counts[t] for t in expected} == expected
    platform = PLATFORM_TYPES[program.stack]
    assert counts[f"{platform[0]}Network"] == 1 and counts[f"{platform[0]}Nodes"] == 1
    strays = sorted(t for t in counts if not t.startswith(COMMON_TYPES + platform))
    assert not strays, f"resource types foreign to the {program.stack} stack: {strays}"


def test_server_certificates_name_the_server_addresses(program):
    reachable = unwrap(program.stack_outputs["serverAddresses"])
    planned = {s.name: s.private_ip for s in planned_servers(stack_settings(program.stack))}
    assert sorted(reachable) == sorted(planned) and len(planned) == _server_count(program)
    for node, ip in reachable.items():
        request = unwrap(program.one("tls:index/certRequest:CertRequest", f"cluster-{node}").inputs)
        assert set(request["ipAddresses"]) == {"127.0.0.1", planned[node], ip}, request
        assert node in request["dnsNames"]


def test_secret_exports_are_secret_and_public_ones_are_not(program):
    outputs = program.stack_outputs
    assert outputs.keys() >= SECRET_EXPORTS, sorted(outputs)
    for name in SECRET_EXPORTS:
        assert is_secret(outputs[name]), f"stack output {name} is not a secret"
    assert unwrap(outputs["caCertPem"]).startswith("-----BEGIN CERTIFICATE-----")
    assert not is_secret(outputs["caCertPem"]), "the CA certificate is public; operators read it without --show-secrets"


def test_no_secret_value_appears_in_plain_text_anywhere(program):
    secrets = program.secret_values()
    # Every private key, gossip key and token, at least; an empty set would make this test vacuous.
    assert len(secrets) >= 2 * (_server_count(program) + 3) + 2 + 5
    places = [(r.urn, r.inputs) for r in program.registrations] + [("stack outputs", program.stack_outputs)]
    for where, wire in places:
        for text in plaintext_strings(wire):
            leaked = [s for s in secrets if s in text]
            assert not leaked, f"{where}: secret value in plain text: {leaked[0][:40]}..."


def test_leak_check_finds_an_unsecreted_token():
    """The check above must be able to fail: unsecret a token on purpose and watch it being caught."""

    def leaky():
        secrets = one_server_secrets("leak")
        pulumi.export("oops", pulumi.Output.unsecret(secrets.nomad_bootstrap_token).apply(lambda t: f"token={t}"))

    monitor = run_pulumi(leaky)
    secrets = monitor.secret_values()
    assert any(s in text for text in plaintext_strings(monitor.stack_outputs) for s in secrets)


def test_two_runs_register_identical_inputs(program):
    """Rendering is deterministic, so a second `pulumi up` finds nothing to change or regenerate."""
    again = run_program(program.stack, preview=True)
    assert {r.urn: r.inputs for r in again.registrations} == {r.urn: r.inputs for r in program.registrations}


def test_stack_files_match_the_schema_types():
    """The engine refuses a stack value whose type differs from the schema; catch it here first."""
    python_types = {"string": str, "integer": int, "boolean": bool, "array": list}
    prefix = f"{PROJECT['name']}:"
    for stack in STACKS:
        values = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]
        for key, value in values.items():
            if not key.startswith(prefix):
                continue
            spec = PROJECT["config"][key[len(prefix) :]]
            assert isinstance(value, python_types[spec["type"]]), f"Pulumi.{stack}.yaml {key}: {value!r}"
    for key, spec in PROJECT["config"].items():
        assert spec.get("description"), f"Pulumi.yaml config {key} has no description"
        assert isinstance(spec["default"], python_types[spec["type"]]), f"Pulumi.yaml config {key} default"


def _reachable(program, start: str) -> set[str]:
    """Every URN `start` depends on, through dependencies and provider references, transitively."""
    # A provider reference is `<provider urn>::<provider id>`.
    edges = {
        r.urn: set(r.dependencies) | ({r.provider.rsplit("::", 1)[0]} if r.provider else set())
        for r in program.registrations
    }
    seen, todo = set(), [start]
    while todo:
        for dependency in edges.get(todo.pop(), ()):
            if dependency not in seen:
                seen.add(dependency)
                todo.append(dependency)
    return seen


def test_everything_configured_through_the_apis_depends_on_the_servers(program):
    """`pulumi destroy` deletes dependents first: ACL objects, policies and mounts go before machines."""
    machines = {
        r.urn
        for r in program.registrations
        if r.type in ("libvirt:index/domain:Domain", "aws:ec2/instance:Instance") and "server-" in r.name
    }
    assert len(machines) == _server_count(program)
    configured = [r for r in program.registrations if r.type.split(":")[0] in ("consul", "nomad", "vault")]
    assert len(configured) >= 20
    for registration in configured:
        missing = machines - _reachable(program, registration.urn)
        assert not missing, f"{registration.urn} does not depend on {sorted(missing)}"
