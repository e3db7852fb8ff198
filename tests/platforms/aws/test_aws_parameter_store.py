"""The nodes' secrets in SSM Parameter Store (components/platforms/aws/parameter_store.py) under mocks, and
the stack's key that encrypts them (components/platforms/aws/kms.py)."""

from __future__ import annotations

import json

import pytest
from aws_program import NAME, PARAMETER, SERVERS, STACK, parameter_pattern, preview, short
from mock_aws import AWS_ACCOUNT, AWS_REGION

from conftest import is_secret, unwrap


@pytest.fixture(scope="module")
def monitor():
    return preview()


def test_every_parameter_is_a_secret_secure_string_on_its_nodes_path(monitor):
    parameters = monitor.of_type(PARAMETER)
    names = set()
    for parameter in parameters:
        assert parameter.inputs["type"] == "SecureString", parameter.urn
        assert is_secret(parameter.inputs["value"]), f"{parameter.urn}: value is not a secret input"
        names.add(parameter.inputs["name"])
    server_files = ("consul-secrets", "nomad-secrets", "tls-key", "vault-env")
    expected = {f"/hashistack/{STACK}/{s}/{f}" for s in SERVERS for f in server_files}
    expected |= {f"/hashistack/{STACK}/clients/{f}" for f in ("consul-secrets", "nomad-secrets", "tls-key")}
    assert names == expected


def test_parameters_are_encrypted_with_the_stacks_own_key_whose_policy_reads_only_what_it_must(monitor):
    """Not the account's aws/ssm key, which decrypts for whoever may read a parameter. The key policy:
    the account administers (AWS KMS docs, default key policy, key administrators) but may not use it;
    the deploying role (the session's issuer, not the session: aws iam get_session_context) encrypts
    and decrypts through SSM; each node role decrypts its own parameters only, through SSM, which
    passes the parameter's ARN as encryption context (AWS docs: Parameter Store and AWS KMS,
    kms:EncryptionContext:PARAMETER_ARN)."""
    key = monitor.one("aws:kms/key:Key", f"{NAME}-secrets")
    for parameter in monitor.of_type(PARAMETER):
        assert parameter.inputs["keyId"] == key.outputs["arn"], parameter.urn
    assert key.inputs["enableKeyRotation"] is True
    statements = {st["Sid"]: st for st in json.loads(key.inputs["policy"])["Statement"]}
    admin = statements.pop("AccountAdministers")
    assert admin["Principal"] == {"AWS": f"arn:aws:iam::{AWS_ACCOUNT}:root"}
    assert not {"kms:*", "kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:ReEncrypt*"} & set(admin["Action"])
    assert "kms:ScheduleKeyDeletion" in admin["Action"]
    deployer = statements.pop("DeployerThroughSsm")
    assert deployer["Principal"] == {"AWS": f"arn:aws:iam::{AWS_ACCOUNT}:role/hashistack-deploy"}
    assert deployer["Condition"] == {"StringEquals": {"kms:ViaService": f"ssm.{AWS_REGION}.amazonaws.com"}}
    roles = {short(r): r.outputs["arn"] for r in monitor.of_type("aws:iam/role:Role")}
    assert sorted(statements) == sorted(f"{scope.replace('-', '').capitalize()}ReadsItsOwn" for scope in roles)
    for scope, arn in roles.items():
        statement = statements[f"{scope.replace('-', '').capitalize()}ReadsItsOwn"]
        assert (statement["Principal"], statement["Action"]) == ({"AWS": arn}, "kms:Decrypt"), scope
        assert statement["Condition"] == {
            "StringEquals": {"kms:ViaService": f"ssm.{AWS_REGION}.amazonaws.com"},
            "StringLike": {"kms:EncryptionContext:PARAMETER_ARN": parameter_pattern(scope)},
        }, scope


def test_each_server_key_is_stored_under_that_server_only(monitor):
    for node in [*SERVERS, "clients"]:
        parameter = monitor.one(PARAMETER, f"{NAME}-{node}-tls-key")
        key_name = f"{NAME}-{node}" if node != "clients" else f"{NAME}-client"
        key = monitor.one("tls:index/privateKey:PrivateKey", key_name).outputs["privateKeyPem"]
        assert unwrap(parameter.inputs["value"]) == key, parameter.urn
