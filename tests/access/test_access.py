"""Providers and Access under mocks: built from the bootstrap, secrets kept secret, policies that say what they should.

A stand-in for components.bootstrap.cluster.Bootstrap (same attributes) makes each token from its own
RandomUuid, so the dependency edges from the providers to "the bootstrap" can be asserted.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pulumi
import pulumi_random as random
import pytest

from components.access.grants import (
    APPS_NAMESPACE,
    CONSUL_ANONYMOUS_TOKEN_ID,
    NOMAD_JWKS_URL,
    NOMAD_NAMESPACES,
    NOMAD_POLICIES,
    VAULT_AUDIT_FILE,
    Access,
    AccessArgs,
    render_env,
    workloads_policy,
)
from components.access.providers import NOMAD_IGNORED_ENV_VARS, cluster_providers
from components.bootstrap.cluster import POLICIES, policy_text
from scripts.stack_files import stack_settings

from conftest import (
    ROOT,
    is_secret,
    one_server_secrets,
    parse_hcl,
    plaintext_strings,
    run_program,
    run_pulumi,
    shellcheck_path,
    unwrap,
)

pytestmark = pytest.mark.filterwarnings("ignore:Use the AclToken ephemeral resource:UserWarning")

ADDRESS = "10.42.0.10"
UUID = "random:index/randomUuid:RandomUuid"
CA_CERT = "tls:index/selfSignedCert:SelfSignedCert"
PROVIDERS = {"consul": "pulumi:providers:consul", "nomad": "pulumi:providers:nomad", "vault": "pulumi:providers:vault"}
# Which stand-in bootstrap resource (bootstrap-<x>) makes each provider's token valid.
TOKEN_SOURCES = {"consul": "bootstrap-consul", "nomad": "bootstrap-nomad", "vault": "bootstrap-vault"}
EXPECTED_INVENTORY = {
    "hashistack:access:Access": 1,
    "consul:index/aclPolicy:AclPolicy": 3,
    "consul:index/aclTokenPolicyAttachment:AclTokenPolicyAttachment": 1,
    "consul:index/aclAuthMethod:AclAuthMethod": 1,
    "consul:index/aclBindingRule:AclBindingRule": 2,
    "consul:index/aclRole:AclRole": 2,
    "nomad:index/namespace:Namespace": 1,
    "nomad:index/aclPolicy:AclPolicy": 4,
    "nomad:index/aclRole:AclRole": 4,
    "nomad:index/aclToken:AclToken": 3,
    "vault:index/audit:Audit": 1,
    "vault:index/mount:Mount": 1,
    "vault:jwt/authBackend:AuthBackend": 1,
    "vault:jwt/authBackendRole:AuthBackendRole": 1,
    "vault:index/policy:Policy": 2,
    "vault:index/token:Token": 1,
    "vault:index/raftAutopilot:RaftAutopilot": 1,
    **dict.fromkeys(PROVIDERS.values(), 1),
}
SECRET_EXPORTS = ("vaultOperatorToken", "nomadDeployToken", "nomadReadonlyToken", "nomadDeveloperToken", "env")


def stand_in_bootstrap():
    """Bootstrap's public shape; call inside run_pulumi."""
    secrets = one_server_secrets(ip=ADDRESS)
    made = {name: random.RandomUuid(name) for name in (*TOKEN_SOURCES.values(), "bootstrap-ca-file")}
    return SimpleNamespace(
        consul_address=pulumi.Output.from_input(f"{ADDRESS}:8501"),
        nomad_address=pulumi.Output.from_input(f"https://{ADDRESS}:4646"),
        vault_address=pulumi.Output.from_input(f"https://{ADDRESS}:8200"),
        ca_pem=secrets.ca_cert_pem,
        operator_cert_pem=secrets.operator.cert_pem,
        operator_key_pem=secrets.operator.private_key_pem,
        consul_token=pulumi.Output.secret(made["bootstrap-consul"].result),
        nomad_token=pulumi.Output.secret(made["bootstrap-nomad"].result),
        vault_token=pulumi.Output.secret(made["bootstrap-vault"].result),
        ca_file_path=made["bootstrap-ca-file"].id.apply(lambda _: "/work/.hashistack/dev/ca.pem"),
    )


