"""components/workloads/site_policy.py beyond the pipeline's own tests (tests/workloads/test_job_pipeline.py):
each check of jobs/site-policy.toml at its bounds, and how the policy meets what a job already says."""

from __future__ import annotations

import copy
import tomllib

import pytest

from components.config.settings import Platform
from components.workloads import hcl_document
from components.workloads.site_policy import (
    SITE_POLICY,
    Limit,
    SitePolicyError,
    apply_site_policy,
    load_site_policy,
    parse_site_policy,
)

RAW = tomllib.loads(SITE_POLICY.read_text())
FILE = "jobs/site-policy.toml"


def parsed(change=None):
    raw = copy.deepcopy(RAW)
    (change or (lambda r: None))(raw)
    return parse_site_policy(raw, FILE)


def refused(change) -> str:
    with pytest.raises(SitePolicyError) as raised:
        parsed(change)
    return str(raised.value)


def test_the_projects_policy_is_read_into_its_tiers():
    policy = load_site_policy()
    assert (policy.spread, policy.spread_weight, policy.update) == (
        ("zone", "datacenter"), 100, {"max_parallel": 1, "auto_revert": True}
    )  # fmt: skip
    quality = policy.tiers["quality"]
    assert (quality.name, quality.cpu, quality.memory) == ("quality", Limit(100, 2000), Limit(128, 2048))
    assert (quality.node_classes, quality.node_pool) == (("apps",), "default")
    assert policy.tiers["platform"].node_pool is None and policy.tiers["test"].node_classes == ()


@pytest.mark.parametrize(("resource", "high"), [("cpu", 1_000_000), ("memory", 1_048_576)])
def test_limits_run_from_1_to_their_highest_and_a_default_may_equal_its_max(resource, high):
    def at(default, maximum):
        return lambda raw: raw["tiers"]["test"].update({resource: {"default": default, "max": maximum}})

    assert getattr(parsed(at(1, high)).tiers["test"], resource) == Limit(1, high)
    assert getattr(parsed(at(high, high)).tiers["test"], resource) == Limit(high, high)
    assert f"tiers.test.{resource}.default: 0 — must be an integer from 1 to {high}" in refused(at(0, high))
    assert f"tiers.test.{resource}.max: {high + 1} — must be an integer from 1 to {high}" in refused(at(1, high + 1))
    assert f"tiers.test.{resource}.default: True — must be an integer" in refused(at(True, high))


def test_a_tier_without_its_limits_names_each_table():
    def drop(raw):
        del raw["tiers"]["test"]["cpu"]

    assert "tiers.test.cpu: None — must be a table with default, max" in refused(drop)


@pytest.mark.parametrize(("classes", "shown"), [("apps", "'apps'"), (["a,b"], "['a,b']"), ([""], "['']"), ([7], "[7]")])
def test_node_classes_are_a_list_of_names_without_commas(classes, shown):
    message = refused(lambda raw: raw["tiers"]["quality"].update(node_classes=classes))
    assert f"tiers.quality.node_classes: {shown} — must be a list of node class names (no commas)" in message


@pytest.mark.parametrize(("pool", "shown"), [("", "''"), (5, "5")])
def test_a_node_pool_is_a_name(pool, shown):
    message = refused(lambda raw: raw["tiers"]["quality"].update(node_pool=pool))
    assert f"tiers.quality.node_pool: {shown} — must be a node pool's name" in message


def test_every_missing_tier_and_every_table_that_is_not_one_is_named():
    message = refused(lambda raw: raw.update(update=5, tiers={"quality": RAW["tiers"]["quality"]}))
    assert "update: 5 — must be a table with max_parallel, auto_revert" in message
    for tier in ("production", "test", "platform"):
        assert f"tiers.{tier}: None — is required" in message
    assert "tiers: None — must be a table" in refused(lambda raw: raw.update(tiers=None))


def test_a_policy_file_that_cannot_be_read_or_parsed_is_named(tmp_path):
    with pytest.raises(SitePolicyError, match=r"invalid site policy .*none\.toml \(1 problem\(s\)\):\n  - cannot read"):
        load_site_policy(tmp_path / "none.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[tiers\n")
    with pytest.raises(SitePolicyError, match=r"broken\.toml .*\n  - not valid TOML: "):
        load_site_policy(broken)


POLICY = load_site_policy()
JOB = """job "a" {
  meta {
    tier = "quality"
  }
  group "g" {
    task "t" {
      driver = "docker"
    }
  }
}
"""


def applied(text: str) -> dict:
    document = apply_site_policy(hcl_document.parse(text), POLICY, Platform.LIBVIRT)
    return {label: job for label, job in hcl_document.labelled_blocks(document, "job")}


def test_a_job_without_a_type_is_a_service_and_meta_may_be_an_attribute():
    (job,) = applied(JOB.replace('  meta {\n    tier = "quality"\n  }', '  meta = { tier = "quality" }')).values()
    assert job["update"] == [{"max_parallel": 1, "auto_revert": True, "__is_block__": True}], "Nomad's default type"
    assert job["node_pool"] == '"default"' and len(job["spread"]) == 2


def test_what_a_job_places_itself_is_kept_and_a_constraint_not_doubled():
    text = JOB.replace(
        '  group "g" {',
        '  node_pool = "batch"\n  constraint {\n    attribute = "${node.class}"\n    operator  = "set_contains_any"\n'
        '    value     = "apps"\n  }\n  group "g" {\n    spread {\n      attribute = "${node.unique.name}"\n    }',
    )
    (job,) = applied(text).values()
    assert job["node_pool"] == '"batch"' and len(job["constraint"]) == 1
    assert "spread" not in job, "the group spreads itself"


def test_each_job_of_a_document_gets_its_own_tiers_policy():
    other = JOB.replace('job "a"', 'job "b"').replace('tier = "quality"', 'tier = "gold"')
    jobs = applied(other + JOB)
    assert "spread" not in jobs["b"] and len(jobs["a"]["spread"]) == 2, "an unknown tier first stops nothing"


def test_without_spread_or_update_tables_nothing_is_spread_or_defaulted():
    policy = parsed(lambda raw: (raw.pop("spread"), raw.pop("update")))
    assert (policy.spread, policy.spread_weight, policy.update) == ((), 100, {})
    weightless = parsed(lambda raw: raw["spread"].pop("weight"))
    assert weightless.spread == ("zone", "datacenter") and weightless.spread_weight == 100, "Nomad's most"


def test_a_tier_of_several_node_classes_is_constrained_to_any_of_them():
    policy = parsed(lambda raw: raw["tiers"]["quality"].update(node_classes=["apps", "batch"]))
    document = apply_site_policy(hcl_document.parse(JOB), policy, Platform.LIBVIRT)
    ((_, job),) = hcl_document.labelled_blocks(document, "job")
    assert job["constraint"][0]["value"] == '"apps,batch"'


def test_the_error_keeps_every_problem():
    with pytest.raises(SitePolicyError) as raised:
        parsed(lambda raw: raw.update(colour=1, size=2))
    assert len(raised.value.problems) == 2 and "(2 problem(s))" in str(raised.value)


def test_node_classes_and_node_pool_may_be_left_out():
    tier = parsed(lambda raw: raw["tiers"]["test"].pop("node_classes")).tiers["test"]
    assert tier.node_classes == () and tier.node_pool == "default"
