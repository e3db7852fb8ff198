"""The Bootstrap component under mocks (edges, secretness, inputs) and its dynamic providers' diffs."""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_cluster import FakeCluster
from fake_https import instant_poller, operator_tls
from pulumi.output import Unknown

from components.bootstrap.ca_file import _CaFileProvider
from components.bootstrap.cluster import POLICIES
from components.bootstrap.steps import _ConsulPresetTokensProvider, _NomadAclBootstrapProvider, _VaultUnsealedProvider
from components.dynamic.agent_api import vault_init
from components.dynamic.http_api import HttpsApi
from components.rollout.client_node import _ClientNodeProvider
from components.rollout.server_health import _ServerHealthProvider
from components.rollout.vault_init import _VaultInitProvider

from conftest import is_secret, parse_hcl, run_program, unwrap

CA_CERT = "tls:index/selfSignedCert:SelfSignedCert"
DYNAMIC = "pulumi-python:dynamic/hashistack:"


@pytest.fixture(scope="module", params=["dev", "aws"])
def program(request):
    return run_program(request.param, preview=True)


def _one(program, kind: str):
    (registration,) = program.of_type(DYNAMIC + kind)
    return registration


def _gates(program) -> set[str]:
    gates = {g.urn for g in program.of_type(DYNAMIC + "ServerHealth")}
    assert len(gates) == 3
    return gates


def _uuid(program, suffix: str) -> str:
    return next(
        r for r in program.of_type("random:index/randomUuid:RandomUuid") if r.name == f"cluster-{suffix}"
    ).outputs["result"]


def test_consul_tokens_are_the_preset_ones_and_secret(program):
    step = _one(program, "ConsulPresetTokens")
    assert _gates(program) <= step.dependencies, "runs after every server passed its gate"
    for key in ("management_token", "client_key_pem"):
        assert is_secret(step.inputs[key]), f"{step.urn}: {key} in plain text"
    wire_tokens = step.inputs["tokens"]
    assert len(wire_tokens) == 3
    for token in wire_tokens:
        assert is_secret(token["secret_id"]), f"{step.urn}: {token['description']}'s SecretID in plain text"
    tokens = {t["description"]: t for t in unwrap(step.inputs["tokens"])}
    assert tokens["agent"]["secret_id"] == _uuid(program, "consul-agent")
    assert tokens["nomad-agent"]["secret_id"] == _uuid(program, "consul-nomad-agent")
    assert tokens["vault"]["secret_id"] == _uuid(program, "consul-vault")
    assert unwrap(step.inputs["management_token"]) == _uuid(program, "consul-management")
    assert set(unwrap(step.inputs["policies"])) == {"agent", "nomad-agent", "vault-service"}
    assert unwrap(step.inputs["address"]).endswith(":8501")


def test_nomad_is_bootstrapped_with_the_preset_secret(program):
    step = _one(program, "NomadAclBootstrap")
    assert _gates(program) <= step.dependencies
    assert is_secret(step.inputs["bootstrap_secret"])
    assert unwrap(step.inputs["bootstrap_secret"]) == _uuid(program, "nomad-bootstrap")
    assert unwrap(step.inputs["address"]).startswith("https://") and unwrap(step.inputs["address"]).endswith(":4646")