def access_program():
    settings = stack_settings("dev")
    bootstrap = stand_in_bootstrap()
    providers = cluster_providers("cluster", bootstrap, settings)
    access = Access("cluster", AccessArgs(settings, bootstrap), providers.options())
    pulumi.export("vaultOperatorToken", access.vault_operator_token)
    pulumi.export("nomadDeployToken", access.nomad_deploy_token)
    pulumi.export("nomadReadonlyToken", access.nomad_readonly_token)
    pulumi.export("nomadDeveloperToken", access.nomad_developer_token)
    pulumi.export("vaultJwtAccessor", access.vault_jwt_accessor)
    pulumi.export("appsNamespace", access.apps_namespace)
    pulumi.export("env", access.env)


@pytest.fixture(scope="module")
def program():
    return run_pulumi(access_program)


def _cluster_resources(program) -> list:
    found = [r for r in program.registrations if r.type.split(":")[0] in PROVIDERS]
    assert found, "no Consul, Nomad or Vault resource registered"
    return found


def _one(program, typ: str):
    (registration,) = program.of_type(typ)
    return registration


def _token_value(program, source: str) -> str:
    return program.one(UUID, source).outputs["result"]


def labelled(document: dict, block: str) -> dict:
    """{label: body} of a labelled block type (`namespace "apps" {...}`)."""
    return {label: body for entry in document.get(block, []) for label, body in entry.items()}


def _policy_file(*parts: str) -> dict:
    return parse_hcl(policy_text(*parts))


# -- inventory and wiring -----------------------------------------------------------------------------
def test_inventory(program):
    counts = Counter(r.type for r in program.registrations)
    assert {t: counts[t] for t in EXPECTED_INVENTORY} == EXPECTED_INVENTORY
    (component,) = program.of_type("hashistack:access:Access")
    for registration in _cluster_resources(program):
        if not registration.type.startswith("pulumi:providers:"):
            assert registration.parent == component.urn, f"{registration.urn}: not a child of Access"


def test_each_provider_is_built_from_the_bootstrap(program):
    for package, typ in PROVIDERS.items():
        provider = _one(program, typ)
        source = program.one(UUID, TOKEN_SOURCES[package])
        assert source.urn in provider.dependencies, f"{provider.urn}: its token does not come from the bootstrap"
        token = provider.inputs["secretId" if package == "nomad" else "token"]
        assert is_secret(token), f"{provider.urn}: token in plain text"
        assert unwrap(token) == source.outputs["result"], provider.urn
    consul = _one(program, PROVIDERS["consul"]).inputs
    assert (consul["address"], consul["scheme"], consul["datacenter"]) == (f"{ADDRESS}:8501", "https", "dc1")
    assert consul["caPem"].startswith("-----BEGIN CERTIFICATE-----") and consul["certPem"].startswith("-----BEGIN")
    assert is_secret(consul["keyPem"])
    vault = _one(program, PROVIDERS["vault"])
    assert vault.inputs["caCertFile"] == "/work/.hashistack/dev/ca.pem"
    assert program.one(UUID, "bootstrap-ca-file").urn in vault.dependencies
    assert vault.inputs["address"] == f"https://{ADDRESS}:8200"
    assert vault.inputs["skipTlsVerify"] == "false" and vault.inputs["skipChildToken"] == "false"


def test_every_cluster_resource_goes_through_its_provider_and_so_after_the_bootstrap(program):
    """The destroy-order guarantee: ACL objects, policies and mounts go before the machines."""
    providers = {package: _one(program, typ) for package, typ in PROVIDERS.items()}
    resources = [r for r in _cluster_resources(program) if not r.type.startswith("pulumi:providers:")]
    assert {r.type.split(":")[0] for r in resources} == set(PROVIDERS)
    for registration in resources:
        provider = providers[registration.type.split(":")[0]]
        assert registration.provider.startswith(f"{provider.urn}::"), f"{registration.urn}: default provider"
        token_source = program.one(UUID, TOKEN_SOURCES[registration.type.split(":")[0]])
        assert token_source.urn in provider.dependencies, registration.urn


