"""The Vault rules' helpers (components/workloads/rules/vault.py and the Go template lexer they read
templates with, rules/templates.py): token reads, the requests consul-template sends, and what the
nomad-workloads policy grants."""

from __future__ import annotations

import re

import pytest
from test_job_rules import job_hcl, template, vault_job, write
from test_jobs import ALLOWED

from components import CHECKOUT
from components.workloads.job_model import load_job
from components.workloads.job_rules import check_job
from components.workloads.rules.templates import template_actions
from components.workloads.rules.vault import vault_grants, vault_request


@pytest.mark.parametrize(
    ("extra", "reads"),
    [
        ('template {\n  source = "${NOMAD_SECRETS_DIR}/vault_token"\n  destination = "local/t"\n}', True),
        ('template {\n  source = "local/secrets/vault_token.tpl"\n  destination = "local/t"\n}', False),
        (template('{{ mustEnv "VAULT_TOKEN" }}'), True),
        (template('{{ env "VAULT_TOKEN" | toJSON }}'), True),
        (template('{{ file "secrets//vault_token" }}'), True),
        (template('{{ env "HOME" }} vault_token secrets/vault_token'), False),  # text outside actions
        (template('{{ file "secrets/vault_token_ttl" }}'), False),
    ],
)
def test_vault_token_reads_are_matched_precisely(tmp_path, extra, reads):
    """Nomad writes the task's token to secrets/vault_token (client/allocrunner/taskrunner/vault_hook.go@v2.0.5)."""
    rules = [v.rule for v in check_job(load_job(write(tmp_path, job_hcl(task_extra=f"vault {{}}\n{extra}"))), ALLOWED)]
    assert rules == (["vault-workload-identity"] if reads else [])


def test_a_template_with_both_problems_reports_both(tmp_path):
    data = '{{ with secret "kv/data/default/x" }}{{ end }}{{ with secret $path }}{{ end }}'
    (violation,) = check_job(load_job(write(tmp_path, vault_job(data))), ALLOWED)
    assert "template reads kv/data/default/x, outside" in violation.message
    assert 'template "local/x": {{ with secret $path }}: the Vault path is not a string literal' in violation.message


@pytest.mark.parametrize(
    ("function", "path", "expected"),
    [
        ("secret", "kv/data/apps/demo/config", ("read", "kv/data/apps/demo/config")),
        ("secret", "kv/apps/demo/config", ("read", "kv/data/apps/demo/config")),
        ("secret", " /kv/apps/demo/config?version=2 ", ("read", "kv/data/apps/demo/config")),
        ("secret", "kv/metadata/apps/demo", ("read", "kv/metadata/apps/demo")),
        ("secret", "kv/subkeys/apps/demo", ("read", "kv/subkeys/apps/demo")),
        ("secret", "kv", ("read", "kv/data")),
        ("secret", "pki/issue/web", ("read", "pki/issue/web")),
        ("secrets", "kv/metadata/apps/", ("list", "kv/metadata/apps")),
        ("secrets", "kv/apps/demo", ("list", "kv/metadata/apps/demo")),
        ("secrets", "kv/data/apps/demo", ("list", "kv/metadata/data/apps/demo")),
        ("secrets", "kv", ("list", "kv/metadata")),
        ("secrets", "transit/keys", ("list", "transit/keys")),
    ],
)
def test_vault_requests_are_what_consul_template_sends(function, path, expected):
    """dependency/vault_read.go shimKVv2Path and vault_list.go shimKvV2ListPath at consul-template
    v0.42.1, the version in Nomad v2.0.5's go.mod."""
    assert vault_request(function, path) == expected


def test_vault_grants_follow_the_nomad_workloads_policy():
    """policies/vault/nomad-workloads.hcl: read kv/data/<ns>/<job> and kv/data/<ns>/<job>/*, list kv/metadata/<ns>/*."""
    policy = (CHECKOUT / "policies/vault/nomad-workloads.hcl").read_text()
    assert re.findall(r'path "kv/(\w+)/[^"]*?(\*?)" {\s*capabilities = \["(\w+)"\]', policy) == [
        ("data", "*", "read"),
        ("data", "", "read"),
        ("metadata", "*", "list"),
    ]
    assert vault_grants("read", "kv/data/apps/demo", "apps", "demo")
    assert vault_grants("read", "kv/data/apps/demo/config", "apps", "demo")
    assert not vault_grants("read", "kv/data/apps/demo-2/config", "apps", "demo")
    assert not vault_grants("read", "kv/data/apps", "apps", "demo")
    assert not vault_grants("read", "kv/metadata/apps/demo", "apps", "demo")
    assert not vault_grants("list", "kv/data/apps/demo", "apps", "demo")
    assert vault_grants("list", "kv/metadata/apps", "apps", "demo")
    assert vault_grants("list", "kv/metadata/apps/other-job", "apps", "demo")
    assert not vault_grants("list", "kv/metadata/default", "apps", "demo")
    assert not vault_grants("write", "kv/data/apps/demo/config", "apps", "demo")
    assert not vault_grants("write", "kv/metadata/apps/demo", "apps", "demo")
    assert not vault_grants("read", "kv/data/apps/demo/../../default/x", "apps", "demo")


def test_template_actions_are_lexed_as_go_does():
    actions = template_actions('a {{ printf "}}" }} b {{- secret `kv/x` -}} {{/* c */}}{{ .Data.secret }}')
    assert [text for text, _ in actions] == [
        '{{ printf "}}" }}',
        "{{- secret `kv/x` -}}",
        "{{/* c */}}",
        "{{ .Data.secret }}",
    ]
    assert [[t.kind for t in tokens] for _, tokens in actions] == [
        ["ident", "string"],
        ["ident", "string"],
        [],
        ["field"],
    ]
    assert actions[1][1][1].literal == "kv/x"
