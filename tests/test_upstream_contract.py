"""The contract the fakes answer from (tests/upstream.py) is about the versions the nodes install, every
answer says where upstream it was read, and the fake cluster answers from nothing else."""

from __future__ import annotations

import re

import pytest
import upstream
from fake_cluster import CONSUL_TOKEN, NOMAD_TOKEN, VAULT_ROOT, FakeCluster

from scripts.stack_files import project_file

# A repository, then a file path in it with an extension, e.g. "hashicorp/nomad v1.10.3 nomad/rpc.go".
CITATION = re.compile(r"hashicorp/[\w-]+\b.*?\b[\w./-]+\.(go|md|mdx|txt)\b")


def test_the_contract_is_about_the_pinned_versions():
    config = project_file()["config"]
    pinned = {product: str(config[f"{product}Version"]["default"]) for product in upstream.PINNED}
    assert pinned == upstream.PINNED, "the defaults moved: re-check every source in tests/upstream.py"
    # Nomad's sources are read at the newest tag of the pinned line that can be read here.
    tag = tuple(int(p) for p in upstream.NOMAD_TAG.removeprefix("v").split("."))
    pinned_nomad = tuple(int(p) for p in upstream.PINNED["nomad"].split("."))
    assert tag[:2] == pinned_nomad[:2] and tag <= pinned_nomad
    assert upstream.NOMAD.endswith(upstream.NOMAD_TAG)


KNOWN_VULNERABLE = [
    # (product, first affected, first Community Edition release with the fix, where it is said)
    (
        "nomad",
        "1.0.0",
        "2.0.4",
        "hashicorp/nomad CHANGELOG.md@v2.0.5, 2.0.4 SECURITY: CVE-2026-14891 (docker host namespace modes)",
    ),
    (
        "nomad",
        "1.0.0",
        "2.0.4",
        "hashicorp/nomad CHANGELOG.md@v2.0.5, 2.0.4 SECURITY: CVE-2026-14896 (symlink past volumes.enabled)",
    ),
    (
        "vault",
        "1.20.0",
        "1.20.3",
        "hashicorp/web-unified-docs content/vault/global/partials/important-changes/known-issues/aws-auto-join.mdx",
    ),
]
SUPPORTED_CE_LINES = {
    # product -> the line that gets Community Edition fixes, with where it is said (refresh with PINNED)
    "consul": (
        "2.0",
        "hashicorp/consul#23614: 1.21/1.22 patch releases are Enterprise only; homebrew-tap PR #402 (2.0.4)",
    ),
    "nomad": ("2.0", 'hashicorp/nomad .release/versions.hcl: only version "2.0.x" has ce_active = true'),
    "vault": (
        "2.1",
        "endoflife.date hashicorp-vault: community versions end when the next release occurs; homebrew-tap PR #414 (2.1.1)",
    ),
}


def _release(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


@pytest.mark.parametrize(("product", "first", "fixed", "source"), KNOWN_VULNERABLE)
def test_no_pin_is_a_known_vulnerable_version(product, first, fixed, source):
    pinned = upstream.PINNED[product]
    assert not _release(first) <= _release(pinned) < _release(fixed), f"{product} {pinned}: {source}"


@pytest.mark.parametrize("product", sorted(SUPPORTED_CE_LINES))
def test_every_pin_is_on_a_line_that_gets_fixes(product):
    line, source = SUPPORTED_CE_LINES[product]
    assert upstream.PINNED[product].startswith(f"{line}."), f"{product} {upstream.PINNED[product]}: {source}"


def test_the_settings_refuse_what_the_tables_refuse():
    from components.config.reading import SUPPORTED_FLOORS

    for product, _first, fixed, source in KNOWN_VULNERABLE:
        assert SUPPORTED_FLOORS[f"{product}Version"][0] >= _release(fixed), source
    for product, (line, source) in SUPPORTED_CE_LINES.items():
        assert SUPPORTED_FLOORS[f"{product}Version"][0][:2] >= _release(line), source


def test_every_answer_names_its_upstream_source():
    assert len(upstream.SOURCES) >= 35
    for name, source in upstream.SOURCES.items():
        assert CITATION.search(source), f"{name}: {source!r} names no repository and file"


def test_every_answer_carries_its_source():
    answer = upstream.nomad_no_leader()
    assert answer.source == upstream.SOURCES["nomad_no_leader"]
    assert (answer.status, answer.body, answer.content_type) == (500, "No cluster leader", upstream.TEXT)


@pytest.fixture
def built(pki, fake_api) -> FakeCluster:
    cluster = FakeCluster(fake_api)
    cluster.boot(*cluster.names)
    cluster.form(*cluster.names)
    return cluster


def _ask(pki, cluster: FakeCluster, product: str, path: str, headers: dict[str, str] | None = None):
    return cluster.api(pki, product, headers=headers or {}).get(path)


@pytest.mark.parametrize(
    ("product", "path", "status"),
    [
        ("consul", "/v1/acl/token/self", 403),
        ("consul", "/v1/acl/policy/name/agent", 403),
        ("consul", "/v1/acl/tokens", 403),
        ("nomad", "/v1/status/leader", 200),
        ("nomad", "/v1/acl/token/self", 200),
        ("nomad", "/v1/jobs", 403),
        ("vault", "/v1/sys/leader", 503),
        ("vault", "/v1/sys/storage/raft/autopilot/state", 503),
    ],
)
def test_errors_come_in_each_product_s_own_form(pki, built, product, path, status):
    """Nomad and Consul write an error as its bare text (text/plain); Vault as JSON {"errors": [...]}."""
    answer = _ask(pki, built, product, path, {"X-Consul-Token": "unknown"} if product == "consul" else None)
    assert answer.status == status, answer
    if status >= 400:
        if product == "vault":
            assert isinstance(answer.body, dict) and answer.body["errors"], answer.body
        else:
            assert isinstance(answer.body, str) and not answer.body.startswith("{"), answer.body


def test_the_fake_cluster_answers_only_from_the_contract(pki, built):
    consul = built.apis["server-0"]["consul"]
    consul.on("GET", "/v1/status/leader", lambda _seen: (200, "made up"))
    assert _ask(pki, built, "consul", "/v1/status/leader").status == 599


def test_a_management_token_opens_what_the_gate_and_doctor_read(pki, built):
    built.nomad_management = NOMAD_TOKEN
    assert _ask(pki, built, "consul", "/v1/operator/autopilot/health", {"X-Consul-Token": CONSUL_TOKEN}).ok
    assert _ask(pki, built, "nomad", "/v1/operator/autopilot/health", {"X-Nomad-Token": NOMAD_TOKEN}).ok
    assert _ask(pki, built, "nomad", "/v1/operator/autopilot/health").status == 403
    assert _ask(pki, built, "vault", "/v1/sys/seal-status", {"X-Vault-Token": VAULT_ROOT}).body["t"] == 0