def test_the_shell_cannot_redirect_the_providers(monkeypatch):
    baseline = run_pulumi(access_program)
    nomad = _one(baseline, PROVIDERS["nomad"]).inputs
    assert json.loads(nomad["ignoreEnvVars"]) == dict.fromkeys(NOMAD_IGNORED_ENV_VARS, True)
    assert set(NOMAD_IGNORED_ENV_VARS) == {"NOMAD_NAMESPACE", "NOMAD_REGION"}
    assert (nomad["address"], nomad["region"], nomad["skipVerify"]) == (f"https://{ADDRESS}:4646", "global", "false")
    assert nomad["caPem"].startswith("-----BEGIN CERTIFICATE-----")

    # The SDKs fill unset arguments from these; explicit ones must win.
    hostile = {
        "VAULT_SKIP_VERIFY": "true",
        "TERRAFORM_VAULT_MAX_TTL": "999999",
        "VAULT_ADDR": "https://evil.example:8200",
        "VAULT_TOKEN": "evil",
        "NOMAD_ADDR": "https://evil.example:4646",
        "NOMAD_TOKEN": "evil",
        "NOMAD_REGION": "elsewhere",
        "CONSUL_HTTP_ADDR": "evil.example:8501",
        "CONSUL_HTTP_TOKEN": "evil",
    }
    for variable, value in hostile.items():
        monkeypatch.setenv(variable, value)
    shell = run_pulumi(access_program)
    for typ in PROVIDERS.values():
        assert _one(shell, typ).inputs == _one(baseline, typ).inputs, typ


# -- secrets ------------------------------------------------------------------------------------------
def test_tokens_keys_and_the_env_block_are_secret(program):
    outputs = program.stack_outputs
    for name in SECRET_EXPORTS:
        assert is_secret(outputs[name]), f"stack output {name} is not a secret"
    assert unwrap(outputs["vaultOperatorToken"]) == _one(program, "vault:index/token:Token").outputs["clientToken"]
    tokens = {r.name: r.outputs["secretId"] for r in program.of_type("nomad:index/aclToken:AclToken")}
    assert unwrap(outputs["nomadDeployToken"]) == tokens["cluster-nomad-deploy-token"]
    assert unwrap(outputs["nomadReadonlyToken"]) == tokens["cluster-nomad-readonly-token"]
    assert unwrap(outputs["nomadDeveloperToken"]) == tokens["cluster-nomad-developer-token"]
    assert not is_secret(outputs["vaultJwtAccessor"]), "an accessor is no secret; operators need it for policies"
    assert unwrap(outputs["appsNamespace"]) == APPS_NAMESPACE


def test_no_secret_value_appears_in_plain_text_anywhere(program):
    secrets = program.secret_values() | {_token_value(program, source) for source in TOKEN_SOURCES.values()}
    expected = {
        _one(program, "vault:index/token:Token").outputs["clientToken"],
        *(r.outputs["secretId"] for r in program.of_type("nomad:index/aclToken:AclToken")),
        program.one("tls:index/privateKey:PrivateKey", "cluster-operator").outputs["privateKeyPem"],
    }
    assert len(expected) == 5 and expected <= secrets, "the leak check would miss the tokens this module makes"
    places = [(r.urn, r.inputs) for r in program.registrations]
    places += [(urn, outputs) for urn, outputs in program.registered_outputs.items()]
    assert len(places) > len(EXPECTED_INVENTORY)
    for where, wire in places:
        for text in plaintext_strings(wire):
            leaked = [s for s in secrets if s in text]
            assert not leaked, f"{where}: secret value in plain text: {leaked[0][:12]}..."


# -- Consul ---------------------------------------------------------------------------------------------
def test_anonymous_consul_token_reads_the_catalog_and_nothing_more(program):
    (attachment,) = program.of_type("consul:index/aclTokenPolicyAttachment:AclTokenPolicyAttachment")
    assert attachment.inputs["tokenId"] == CONSUL_ANONYMOUS_TOKEN_ID
    policy = program.one("consul:index/aclPolicy:AclPolicy", "cluster-consul-dns-and-catalog-read")
    assert attachment.inputs["policy"] == policy.inputs["name"] == "dns-and-catalog-read"
    rules = parse_hcl(policy.inputs["rules"])
    assert rules == _policy_file("consul", "dns-and-catalog-read")
    assert sorted(rules) == ["node_prefix", "service_prefix"]
    for block in rules:
        assert labelled(rules, block) == {"": {"policy": "read"}}, block


