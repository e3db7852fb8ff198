"""The nodes' instance roles and policies (components/platforms/aws/iam.py) under mocks: what each node may
read and do, and that it boots only once its policy and secrets exist."""

from __future__ import annotations

import fnmatch
import json

import pytest
from aws_program import GROUP, INSTANCE, NAME, PARAMETER, SERVERS, TEMPLATE, parameter_pattern, preview, short


@pytest.fixture(scope="module")
def monitor():
    return preview()


def _policies(monitor) -> dict[str, dict]:
    """Role scope (server-N, clients) -> its inline policy document."""
    roles = {r.id: short(r) for r in monitor.of_type("aws:iam/role:Role")}
    policies = {}
    for policy in monitor.of_type("aws:iam/rolePolicy:RolePolicy"):
        policies[roles[policy.inputs["role"]]] = json.loads(policy.inputs["policy"])
    assert sorted(policies) == sorted([*SERVERS, "clients"])
    return policies


def test_policies_grant_exactly_the_listed_actions_on_this_stacks_resources(monitor):
    key_arn = monitor.one("aws:kms/key:Key", f"{NAME}-vault-seal").outputs["arn"]
    for scope, document in _policies(monitor).items():
        granted = {}
        for statement in document["Statement"]:
            assert statement.keys() <= {"Sid", "Effect", "Action", "Resource"}, f"{scope}: {statement}"
            assert statement["Effect"] == "Allow", f"{scope}: {statement}"
            granted[tuple(sorted(statement["Action"]))] = statement["Resource"]
        expected = {
            ("ec2:DescribeInstances",): "*",  # no resource-level permissions exist for it
            ("ssm:GetParameters",): parameter_pattern(scope),
        }
        if scope != "clients":
            expected[("kms:Decrypt", "kms:DescribeKey", "kms:Encrypt")] = key_arn
        assert granted == expected, f"{scope}: {json.dumps(document, indent=1)}"


def test_each_parameter_is_readable_by_its_own_role_only(monitor):
    patterns = {scope: parameter_pattern(scope) for scope in _policies(monitor)}
    parameters = monitor.of_type(PARAMETER)
    assert parameters
    for parameter in parameters:
        arn = parameter.outputs["arn"]
        readers = {scope for scope, pattern in patterns.items() if fnmatch.fnmatchcase(arn, pattern)}
        owner = parameter.inputs["name"].split("/")[3]
        assert readers == {owner}, f"{parameter.urn}: readable by {readers}"


def test_roles_are_assumable_by_ec2_only(monitor):
    roles = monitor.of_type("aws:iam/role:Role")
    assert roles
    for role in roles:
        (statement,) = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
        assert statement["Principal"] == {"Service": "ec2.amazonaws.com"}, role.urn
        assert statement["Action"] == "sts:AssumeRole", role.urn


def test_each_server_runs_with_its_own_instance_profile(monitor):
    profiles = {r.outputs["name"]: r for r in monitor.of_type("aws:iam/instanceProfile:InstanceProfile")}
    roles = {r.outputs["name"]: short(r) for r in monitor.of_type("aws:iam/role:Role")}
    for instance in monitor.of_type(INSTANCE):
        profile = profiles[instance.inputs["iamInstanceProfile"]]
        assert roles[profile.inputs["role"]] == short(instance), instance.urn
    (template,) = monitor.of_type(TEMPLATE)
    arn = template.inputs["iamInstanceProfile"]["arn"]
    (profile,) = [p for p in profiles.values() if p.outputs["arn"] == arn]
    assert roles[profile.inputs["role"]] == "clients", template.urn


def test_nodes_boot_only_once_their_policy_and_secrets_exist(monitor):
    """Nothing in the user-data names the parameters, so the dependency must be explicit."""
    by_scope: dict[str, set[str]] = {}
    for parameter in monitor.of_type(PARAMETER):  # /hashistack/<stack>/<scope>/<file>
        by_scope.setdefault(parameter.inputs["name"].split("/")[3], set()).add(parameter.urn)
    for policy in monitor.of_type("aws:iam/rolePolicy:RolePolicy"):
        by_scope.setdefault(short(policy), set()).add(policy.urn)
    assert sorted(by_scope) == sorted([*SERVERS, "clients"]), sorted(by_scope)
    for instance in monitor.of_type(INSTANCE):
        missing = by_scope[short(instance)] - instance.dependencies
        assert not missing, f"{instance.urn} does not wait for {sorted(missing)}"
    (group,) = monitor.of_type(GROUP)
    assert not by_scope["clients"] - group.dependencies, group.urn
