"""The job rules on Vault: a task reaches Vault only through workload identity, never with policies or
its token ("vault-workload-identity"), and its templates read only the KV paths the nomad-workloads
policy grants the job ("vault-paths-scoped"), as consul-template requests them."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from components.access.namespaces import KV_MOUNT
from components.workloads.rule_framework import JobContext, Rule, Scope
from components.workloads.rules.templates import _calls, _template_actions_of

# A Vault token file read: Nomad's vault hook writes the task's token to secrets/vault_token
# (client/allocrunner/taskrunner/vault_hook.go@v2.0.5), i.e. ${NOMAD_SECRETS_DIR}/vault_token.
_VAULT_TOKEN_FILE = re.compile(r"(?:^|/)(?:secrets|\$\{\s*NOMAD_SECRETS_DIR\s*\})/vault_token$")
# `${VAULT_TOKEN}` in a value Nomad interpolates from the task's environment (env values); HCL's
# `$${VAULT_TOKEN}` is the same by then, as the loader resolves the escape as jobspec2 does.
_VAULT_TOKEN_INTERPOLATION = re.compile(r"\$\{\s*VAULT_TOKEN\s*\}")
# consul-template's functions that read the task's environment (template/template.go@v0.42.1, the
# consul-template of Nomad v2.0.5's go.mod).
_ENV_FUNCTIONS = frozenset({"env", "mustEnv", "envOrDefault"})
# Its functions that read (secret "path"), write (secret "path" "k=v") or list (secrets "path") Vault.
_VAULT_FUNCTIONS = frozenset({"secret", "secrets"})


def _reads_vault_token(template: Mapping[str, Any]) -> bool:
    """Whether a template reads the task's Vault token: `env "VAULT_TOKEN"` (or mustEnv, envOrDefault),
    the token file secrets/vault_token named in an action, or that file as the template's source."""
    source = template.get("source")
    if isinstance(source, str) and _VAULT_TOKEN_FILE.search(posixpath.normpath(source)):
        return True
    for _, tokens in _template_actions_of(template):
        for call in _calls(tokens, _ENV_FUNCTIONS):
            if call.arguments and call.arguments[0][0].literal == "VAULT_TOKEN":
                return True
        for token in tokens:
            value = token.literal
            if value and _VAULT_TOKEN_FILE.search(posixpath.normpath(value)):
                return True
    return False


def _vault_workload_identity(ctx: JobContext) -> str | None:
    task = ctx.task
    assert task is not None
    problems = []
    for block in task.vault:
        if "policies" in block:
            problems.append("vault block sets policies (the legacy token workflow, removed in Nomad 1.10)")
        if "token" in block:
            problems.append("vault block sets a token")
    if "VAULT_TOKEN" in task.env:
        problems.append("env sets VAULT_TOKEN")
    copied = sorted(k for k, v in task.env.items() if isinstance(v, str) and _VAULT_TOKEN_INTERPOLATION.search(v))
    if copied:
        problems.append(f"env {', '.join(copied)} copies ${{VAULT_TOKEN}}")
    for template in task.templates:
        if _reads_vault_token(template):
            problems.append(f'template "{template.get("destination", "?")}" reads the Vault token')
    if problems:
        return (
            "; ".join(problems)
            + " — use a vault block without policies (workload identity) and let templates read secrets"
        )
    return None


def vault_request(function: str, path: str) -> tuple[str, str]:
    """(operation, Vault path) that consul-template v0.42.1 (Nomad v2.0.5's) sends for `secret "path"`
    (read) or `secrets "path"` (list) on this cluster's KV v2 mount: spaces and slashes trimmed,
    a read's query string dropped (NewVaultReadQuery, NewVaultListQuery); a read gets "data/" after
    the mount unless it names data/, metadata/ or subkeys/ (shimKVv2Path, dependency/vault_read.go),
    a list gets "metadata/" unless it starts with it (shimKvV2ListPath, dependency/vault_list.go).
    Paths on other mounts are returned trimmed."""
    path = path.strip().strip("/")
    mount = KV_MOUNT
    if function == "secrets":
        if path == mount:
            return "list", posixpath.join(mount, "metadata")
        if not path.startswith(mount + "/") or path.startswith(posixpath.join(mount, "metadata")):
            return "list", path
        return "list", posixpath.normpath(posixpath.join(mount, "metadata", path[len(mount) + 1 :]))
    path = urlsplit(path).path
    if path == mount:
        return "read", posixpath.join(mount, "data")
    if not path.startswith(mount + "/"):
        return "read", path
    rest = path[len(mount) + 1 :]
    if rest.startswith(("data/", "metadata/", "subkeys/")):
        return "read", path
    return "read", posixpath.join(mount, "data", rest)