def test_consul_trusts_nomad_workload_identities(program):
    method = _one(program, "consul:index/aclAuthMethod:AclAuthMethod").inputs
    assert (method["name"], method["type"], method["tokenLocality"]) == ("nomad-workloads", "jwt", "local")
    config = json.loads(method["configJson"])
    ca = program.one(CA_CERT, "cluster-ca").outputs["certPem"]
    assert config["JWKSURL"] == NOMAD_JWKS_URL == "https://127.0.0.1:4646/.well-known/jwks.json"
    assert config["JWKSCACert"] == ca
    assert config["BoundAudiences"] == ["consul.io"] and config["JWTSupportedAlgs"] == ["RS256"]
    assert sorted(config["ClaimMappings"]) == ["nomad_job_id", "nomad_namespace", "nomad_service", "nomad_task"]

    rules = {r.name.rsplit("-", 1)[1]: r.inputs for r in program.of_type("consul:index/aclBindingRule:AclBindingRule")}
    assert sorted(rules) == ["services", "tasks"]
    for rule in rules.values():
        assert rule["authMethod"] == "nomad-workloads"
    assert (rules["services"]["bindType"], rules["services"]["bindName"]) == ("service", "${value.nomad_service}")
    assert rules["services"]["selector"] == '"nomad_service" in value'
    assert (rules["tasks"]["bindType"], rules["tasks"]["bindName"]) == ("role", "nomad-${value.nomad_namespace}-tasks")
    assert rules["tasks"]["selector"] == '"nomad_service" not in value'

    tasks_policy = program.one("consul:index/aclPolicy:AclPolicy", "cluster-consul-nomad-tasks")
    roles = {r.inputs["name"]: r.inputs for r in program.of_type("consul:index/aclRole:AclRole")}
    # Every namespace the task rule can name has its role: default (built in) and the apps namespace.
    assert sorted(roles) == sorted(f"nomad-{ns}-tasks" for ns in NOMAD_NAMESPACES)
    assert sorted(roles) == ["nomad-apps-tasks", "nomad-default-tasks"]
    platform_policy = program.one("consul:index/aclPolicy:AclPolicy", "cluster-consul-nomad-platform-tasks")
    # The platform's jobs (default namespace) may read the agents (Prometheus); the apps may not.
    assert roles["nomad-default-tasks"]["policies"] == [tasks_policy.id, platform_policy.id]
    assert roles["nomad-apps-tasks"]["policies"] == [tasks_policy.id]
    assert parse_hcl(platform_policy.inputs["rules"]) == {"agent_prefix": [{"": {"policy": "read"}}]}
    rules_hcl = parse_hcl(tasks_policy.inputs["rules"])
    assert sorted(rules_hcl) == ["key_prefix", "node_prefix", "service_prefix"]
    for block in rules_hcl:
        assert labelled(rules_hcl, block) == {"": {"policy": "read"}}, f"nomad-tasks: {block} must be read-only"


def test_audiences_match_what_the_nomad_servers_sign():
    agent = (ROOT / "cloudinit" / "nomad.hcl.j2").read_text()
    assert agent.count('aud = ["consul.io"]') == 2, "service_identity and task_identity"
    assert agent.count('aud = ["vault.io"]') == 1, "vault.default_identity"


# -- Nomad -------------------------------------------------------------------------------------------------
def test_nomad_policies_roles_and_tokens(program):
    (namespace,) = program.of_type("nomad:index/namespace:Namespace")
    assert namespace.inputs["name"] == APPS_NAMESPACE and namespace.inputs["description"]
    policies = {r.inputs["name"]: r for r in program.of_type("nomad:index/aclPolicy:AclPolicy")}
    assert sorted(policies) == sorted(NOMAD_POLICIES) == ["deployer", "developer", "operator", "readonly"]
    for name, policy in policies.items():
        assert parse_hcl(policy.inputs["rulesHcl"]) == _policy_file("nomad", name), name
    roles = {r.inputs["name"]: r for r in program.of_type("nomad:index/aclRole:AclRole")}
    assert sorted(roles) == sorted(policies)
    for name, role in roles.items():
        assert role.inputs["policies"] == [{"name": name}], name
        assert policies[name].urn in role.dependencies, name
    tokens = {r.name: r for r in program.of_type("nomad:index/aclToken:AclToken")}
    expected = {
        "cluster-nomad-deploy-token": "deployer",
        "cluster-nomad-readonly-token": "readonly",
        "cluster-nomad-developer-token": "developer",
    }
    assert sorted(tokens) == sorted(expected)
    for token_name, role_name in expected.items():
        token = tokens[token_name]
        assert token.inputs["type"] == "client", token.urn
        assert token.inputs["roles"] == [{"id": roles[role_name].id}], token.urn
        assert not token.inputs.get("policies"), f"{token.urn}: rights come through its role only"


