"""Access: who may do what in Consul, Nomad and Vault once the cluster is bootstrapped.

Workloads authenticate with Nomad's workload identities (DESIGN decision 5): Consul's JWT auth
method and Vault's JWT auth backend trust the JWTs Nomad signs. People and CI get policies, roles
and tokens. The Consul, Nomad and Vault providers come in through `opts` (components/access/providers.py);
every child inherits them, and through them depends on the bootstrap, so `pulumi destroy` removes
all of this before the machines.

Rules live in policies/ as HCL files; this module loads them, never writes HCL itself.
"""

from __future__ import annotations

import json
import shlex
import string
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_consul as consul
import pulumi_nomad as nomad
import pulumi_vault as vault

from components.access.namespaces import APPS_NAMESPACE, KV_MOUNT, NOMAD_NAMESPACES, PLATFORM_NAMESPACE
from components.bootstrap.cluster import Bootstrap, policy_text
from components.config.settings import Settings

# Nomad ACL policies (policies/nomad/<name>.hcl), one role each. None for anonymous: with ACLs on,
# a request without a token is denied everything, and that is the point.
NOMAD_POLICIES = ("operator", "deployer", "readonly", "developer")

# Consul's built-in anonymous token (its AccessorID never changes).
CONSUL_ANONYMOUS_TOKEN_ID = "00000000-0000-0000-0000-000000000002"
# The auth method and role names Nomad's agents use by default (consul.service_auth_method,
# consul.task_auth_method; vault.jwt_auth_backend_path, the auth backend's default_role).
WORKLOADS = "nomad-workloads"
VAULT_JWT_PATH = "jwt-nomad"
# Audiences of the identities Nomad's servers add to jobs (cloudinit/nomad.hcl.j2).
CONSUL_AUDIENCE = "consul.io"
VAULT_AUDIENCE = "vault.io"
MIN_AUTOPILOT_QUORUM = 3
"""Vault refuses dead-server cleanup with a min_quorum below 3 (sys/storage/raft/autopilot/configuration)."""
DEAD_SERVER_AFTER = "24h0m0s"
"""Far longer than any replacement (a gate waits 20 minutes): a server out of contact this long is gone."""
# Where Consul and Vault fetch the keys that sign workload identities. Every Consul and Vault server
# runs next to a Nomad server (whose certificate names 127.0.0.1), so the loopback is always there.
# Not the API endpoint: on AWS it is the internet-facing load balancer, which admits only
# apiAllowedCidrs, not the servers' own addresses; on libvirt it is server-0 alone, a single point of
# failure for every workload login. Consul and Vault check the URL when the method is written.
NOMAD_JWKS_URL = "https://127.0.0.1:4646/.well-known/jwks.json"
# What the Nomad servers sign with (RS256); EdDSA too, as Nomad's docs configure Vault.
CONSUL_JWT_ALGORITHMS = ["RS256"]
VAULT_JWT_ALGORITHMS = ["RS256", "EdDSA"]

# The file every Vault server writes, and that cloudinit/vault-audit.logrotate rotates.
VAULT_AUDIT_FILE = "/var/log/vault/audit.log"
# Vault tokens of workloads: renewed by Nomad for as long as the task runs (docs/secure/vault/acl).
WORKLOAD_TOKEN_PERIOD_SECONDS = 30 * 60
# The operator token is periodic: it lives as long as it is renewed within the period, by
# `vault token renew` or by `pulumi refresh` once less than half of it is left.
OPERATOR_TOKEN_PERIOD = "720h"
OPERATOR_TOKEN_RENEW_MIN_LEASE_SECONDS = 15 * 24 * 3600
OPERATOR_TOKEN_RENEW_INCREMENT_SECONDS = 30 * 24 * 3600


def workloads_policy(accessor: str) -> str:
    """Vault's nomad-workloads policy with the JWT backend's accessor filled in (strictly)."""
    return string.Template(policy_text("vault", WORKLOADS)).substitute(accessor=accessor)