def test_vault_is_initialised_once_then_every_server_unsealed(program):
    init = _one(program, "VaultInit")
    server_0 = next(
        r for r in program.registrations if r.name == "cluster-server-0" and r.type.endswith(("Domain", "Instance"))
    )
    assert server_0.urn in init.dependencies, "initialised on server-0, as soon as it exists"
    assert _gates(program).isdisjoint(init.dependencies), "before the gates, which need its keys"
    assert init.inputs["auto_unseal"] is (program.stack == "aws"), "KMS on AWS, Shamir on libvirt"
    # server-0's own Vault, where the operator's machine reaches it, verified against the cluster CA.
    server_0_address = unwrap(program.stack_outputs["serverAddresses"])["server-0"]
    assert unwrap(init.inputs["address"]) == f"https://{server_0_address}:8200"
    assert unwrap(init.inputs["ca_pem"]) == unwrap(program.stack_outputs["caCertPem"])
    assert (init.inputs["shares"], init.inputs["threshold"]) == (5, 3)
    assert {"root_token", "unseal_keys", "recovery_keys"} <= init.secret_outputs
    unsealed = program.of_type(DYNAMIC + "VaultUnsealed")
    assert len(unsealed) == 3
    gates = {unwrap(g.inputs["machine_id"]): g.urn for g in program.of_type(DYNAMIC + "ServerHealth")}
    for server in unsealed:
        assert init.urn in server.dependencies, f"{server.urn}: unseals before init"
        assert gates[unwrap(server.inputs["machine"])] in server.dependencies, server.urn
        assert is_secret(server.inputs["unseal_keys"]), server.urn


def test_bootstrap_outputs_are_secret(program):
    outputs = program.stack_outputs
    for name in ("vaultRootToken", "vaultUnsealKeys", "vaultRecoveryKeys"):
        assert is_secret(outputs[name]), name
    assert unwrap(outputs["vaultRootToken"]).startswith("hvs.")


def test_ca_file_lives_in_the_project_per_stack(program):
    ca_file = _one(program, "CaFile")
    assert unwrap(ca_file.inputs["path"]).endswith(f"/.hashistack/{program.stack}/ca.pem")
    assert not is_secret(ca_file.inputs["content"]) and "BEGIN CERTIFICATE" in ca_file.inputs["content"]


def test_consul_policies_are_least_privilege():
    agent = parse_hcl((POLICIES / "consul" / "agent.hcl").read_text())
    assert agent["node_prefix"] == [{"": {"policy": "write"}}] and agent["service_prefix"] == [{"": {"policy": "read"}}]
    nomad = parse_hcl((POLICIES / "consul" / "nomad-agent.hcl").read_text())
    assert "acl" not in nomad, "workload identity: Nomad creates no Consul tokens"
    assert "mesh" not in nomad, "gateways only, and servers only: a client-held token must not have it"
    assert nomad["service_prefix"] == [{"": {"policy": "write"}}]
    assert nomad["node_prefix"] == [{"": {"policy": "write"}}], "Nomad's documented minimum"
    assert nomad["agent_prefix"] == [{"": {"policy": "read"}}]
    assert set(nomad) == {"agent_prefix", "node_prefix", "service_prefix"}
    vault = parse_hcl((POLICIES / "consul" / "vault-service.hcl").read_text())
    assert vault["service"] == [{"vault": {"policy": "write"}}] and "service_prefix" not in vault
    for document in (agent, nomad, vault):
        assert "key_prefix" not in document and "operator" not in document


PROVIDERS = {
    "ConsulPresetTokens": _ConsulPresetTokensProvider,
    "NomadAclBootstrap": _NomadAclBootstrapProvider,
    "VaultInit": _VaultInitProvider,
    "VaultUnsealed": _VaultUnsealedProvider,
    "CaFile": _CaFileProvider,
    "ServerHealth": _ServerHealthProvider,
    "ClientNode": _ClientNodeProvider,
}


def _preview_inputs(program, kind: str) -> tuple[dict, dict]:
    """A resource's inputs as the engine hands them to check/diff in a preview of a new machine:
    every value that comes from another resource's output unknown."""
    registration = program.of_type(DYNAMIC + kind)[0]  # the first server's, where there is one per server
    olds = {k: v for k, v in unwrap(registration.inputs).items() if k != "__provider"}
    news = {k: (Unknown() if isinstance(v, str | list | dict) and k not in ("path",) else v) for k, v in olds.items()}
    return olds, news


