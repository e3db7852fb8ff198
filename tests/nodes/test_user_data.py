"""User-data as Outputs under mocks: secret exactly when it carries secrets, KMS key id from an Output."""

from __future__ import annotations

import pulumi
import pytest
import yaml
from test_node_config import AWS, LIBVIRT, SERVER

from components.nodes.node_config import NodeSpec, Role
from components.nodes.user_data import material_for, secret_parameters, user_data

from conftest import appears, is_secret, one_server_secrets, plaintext_strings, run_pulumi, unwrap


def _program():
    secrets = one_server_secrets()
    server = material_for(secrets, Role.SERVER, secrets.servers["server-0"])
    kms_key = pulumi.Output.from_input("arn:aws:kms:eu-central-1:123456789012:key/from-an-output")
    pulumi.export("inline", user_data(LIBVIRT, SERVER, server))
    pulumi.export("ssm", user_data(AWS, SERVER, server, kms_key_id=kms_key))
    pulumi.export("parameters", secret_parameters(AWS, SERVER, server))
    client = material_for(secrets, Role.CLIENT, secrets.client)
    pulumi.export("clientParameters", secret_parameters(AWS, NodeSpec(Role.CLIENT, None, None), client))


@pytest.fixture(scope="module")
def monitor():
    return run_pulumi(_program)


def test_inline_user_data_is_secret(monitor):
    assert is_secret(monitor.stack_outputs["inline"])


def test_ssm_user_data_is_public_and_holds_no_secret(monitor):
    ssm = monitor.stack_outputs["ssm"]
    assert not is_secret(ssm)
    text = unwrap(ssm)
    secrets = monitor.secret_values()
    assert len(secrets) > 10
    leaked = [s for s in secrets if appears(s, text)]
    assert not leaked, leaked[0]


def test_kms_key_id_output_reaches_the_seal_stanza(monitor):
    document = yaml.safe_load(unwrap(monitor.stack_outputs["ssm"]))
    vault = next(f["content"] for f in document["write_files"] if f["path"] == "/etc/vault.d/vault.hcl")
    assert 'kms_key_id = "arn:aws:kms:eu-central-1:123456789012:key/from-an-output"' in vault


def test_every_secret_parameter_is_secret(monitor):
    parameters = monitor.stack_outputs["parameters"]
    assert sorted(parameters) == [
        f"/hashistack/aws/server-0/{n}" for n in ("consul-secrets", "nomad-secrets", "tls-key", "vault-env")
    ]
    for name, value in parameters.items():
        assert is_secret(value), name
    assert "PRIVATE KEY" in unwrap(parameters["/hashistack/aws/server-0/tls-key"])


def test_clients_get_no_server_secrets(monitor):
    parameters = unwrap(monitor.stack_outputs["clientParameters"])
    assert sorted(parameters) == [
        f"/hashistack/aws/clients/{n}" for n in ("consul-secrets", "nomad-secrets", "tls-key")
    ]
    management = next(
        r for r in monitor.of_type("random:index/randomUuid:RandomUuid") if r.name == "cluster-consul-management"
    )
    nomad_gossip = next(
        r for r in monitor.of_type("random:index/randomBytes:RandomBytes") if r.name == "cluster-nomad-gossip"
    )
    everything = "".join(parameters.values())
    assert management.outputs["result"] not in everything
    assert nomad_gossip.outputs["base64"] not in everything
    assert not list(plaintext_strings(monitor.stack_outputs["clientParameters"]))