def consul_auth_method_config(ca_pem: str) -> str:
    """Consul JWT auth method config as `nomad setup consul` writes it, trusting the cluster CA."""
    return json.dumps(
        {
            "JWKSURL": NOMAD_JWKS_URL,
            "JWKSCACert": ca_pem,
            "JWTSupportedAlgs": CONSUL_JWT_ALGORITHMS,
            "BoundAudiences": [CONSUL_AUDIENCE],
            "ClaimMappings": {
                "nomad_namespace": "nomad_namespace",
                "nomad_job_id": "nomad_job_id",
                "nomad_task": "nomad_task",
                "nomad_service": "nomad_service",
            },
        },
        sort_keys=True,
    )


def render_env(
    stack: str,
    *,
    consul_address: str,
    nomad_address: str,
    vault_address: str,
    ca_pem: str,
    cert_pem: str,
    key_pem: str,
    consul_token: str,
    nomad_token: str,
    vault_token: str,
) -> str:
    """Shell lines for `eval "$(pulumi stack output env --show-secrets)"`.

    The CLIs want the CA and the client certificate as files, so the block first writes them to
    ~/.hashistack/<stack>/ (a private directory, in a subshell so the shell's umask is untouched),
    then exports variables pointing there. Every value is shell-quoted.
    """
    directory = f'"$HOME"/.hashistack/{shlex.quote(stack)}'
    files = {"ca.pem": ca_pem, "operator.pem": cert_pem, "operator-key.pem": key_pem}
    writes = [f"mkdir -p {directory}", f"chmod 700 {directory}"]
    writes += [f"printf '%s' {shlex.quote(content)} > {directory}/{file}" for file, content in files.items()]
    ca, cert, key = (f"{directory}/{file}" for file in files)
    exports = {
        "CONSUL_HTTP_ADDR": shlex.quote(f"https://{consul_address}"),
        "CONSUL_CACERT": ca,
        "CONSUL_CLIENT_CERT": cert,
        "CONSUL_CLIENT_KEY": key,
        "CONSUL_HTTP_TOKEN": shlex.quote(consul_token),
        "NOMAD_ADDR": shlex.quote(nomad_address),
        "NOMAD_CACERT": ca,
        "NOMAD_TOKEN": shlex.quote(nomad_token),
        "VAULT_ADDR": shlex.quote(vault_address),
        "VAULT_CACERT": ca,
        "VAULT_TOKEN": shlex.quote(vault_token),
    }
    lines = [
        f'# hashistack {stack}: eval "$(pulumi stack output env --show-secrets)"',
        "(umask 077 &&\n  " + " &&\n  ".join(writes) + ")",
        *(f"export {variable}={value}" for variable, value in exports.items()),
    ]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class AccessArgs:
    settings: Settings
    bootstrap: Bootstrap
    """Its addresses, CA, operator certificate and key, and management tokens (tests pass a stand-in
    with the same attributes)."""