def test_no_nomad_policy_for_anonymous(program):
    names = [r.inputs["name"] for r in program.of_type("nomad:index/aclPolicy:AclPolicy")]
    assert names and "anonymous" not in names
    files = sorted(p.stem for p in (POLICIES / "nomad").glob("*.hcl"))
    assert files == sorted(NOMAD_POLICIES), "every Nomad policy file is loaded, and none is for anonymous"


def _grants(body: dict, capability: str) -> bool:
    write = body.get("policy") == "write"
    return capability in body.get("capabilities", []) or (write and capability != "alloc-node-exec")


def test_developer_reads_and_enters_apps_only_and_never_submits():
    developer = _policy_file("nomad", "developer")
    assert sorted(developer) == ["namespace"], "no node, agent, operator or plugin rights"
    apps = labelled(developer, "namespace")
    assert sorted(apps) == [APPS_NAMESPACE] and "policy" not in apps[APPS_NAMESPACE]
    assert set(apps[APPS_NAMESPACE]["capabilities"]) == {"list-jobs", "read-job", "read-logs", "read-fs", "alloc-exec"}


def test_deployer_submits_jobs_in_apps_only():
    deployer = _policy_file("nomad", "deployer")
    assert sorted(deployer) == ["namespace"], "no node, agent, operator or plugin rights"
    namespaces = labelled(deployer, "namespace")
    assert sorted(namespaces) == [APPS_NAMESPACE]
    apps = namespaces[APPS_NAMESPACE]
    assert "policy" not in apps and "variables" not in apps
    assert {"submit-job", "read-job", "list-jobs", "dispatch-job", "read-logs"} <= set(apps["capabilities"])
    assert not {"alloc-exec", "alloc-node-exec", "read-fs"} & set(apps["capabilities"])
    # Across the non-operator policies, only the deployer in "apps" may submit a job.
    submitters = [
        (name, label)
        for name in NOMAD_POLICIES
        if name != "operator"
        for label, body in labelled(_policy_file("nomad", name), "namespace").items()
        if _grants(body, "submit-job")
    ]
    assert submitters == [("deployer", APPS_NAMESPACE)]


def test_readonly_writes_nothing():
    readonly = _policy_file("nomad", "readonly")
    assert sorted(readonly) == ["agent", "namespace", "node", "operator", "plugin"]
    namespaces = labelled(readonly, "namespace")
    assert namespaces == {"*": {"policy": "read"}}
    for block in ("node", "agent", "operator", "plugin"):
        (body,) = readonly[block]
        assert body == {"policy": "read"}, block


def test_operator_runs_the_cluster():
    operator = _policy_file("nomad", "operator")
    everything = labelled(operator, "namespace")["*"]
    assert everything["policy"] == "write" and "alloc-node-exec" in everything["capabilities"]
    for block in ("node", "agent", "operator", "plugin"):
        (body,) = operator[block]
        assert body == {"policy": "write"}, block


# -- Vault ---------------------------------------------------------------------------------------------------
def test_vault_jwt_backend_and_role(program):
    backend = _one(program, "vault:jwt/authBackend:AuthBackend")
    ca = program.one(CA_CERT, "cluster-ca").outputs["certPem"]
    assert (backend.inputs["path"], backend.inputs["type"], backend.inputs["defaultRole"]) == (
        "jwt-nomad",
        "jwt",
        "nomad-workloads",
    )
    assert backend.inputs["jwksUrl"] == NOMAD_JWKS_URL and backend.inputs["jwksCaPem"] == ca
    assert backend.inputs["jwtSupportedAlgs"] == ["RS256", "EdDSA"]
    role = _one(program, "vault:jwt/authBackendRole:AuthBackendRole").inputs
    assert role["backend"] == "jwt-nomad" and role["roleName"] == "nomad-workloads" and role["roleType"] == "jwt"
    assert role["boundAudiences"] == ["vault.io"]
    assert role["userClaim"] == "/nomad_job_id" and role["userClaimJsonPointer"] is True
    assert role["claimMappings"] == {n: n for n in ("nomad_namespace", "nomad_job_id", "nomad_task")}
    assert (role["tokenType"], role["tokenPeriod"], role["tokenExplicitMaxTtl"]) == ("service", 1800, 0)
    assert role["tokenPolicies"] == ["nomad-workloads"]