def vault_grants(operation: str, path: str, namespace: str, job_id: str) -> bool:
    """Whether the nomad-workloads policy (policies/vault/nomad-workloads.hcl) grants a task of this
    job `operation` on `path`: read on kv/data/<namespace>/<job>[/...], list on
    kv/metadata/<namespace>[/...] (Vault gives a list path a trailing slash, so kv/metadata/<ns> itself
    matches kv/metadata/<ns>/*: "List Operations Always Use Trailing Slash", Vault 0.7.0 upgrade guide)."""
    segments = path.split("/")
    if any(segment in ("", ".", "..") for segment in segments):
        return False
    if operation == "read":
        return segments[:4] == [KV_MOUNT, "data", namespace, job_id]
    return operation == "list" and segments[:3] == [KV_MOUNT, "metadata", namespace]


def _vault_paths_scoped(ctx: JobContext) -> str | None:
    task = ctx.task
    assert task is not None
    job = ctx.job
    outside: list[str] = []
    computed: list[str] = []
    for template in task.templates:
        destination = template.get("destination", "?")
        for action, tokens in _template_actions_of(template):
            for call in _calls(tokens, _VAULT_FUNCTIONS):
                # A parenthesised first argument starts with "(", which is no literal.
                path = call.arguments[0][0].literal if call.arguments else None
                if path is None:
                    computed.append(f'template "{destination}": {action}')
                    continue
                operation, effective = vault_request(call.function, path)
                if call.function == "secret" and len(call.arguments) > 1:
                    operation = "write"  # secret "path" "k=v" writes (secretFunc, template/funcs.go@v0.42.1)
                if not effective.startswith(KV_MOUNT + "/") or vault_grants(
                    operation, effective, job.namespace, job.id
                ):
                    continue
                described = f"{operation}s {effective}"
                if operation == "write":
                    described += f' (secret "{path}" with key=value arguments)'
                elif effective != path:
                    described += f' ({call.function} "{path}")'
                outside.append(described)
    problems = []
    if outside:
        problems.append(
            f"template {', '.join(sorted(set(outside)))}, outside kv/data/{job.namespace}/{job.id}[/...] (read) and"
            f" kv/metadata/{job.namespace}/... (list) — the nomad-workloads Vault policy grants a task read on its"
            " own namespace and job and list on its namespace only, so the template would never render"
        )
    if computed:
        problems.append(
            f"{'; '.join(computed)}: the Vault path is not a string literal, so the rules cannot check where it"
            ' reads — write it as one (secret "kv/data/<namespace>/<job>/...")'
        )
    return "; ".join(problems) or None


# Vault 2.0.1+ refuses a templated policy path whose rendered value holds a wildcard (`+`) or glob
# (`*`), answering "permission denied" (hashicorp/web-unified-docs content/vault/global/partials/
# important-changes/breaking-changes/policy-template-wildcards.mdx @7e81f023). The nomad-workloads
# policy renders the job's namespace and ID into its paths (policies/vault/nomad-workloads.hcl), and
# Nomad allows both characters in them.
_TEMPLATE_WILDCARDS = ("+", "*")


def _vault_template_safe(ctx: JobContext) -> str | None:
    task = ctx.task
    assert task is not None
    if not task.vault:
        return None
    named = [f'{what} "{value}"' for what, value in (("job ID", ctx.job.id), ("namespace", ctx.job.namespace))
             if any(c in value for c in _TEMPLATE_WILDCARDS)]  # fmt: skip
    if not named:
        return None
    return (
        f"{' and '.join(named)} holds '+' or '*', which Vault refuses in a templated policy path (permission"
        " denied from Vault 2.0.1): the task would get no secret — rename the job without them"
    )


VAULT_WORKLOAD_IDENTITY = Rule(
    "vault-workload-identity",
    "Vault only through workload identity: no policies, no token read in env or templates",
    Scope.TASK,
    _vault_workload_identity,
)
VAULT_PATHS_SCOPED = Rule(
    "vault-paths-scoped",
    "templates read Vault KV where the nomad-workloads policy allows (read kv/data/<namespace>/<job>, list"
    " kv/metadata/<namespace>), at literal paths",
    Scope.TASK,
    _vault_paths_scoped,
)
VAULT_TEMPLATE_SAFE = Rule(
    "vault-template-safe",
    "a job that uses Vault has no '+' or '*' in its ID or namespace (Vault refuses them in templated policy paths)",
    Scope.TASK,
    _vault_template_safe,
)