@pytest.mark.parametrize("kind", sorted(PROVIDERS))
def test_every_provider_s_check_and_diff_accept_unknown_inputs_and_act_on_nothing(program, kind, tmp_path, monkeypatch):
    """During a preview an input not known yet is pulumi.output.Unknown (truthy, equal only to itself)."""
    monkeypatch.chdir(tmp_path)
    calls: list[str] = []
    # On the class itself: every provider module imports it by name, and each would need its own patch.
    monkeypatch.setattr(HttpsApi, "__init__", lambda *a, **k: calls.append("HttpsApi") or pytest.fail("I/O in diff"))
    if kind == "ClientNode" and program.stack == "aws":  # libvirt's clients only; AWS's are an autoscaling group
        assert not program.of_type(DYNAMIC + kind)
        return
    provider = PROVIDERS[kind]()
    olds, news = _preview_inputs(program, kind)
    checked = provider.check(olds, news)
    assert not checked.failures, checked.failures
    # VaultInit never runs twice (a replaced server rejoins with the same keys); the rest show the change.
    assert provider.diff("id", olds, news).changes is (kind != "VaultInit"), kind
    assert calls == [] and list(tmp_path.iterdir()) == [], f"{kind}: check or diff acted on the outside world"


def test_ca_file_check_is_pure_and_create_update_delete_manage_the_file(tmp_path):
    path = tmp_path / ".hashistack" / "dev" / "ca.pem"
    props = {"path": str(path), "content": "-----BEGIN CERTIFICATE-----\nX\n-----END CERTIFICATE-----\n"}
    provider = _CaFileProvider()
    assert provider.check({}, props).inputs == props and not path.exists(), "check writes nothing"
    assert provider.check({}, {**props, "content": 42}).failures[0].property == "content"
    assert provider.diff("id", props, props).changes is True, "a fresh checkout lacks the file: update writes it"
    provider.create(props)
    assert path.read_text() == props["content"]
    assert provider.diff("id", props, props).changes is False
    rotated = {**props, "content": "new"}
    assert provider.diff("id", props, rotated).changes and provider.diff("id", props, rotated).replaces == []
    provider.update("id", props, rotated)
    assert path.read_text() == "new"
    moved = provider.diff("id", props, {**props, "path": str(tmp_path / "other.pem")})
    assert moved.replaces == ["path"]
    provider.delete("id", props)
    assert not path.exists()


def test_the_program_writes_the_ca_file_before_the_vault_provider_reads_it(program):
    """Also on a preview of an existing stack from a fresh checkout, where nothing would create it."""
    (ca_file,) = program.of_type(DYNAMIC + "CaFile")
    path = Path(unwrap(ca_file.inputs["path"]))
    assert path.read_text() == program.one(CA_CERT, "cluster-ca").outputs["certPem"]
    (vault,) = program.of_type("pulumi:providers:vault")
    assert vault.inputs["caCertFile"] == str(path)


def test_a_sealed_server_shows_up_as_an_update(pki, fake_api):
    cluster = FakeCluster(fake_api)
    cluster.boot("server-0")
    address = f"https://127.0.0.1:{cluster.ports[2]}"
    tls = operator_tls(pki, with_client_cert=False)
    poller = instant_poller()
    keys = vault_init(HttpsApi(address, tls), False, 5, 3, poller).unseal_keys
    props = {"address": address, "ca_pem": tls.ca_pem, "unseal_keys": list(keys), "machine": "m-1"}
    provider = _VaultUnsealedProvider(timeout=2, interval=0.02)
    assert provider.diff("m-1", props, props).changes is True, "sealed (e.g. after a reboot): unseal on this up"
    assert provider.update("m-1", props, props).outs["status"].startswith("unsealed")
    assert provider.diff("m-1", props, props).changes is False, "unsealed: nothing to do"
    replaced = provider.diff("m-1", props, {**props, "machine": "m-2"})
    assert replaced.changes and replaced.replaces == ["machine"]
    assert provider.create({**props, "machine": "m-2"}).id == "m-2"


def test_an_unreachable_server_changes_nothing_in_the_plan(pki):
    props = {"address": "https://127.0.0.1:1", "ca_pem": operator_tls(pki).ca_pem, "unseal_keys": [], "machine": "m"}
    assert _VaultUnsealedProvider().diff("m", props, props).changes is False