class Access(pulumi.ComponentResource):
    vault_operator_token: pulumi.Output[str]
    """Vault token with the "admin" policy, for operators instead of the root token (secret)."""
    vault_jwt_accessor: pulumi.Output[str]
    """Accessor of Vault's jwt-nomad auth backend (auth_jwt_...), which templated policies name."""
    nomad_deploy_token: pulumi.Output[str]
    """Nomad token for CI: submit jobs in the apps namespace, nothing else (secret)."""
    nomad_readonly_token: pulumi.Output[str]
    """Nomad token that reads everything and changes nothing (secret)."""
    nomad_developer_token: pulumi.Output[str]
    """Nomad token for `nomadctl`: jobs, logs and exec in the apps namespace, no submit (secret)."""
    apps_namespace: pulumi.Output[str]
    """The Nomad namespace jobs are deployed to."""
    env: pulumi.Output[str]
    """Shell lines writing the CA and operator certificate and exporting the CLIs' variables (secret)."""
    consul_workload_identity: list[pulumi.Resource]
    """What Nomad tasks need to get Consul tokens (auth method, binding rules, roles)."""
    vault_workload_identity: list[pulumi.Resource]
    """What Nomad tasks need to read their Vault secrets (KV mount, auth backend, role, policy)."""

    def __init__(self, name: str, args: AccessArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("hashistack:access:Access", name, None, opts)
        self._name = name
        self._settings = args.settings
        settings, bootstrap = args.settings, args.bootstrap
        self.consul_workload_identity, self.vault_workload_identity = [], []

        self._consul(bootstrap)
        namespace = self._nomad()
        operator_token, accessor = self._vault(bootstrap)

        self.vault_operator_token = pulumi.Output.secret(operator_token)
        self.vault_jwt_accessor = accessor
        self.apps_namespace = namespace.name
        # The tokens an operator works with: Vault's operator token rather than root; Nomad's and
        # Consul's management tokens, since only those manage ACLs, and neither CLI is usable for
        # operating the cluster with less (the Nomad "operator" role can mint narrower tokens).
        self.env = pulumi.Output.secret(
            pulumi.Output.all(
                consul_address=bootstrap.consul_address,
                nomad_address=bootstrap.nomad_address,
                vault_address=bootstrap.vault_address,
                ca_pem=bootstrap.ca_pem,
                cert_pem=bootstrap.operator_cert_pem,
                key_pem=bootstrap.operator_key_pem,
                consul_token=bootstrap.consul_token,
                nomad_token=bootstrap.nomad_token,
                vault_token=self.vault_operator_token,
            ).apply(lambda values: render_env(settings.stack, **values))
        )
        self.register_outputs(
            {
                "vault_operator_token": self.vault_operator_token,
                "vault_jwt_accessor": self.vault_jwt_accessor,
                "nomad_deploy_token": self.nomad_deploy_token,
                "nomad_readonly_token": self.nomad_readonly_token,
                "nomad_developer_token": self.nomad_developer_token,
                "apps_namespace": self.apps_namespace,
                "env": self.env,
            }
        )

    def _child(self, **kwargs: Any) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self, **kwargs)

    # -- Consul ---------------------------------------------------------------------------------
    def _consul(self, bootstrap: Bootstrap) -> None:
        name = self._name
        dns = consul.AclPolicy(
            f"{name}-consul-dns-and-catalog-read",
            name="dns-and-catalog-read",
            description="Anonymous requests and DNS: read services and nodes",
            rules=policy_text("consul", "dns-and-catalog-read"),
            opts=self._child(),
        )
        # Consul DNS and token-less catalog reads answer with the anonymous token's rights (seed 003).
        consul.AclTokenPolicyAttachment(
            f"{name}-consul-anonymous-dns",
            token_id=CONSUL_ANONYMOUS_TOKEN_ID,
            policy=dns.name,
            opts=self._child(),
        )

        method = consul.AclAuthMethod(
            f"{name}-consul-{WORKLOADS}",
            name=WORKLOADS,
            type="jwt",
            display_name=WORKLOADS,
            description="Nomad workload identities: services register themselves, tasks read for templates",
            # As `nomad setup consul`: tokens stay in this datacenter.
            token_locality="local",
            config_json=pulumi.Output.from_input(bootstrap.ca_pem).apply(consul_auth_method_config),
            opts=self._child(),
        )
        # The two binding rules `nomad setup consul` creates: a service identity for each service's
        # identity, and the namespace's role for every task's identity.
        services_rule = consul.AclBindingRule(
            f"{name}-consul-{WORKLOADS}-services",
            auth_method=method.name,
            description="Nomad services: a service identity named after the service",
            selector='"nomad_service" in value',
            bind_type="service",
            bind_name="${value.nomad_service}",
            opts=self._child(),
        )
        tasks_rule = consul.AclBindingRule(
            f"{name}-consul-{WORKLOADS}-tasks",
            auth_method=method.name,
            description="Nomad tasks: the role of the task's Nomad namespace",
            selector='"nomad_service" not in value',
            bind_type="role",
            bind_name="nomad-${value.nomad_namespace}-tasks",
            opts=self._child(),
        )
        tasks = consul.AclPolicy(
            f"{name}-consul-nomad-tasks",
            name="nomad-tasks",
            description="Nomad tasks: read services, nodes and KV (templates)",
            rules=policy_text("consul", "nomad-tasks"),
            opts=self._child(),
        )
        platform = consul.AclPolicy(
            f"{name}-consul-nomad-platform-tasks",
            name="nomad-platform-tasks",
            description="Nomad tasks of the default namespace (the platform's jobs): read the agents",
            rules=policy_text("consul", "nomad-platform-tasks"),
            opts=self._child(),
        )
        self.consul_workload_identity += [method, services_rule, tasks_rule]
        # A task whose namespace has no role here gets no token: login fails rather than widens.
        for namespace in NOMAD_NAMESPACES:
            role = consul.AclRole(
                f"{name}-consul-nomad-{namespace}-tasks",
                name=f"nomad-{namespace}-tasks",
                description=f"Tasks of the Nomad namespace {namespace}",
                policies=[tasks.id, platform.id] if namespace == PLATFORM_NAMESPACE else [tasks.id],
                opts=self._child(),
            )
            self.consul_workload_identity.append(role)

    # -- Nomad ----------------------------------------------------------------------------------
    def _nomad(self) -> nomad.Namespace:
        name = self._name
        namespace = nomad.Namespace(
            f"{name}-nomad-namespace-{APPS_NAMESPACE}",
            name=APPS_NAMESPACE,
            description="Applications deployed by CI; the deploy token can touch nothing else",
            opts=self._child(),
        )
        roles: dict[str, nomad.AclRole] = {}
        for policy_name in NOMAD_POLICIES:
            policy = nomad.AclPolicy(
                f"{name}-nomad-{policy_name}",
                name=policy_name,
                description=f"hashistack {policy_name} (policies/nomad/{policy_name}.hcl)",
                rules_hcl=policy_text("nomad", policy_name),
                opts=self._child(),
            )
            roles[policy_name] = nomad.AclRole(
                f"{name}-nomad-{policy_name}-role",
                name=policy_name,
                description=f"Holders of the {policy_name} policy",
                policies=[nomad.AclRolePolicyArgs(name=policy.name)],
                opts=self._child(),
            )

        def token_for(kind: str, token_name: str, role: str) -> pulumi.Output[str]:
            """A client token holding `role`, as a secret."""
            token = nomad.AclToken(
                f"{name}-nomad-{kind}-token",
                name=token_name,
                type="client",
                roles=[nomad.AclTokenRoleArgs(id=roles[role].id)],
                opts=self._child(),
            )
            # secret_id is deprecated upstream in favour of Terraform's ephemeral resources, which
            # Pulumi has no equivalent of; it stays the only way to hand CI its token (the warning is
            # expected). It is stored in the state encrypted, as every secret of this stack.
            return pulumi.Output.secret(token.secret_id)

        self.nomad_deploy_token = token_for("deploy", "ci-deploy", "deployer")
        self.nomad_readonly_token = token_for("readonly", "readonly", "readonly")
        self.nomad_developer_token = token_for("developer", "developer", "developer")
        return namespace

    # -- Vault ----------------------------------------------------------------------------------
    def _vault_autopilot(self, opts: pulumi.ResourceOptions) -> vault.RaftAutopilot | None:
        """No dead voters in Vault's raft: autopilot removes a server that has been out of contact for
        DEAD_SERVER_AFTER, but never below serverCount voters (`min_quorum`: raft-autopilot prunes only
        while `voters-1 >= min_quorum`), so a server being replaced under its own node_id keeps its
        seat and only a server that has left the plan goes. The server chain removes departed servers
        at once (components/rollout/server_handover.py); this catches a removal that could not be
        made. Vault leaves cleanup off by default (audit C-1) and refuses it with min_quorum below 3 or a
        threshold under 1m (hashicorp/vault vault/logical_system_raft.go
        handleStorageRaftAutopilotConfigUpdate, index copy 283510408), so a single server has none."""
        count = self._settings.server_count
        if count < MIN_AUTOPILOT_QUORUM:
            return None
        return vault.RaftAutopilot(
            f"{self._name}-vault-raft-autopilot",
            cleanup_dead_servers=True,
            min_quorum=count,
            dead_server_last_contact_threshold=DEAD_SERVER_AFTER,
            last_contact_threshold="10s",
            max_trailing_logs=1000,
            server_stabilization_time="10s",
            opts=opts,
        )

    def _vault(self, bootstrap: Bootstrap) -> tuple[pulumi.Output[str], pulumi.Output[str]]:
        name = self._name
        # First, so that everything after it (the operator token's creation included) is on record.
        # WARNING: Vault refuses requests it cannot audit; a full /var/log stops it (logrotate
        # keeps the file bounded).
        audit = vault.Audit(
            f"{name}-vault-audit-file",
            type="file",
            path="file",
            description="Every request and response, HMAC'd, on each server",
            options={"file_path": VAULT_AUDIT_FILE},
            opts=self._child(),
        )
        audited = self._child(depends_on=[audit])

        kv = vault.Mount(
            f"{name}-vault-kv",
            path=KV_MOUNT,
            type="kv",
            options={"version": "2"},
            description="Secrets of Nomad workloads: kv/<namespace>/<job>/...",
            opts=audited,
        )
        backend = vault.jwt.AuthBackend(
            f"{name}-vault-{VAULT_JWT_PATH}",
            path=VAULT_JWT_PATH,
            type="jwt",
            description="Nomad workload identities",
            jwks_url=NOMAD_JWKS_URL,
            jwks_ca_pem=bootstrap.ca_pem,
            jwt_supported_algs=VAULT_JWT_ALGORITHMS,
            default_role=WORKLOADS,
            opts=audited,
        )
        policy = vault.Policy(
            f"{name}-vault-{WORKLOADS}",
            name=WORKLOADS,
            policy=backend.accessor.apply(workloads_policy),
            opts=audited,
        )
        # As Nomad's docs configure it. WARNING: the entity alias is the job ID, so jobs of the same
        # name in two namespaces share one alias and its metadata; keep job names unique.
        role = vault.jwt.AuthBackendRole(
            f"{name}-vault-{WORKLOADS}-role",
            backend=backend.path,
            role_name=WORKLOADS,
            role_type="jwt",
            bound_audiences=[VAULT_AUDIENCE],
            user_claim="/nomad_job_id",
            user_claim_json_pointer=True,
            claim_mappings={
                "nomad_namespace": "nomad_namespace",
                "nomad_job_id": "nomad_job_id",
                "nomad_task": "nomad_task",
            },
            token_type="service",
            token_policies=[policy.name],
            token_period=WORKLOAD_TOKEN_PERIOD_SECONDS,
            # Nomad renews workload tokens while the task runs; a max TTL would cut them off.
            token_explicit_max_ttl=0,
            opts=audited,
        )

        self.vault_workload_identity += [kv, backend, policy, role]
        self._vault_autopilot(audited)

        admin = vault.Policy(
            f"{name}-vault-admin",
            name="admin",
            policy=policy_text("vault", "admin"),
            opts=audited,
        )
        token = vault.Token(
            f"{name}-vault-operator-token",
            display_name="operator",
            policies=[admin.name],
            renewable=True,
            period=OPERATOR_TOKEN_PERIOD,
            renew_min_lease=OPERATOR_TOKEN_RENEW_MIN_LEASE_SECONDS,
            renew_increment=OPERATOR_TOKEN_RENEW_INCREMENT_SECONDS,
            # An orphan: the provider works with a child of the root token that it revokes after
            # each run (components/access/providers.py), which would take a child token down with it.
            no_parent=True,
            opts=audited,
        )
        return token.client_token, backend.accessor