def test_workloads_policy_is_scoped_through_the_backend_accessor(program):
    accessor = _one(program, "vault:jwt/authBackend:AuthBackend").outputs["accessor"]
    assert accessor.startswith("auth_jwt_") and len(accessor) > len("auth_jwt_")
    policy = program.one("vault:index/policy:Policy", "cluster-vault-nomad-workloads").inputs["policy"]
    assert policy == workloads_policy(accessor)
    assert "$" not in policy, "a placeholder was left unfilled"
    namespace = f"{{{{identity.entity.aliases.{accessor}.metadata.nomad_namespace}}}}"
    job = f"{{{{identity.entity.aliases.{accessor}.metadata.nomad_job_id}}}}"
    paths = labelled(parse_hcl(policy), "path")
    assert paths == {
        f"kv/data/{namespace}/{job}/*": {"capabilities": ["read"]},
        f"kv/data/{namespace}/{job}": {"capabilities": ["read"]},
        f"kv/metadata/{namespace}/*": {"capabilities": ["list"]},
    }


def test_kv_audit_admin_and_operator_token(program):
    mount = _one(program, "vault:index/mount:Mount").inputs
    assert (mount["path"], mount["type"], mount["options"]) == ("kv", "kv", {"version": "2"})
    audit = _one(program, "vault:index/audit:Audit")
    assert (audit.inputs["type"], audit.inputs["options"]) == ("file", {"file_path": VAULT_AUDIT_FILE})
    assert (ROOT / "cloudinit" / "vault-audit.logrotate").read_text().count(f"{VAULT_AUDIT_FILE} {{") == 1
    others = [r for r in program.registrations if r.type.startswith("vault:") and r.urn != audit.urn]
    assert len(others) == 7  # mount, jwt backend and role, two policies, token, raft autopilot
    for registration in others:
        assert audit.urn in registration.dependencies, f"{registration.urn}: created before auditing starts"

    admin = program.one("vault:index/policy:Policy", "cluster-vault-admin").inputs
    assert admin["name"] == "admin"
    paths = labelled(parse_hcl(admin["policy"]), "path")
    assert paths and paths == labelled(_policy_file("vault", "admin"), "path")
    root_only = ("sys/raw", "sys/generate-root", "sys/rekey", "sys/rotate", "sys/seal", "sys/step-down")
    for path in paths:
        assert path not in ("*", "sys/*", "sys/audit/*"), path
        assert not path.startswith(root_only), f"admin reaches the root-only {path}"
    assert "sys/policies/acl/*" in paths and "kv/*" in paths and "auth/*" in paths

    token = _one(program, "vault:index/token:Token").inputs
    assert token["policies"] == ["admin"]
    assert token["noParent"] is True and token["renewable"] is True and token["period"] == "720h"


# -- policy files ---------------------------------------------------------------------------------------------
def test_every_policy_file_parses_as_hcl():
    files = sorted(POLICIES.rglob("*.hcl"))
    assert len(files) >= 7
    for path in files:
        assert parse_hcl(path.read_text()), f"{path.relative_to(ROOT)} is empty"
    assert parse_hcl(workloads_policy("auth_jwt_0123abcd"))


# -- the env block ----------------------------------------------------------------------------------------------
NASTY = "t0k'en $(touch pwned) `id` \"; echo"
ENV_VALUES = {
    "consul_address": f"{ADDRESS}:8501",
    "nomad_address": f"https://{ADDRESS}:4646",
    "vault_address": f"https://{ADDRESS}:8200",
    "ca_pem": "-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n",
    "cert_pem": "-----BEGIN CERTIFICATE-----\nOP\n-----END CERTIFICATE-----\n",
    "key_pem": "-----BEGIN EC PRIVATE KEY-----\nK'EY\n-----END EC PRIVATE KEY-----\n",
    "consul_token": NASTY + "consul",
    "nomad_token": NASTY + "nomad",
    "vault_token": NASTY + "vault",
}
ENV_VARIABLES = (
    "CONSUL_HTTP_ADDR",
    "CONSUL_CACERT",
    "CONSUL_CLIENT_CERT",
    "CONSUL_CLIENT_KEY",
    "CONSUL_HTTP_TOKEN",
    "NOMAD_ADDR",
    "NOMAD_CACERT",
    "NOMAD_TOKEN",
    "VAULT_ADDR",
    "VAULT_CACERT",
    "VAULT_TOKEN",
)


