"""The Bootstrap component under mocks (edges, secretness, inputs) and its dynamic providers' diffs."""

from __future__ import annotations

import pytest
from fake_https import operator_tls
from test_bootstrap_steps import FakeVault

from components.bootstrap import POLICIES, _CaFileProvider, _VaultUnsealedProvider

from conftest import is_secret, parse_hcl, run_program, unwrap

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
    assert {"root_token", "unseal_keys", "recovery_keys"} <= init.secret_outputs
    unsealed = program.of_type(DYNAMIC + "VaultUnsealed")
    assert len(unsealed) == 3
    gates = {g.id: g.urn for g in program.of_type(DYNAMIC + "ServerHealth")}
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
    assert nomad["service_prefix"] == [{"": {"policy": "write"}}]
    vault = parse_hcl((POLICIES / "consul" / "vault-service.hcl").read_text())
    assert vault["service"] == [{"vault": {"policy": "write"}}] and "service_prefix" not in vault
    for document in (agent, nomad, vault):
        assert "key_prefix" not in document and "operator" not in document


def test_ca_file_is_written_even_on_preview(tmp_path):
    path = tmp_path / ".hashistack" / "dev" / "ca.pem"
    props = {"path": str(path), "content": "-----BEGIN CERTIFICATE-----\nX\n-----END CERTIFICATE-----\n"}
    _CaFileProvider().check({}, props)
    assert path.read_text() == props["content"]
    _CaFileProvider().delete("id", props)
    assert not path.exists()


def test_a_sealed_server_shows_up_as_an_update(pki, fake_api):
    api = fake_api(client_cert=False)
    vault = FakeVault(api, initialized=True)
    props = {
        "address": api.url,
        "ca_pem": operator_tls(pki).ca_pem,
        "unseal_keys": ["k0", "k1", "k2"],
        "machine": "m-1",
    }
    provider = _VaultUnsealedProvider()
    assert provider.diff("m-1", props, props).changes is True, "sealed (e.g. after a reboot): unseal on this up"
    provider.update("m-1", props, props)
    assert vault.sealed is False
    assert provider.diff("m-1", props, props).changes is False, "unsealed: nothing to do"
    replaced = provider.diff("m-1", props, {**props, "machine": "m-2"})
    assert replaced.changes and replaced.replaces == ["machine"]


def test_an_unreachable_server_changes_nothing_in_the_plan(pki):
    props = {"address": "https://127.0.0.1:1", "ca_pem": operator_tls(pki).ca_pem, "unseal_keys": [], "machine": "m"}
    assert _VaultUnsealedProvider().diff("m", props, props).changes is False