def _eval_env(block: str, home: Path) -> dict[str, str]:
    script = 'eval "$1"; for v in "${@:2}"; do printf "%s=%s\\0" "$v" "${!v}"; done'
    result = subprocess.run(
        ["bash", "-c", script, "bash", block, *ENV_VARIABLES],
        cwd=home,
        env={"HOME": str(home), "PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(item.split("=", 1) for item in result.stdout.split("\0") if item)


def test_env_block_writes_private_files_and_exports_every_variable(tmp_path):
    block = render_env("dev", **ENV_VALUES)
    exported = _eval_env(block, tmp_path)
    directory = tmp_path / ".hashistack" / "dev"
    assert exported == {
        "CONSUL_HTTP_ADDR": f"https://{ADDRESS}:8501",
        "CONSUL_CACERT": str(directory / "ca.pem"),
        "CONSUL_CLIENT_CERT": str(directory / "operator.pem"),
        "CONSUL_CLIENT_KEY": str(directory / "operator-key.pem"),
        "CONSUL_HTTP_TOKEN": ENV_VALUES["consul_token"],
        "NOMAD_ADDR": f"https://{ADDRESS}:4646",
        "NOMAD_CACERT": str(directory / "ca.pem"),
        "NOMAD_TOKEN": ENV_VALUES["nomad_token"],
        "VAULT_ADDR": f"https://{ADDRESS}:8200",
        "VAULT_CACERT": str(directory / "ca.pem"),
        "VAULT_TOKEN": ENV_VALUES["vault_token"],
    }
    files = {"ca.pem": "ca_pem", "operator.pem": "cert_pem", "operator-key.pem": "key_pem"}
    for file, key in files.items():
        assert (directory / file).read_text() == ENV_VALUES[key], file
        assert stat.S_IMODE((directory / file).stat().st_mode) == 0o600, file
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert not (tmp_path / "pwned").exists(), "a token's text was executed"


def test_env_block_passes_shellcheck(program, tmp_path):
    script = tmp_path / "env.sh"
    script.write_text(unwrap(program.stack_outputs["env"]))
    result = subprocess.run(
        [shellcheck_path(), "--shell=bash", "--severity=style", str(script)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout


def test_env_output_uses_the_operator_facing_tokens(program, tmp_path):
    exported = _eval_env(unwrap(program.stack_outputs["env"]), tmp_path)
    assert exported["VAULT_TOKEN"] == _one(program, "vault:index/token:Token").outputs["clientToken"]
    assert exported["NOMAD_TOKEN"] == _token_value(program, "bootstrap-nomad")
    assert exported["CONSUL_HTTP_TOKEN"] == _token_value(program, "bootstrap-consul")
    assert exported["VAULT_TOKEN"] != _token_value(program, "bootstrap-vault"), "the root token, day to day"
    ca = program.one(CA_CERT, "cluster-ca").outputs["certPem"]
    assert Path(exported["VAULT_CACERT"]).read_text() == ca


AUTOPILOT = "vault:index/raftAutopilot:RaftAutopilot"


@pytest.mark.parametrize("servers", [3, 5])
def test_vault_cleans_up_dead_voters_but_never_below_the_planned_servers(servers):
    """min_quorum = serverCount: raft-autopilot prunes only while voters-1 >= min_quorum, so a server
    replaced under its own node_id keeps its seat and only servers beyond the plan go."""
    later = run_program("dev", {"serverCount": servers}, preview=True, later=True)
    (autopilot,) = later.of_type(AUTOPILOT)
    inputs = autopilot.inputs
    assert inputs["cleanupDeadServers"] is True
    assert inputs["minQuorum"] == servers
    assert inputs["deadServerLastContactThreshold"] == "24h0m0s"
    provider = next(r for r in later.registrations if r.type == PROVIDERS["vault"])
    assert autopilot.provider.startswith(provider.urn)


def test_a_single_server_has_no_autopilot_cleanup():
    """Vault refuses cleanup with min_quorum below 3."""
    single = run_program("dev", {"serverCount": 1, "acceptNoFaultTolerance": True}, preview=True)
    assert single.of_type(AUTOPILOT) == []
