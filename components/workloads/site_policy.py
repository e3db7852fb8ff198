"""The site policy (seed 001's "modifier"): jobs/site-policy.toml, applied to every job, rendered from a
short definition or written by hand, before the rules check it, so that what Nomad receives, and what the
PR preview's diff shows, is the job with the policy in it.

What it does to a job, by the job's tier (its `meta.tier`; a job without one is of tier "platform"):
  * spreads a service or batch job's allocations over the attributes in [spread] (Nomad refuses a
    spread in a system job: "System jobs may not have a spread block", Job.Validate and
    TaskGroup.Validate in nomad/structs/structs.go@v2.0.5), unless the job spreads itself;
  * gives a service job the [update] defaults it does not set (max_parallel, auto_revert);
  * gives each task the tier's default cpu and memory when it asks for none, and refuses (the rule
    "resources-within-tier") a task that asks for more than the tier's maximum: never cut silently;
  * keeps the tier's jobs on nodes of its node classes (a constraint on ${node.class}) and in its node pool.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components import CHECKOUT
from components.config.settings import Platform
from components.workloads.definitions import TIERS
from components.workloads.hcl_document import (
    Document,
    add_block,
    blocks,
    labelled_blocks,
    string,
    unquote,
)
from components.workloads.job_model import JobError, _display, _one
from components.workloads.rule_framework import JobContext, Rule, Scope

SITE_POLICY = CHECKOUT / "jobs" / "site-policy.toml"
PLATFORM_TIER = "platform"
"""The tier of a job that names none: the platform's own, hand-written jobs."""
SPREAD_ATTRIBUTES: dict[str, dict[Platform, str]] = {
    # Nomad's AWS fingerprint publishes the instance's zone as platform.aws.placement.availability-zone
    # (client/fingerprint/env_aws.go@v2.0.5: the keys table, then "platform.aws."+key). A libvirt
    # node has no such fingerprint: the program gives its clients `meta.zone` (cloudinit/nomad.hcl.j2).
    "zone": {
        Platform.AWS: "${attr.platform.aws.placement.availability-zone}",
        Platform.LIBVIRT: "${meta.zone}",
    },
    "datacenter": {Platform.AWS: "${node.datacenter}", Platform.LIBVIRT: "${node.datacenter}"},
}
NODE_CLASS_ATTRIBUTE = "${node.class}"
# set_contains_any splits both sides at commas and passes when any value matches
# (checkSetContainsAny, scheduler/feasible/feasible.go@v2.0.5).
NODE_CLASS_OPERATOR = "set_contains_any"
SPREAD_JOB_TYPES = ("service", "batch")


class SitePolicyError(JobError):
    """A site policy file that cannot be used: every problem, each with the key and what is allowed."""

    def __init__(self, file: str, problems: list[str]):
        self.problems = tuple(problems)
        super().__init__(
            f"invalid site policy {file} ({len(problems)} problem(s)):\n" + "\n".join(f"  - {p}" for p in problems)
        )


@dataclass(frozen=True)
class Limit:
    default: int
    maximum: int


@dataclass(frozen=True)
class Tier:
    name: str
    cpu: Limit
    memory: Limit
    node_classes: tuple[str, ...]
    node_pool: str | None


@dataclass(frozen=True)
class SitePolicy:
    file: str
    spread: tuple[str, ...]
    """Names of SPREAD_ATTRIBUTES."""
    spread_weight: int
    update: dict[str, Any]
    """max_parallel and auto_revert, as given."""
    tiers: dict[str, Tier]


_TOP = ("spread", "update", "tiers")
_UPDATE = {"max_parallel": int, "auto_revert": bool}
_TIER_KEYS = ("cpu", "memory", "node_classes", "node_pool")


def load_site_policy(path: Path = SITE_POLICY) -> SitePolicy:
    file = _display(path)
    try:
        raw = tomllib.loads(path.read_text())
    except OSError as error:
        raise SitePolicyError(file, [f"cannot read: {error.strerror}"]) from error
    except tomllib.TOMLDecodeError as error:
        raise SitePolicyError(file, [f"not valid TOML: {error}"]) from error
    return parse_site_policy(raw, file)


def parse_site_policy(raw: Mapping[str, Any], file: str) -> SitePolicy:
    problems: list[str] = []

    def problem(key: str, value: Any, allowed: str) -> None:
        problems.append(f"{key}: {value!r} — {allowed}")

    def table(key: str, value: Any, allowed: tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(value, dict):
            problem(key, value, f"must be a table with {', '.join(allowed)}")
            return {}
        for name in value:
            if name not in allowed:
                problem(f"{key}.{name}", value[name], f"is not a key here; allowed: {', '.join(allowed)}")
        return value

    def positive(key: str, value: Any, high: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
            problem(key, value, f"must be an integer from 1 to {high}")
            return 1
        return value

    table("", dict(raw), _TOP)
    spread = table("spread", raw.get("spread", {}), ("attributes", "weight"))
    attributes = spread.get("attributes", [])
    if not (isinstance(attributes, list) and all(a in SPREAD_ATTRIBUTES for a in attributes)):
        problem("spread.attributes", attributes, f"must be a list of {', '.join(SPREAD_ATTRIBUTES)}")
        attributes = []
    # Nomad: "Spread block must have a positive weight from 0 to 100" (Spread.Validate, structs.go@v2.0.5).
    weight = positive("spread.weight", spread.get("weight", 100), 100)

    update = table("update", raw.get("update", {}), tuple(_UPDATE))
    for key, kind in _UPDATE.items():
        if key in update and (not isinstance(update[key], kind) or (kind is int and isinstance(update[key], bool))):
            problem(f"update.{key}", update[key], f"must be {'an integer' if kind is int else 'true or false'}")
    if isinstance(update.get("max_parallel"), int) and update["max_parallel"] < 1:
        problem("update.max_parallel", update["max_parallel"], "must be at least 1 (0 stops rolling updates)")

    tiers: dict[str, Tier] = {}
    given = table("tiers", raw.get("tiers", {}), (*TIERS, PLATFORM_TIER))
    for name in (*TIERS, PLATFORM_TIER):
        if name not in given:
            problem(f"tiers.{name}", None, "is required: every tier needs its limits")
            continue
        tier = table(f"tiers.{name}", given[name], _TIER_KEYS)
        limits = {}
        for resource, high in (("cpu", 1_000_000), ("memory", 1_048_576)):
            limit = table(f"tiers.{name}.{resource}", tier.get(resource), ("default", "max"))
            default = positive(f"tiers.{name}.{resource}.default", limit.get("default"), high)
            maximum = positive(f"tiers.{name}.{resource}.max", limit.get("max"), high)
            if default > maximum:
                problem(f"tiers.{name}.{resource}.default", default, f"must not be above its max ({maximum})")
            limits[resource] = Limit(default, maximum)
        classes = tier.get("node_classes", [])
        if not (isinstance(classes, list) and all(isinstance(c, str) and c and "," not in c for c in classes)):
            problem(f"tiers.{name}.node_classes", classes, "must be a list of node class names (no commas)")
            classes = []
        pool = tier.get("node_pool")
        if pool is not None and not (isinstance(pool, str) and pool):
            problem(f"tiers.{name}.node_pool", pool, "must be a node pool's name")
            pool = None
        tiers[name] = Tier(name, limits["cpu"], limits["memory"], tuple(classes), pool)
    if problems:
        raise SitePolicyError(file, problems)
    return SitePolicy(file, tuple(attributes), weight, dict(update), tiers)


# -- applying it -----------------------------------------------------------------------------------------
def job_tier(meta: Mapping[str, Any] | None) -> str:
    """A job's tier from its (resolved) meta: `meta.tier`, else "platform"."""
    tier = (meta or {}).get("tier")
    return tier if isinstance(tier, str) else PLATFORM_TIER


def _meta(job: Mapping[str, Any]) -> dict[str, Any]:
    """A job document's meta (block or attribute), values unquoted."""
    meta: dict[str, Any] = {}
    for element in blocks(job, "meta"):
        meta.update(element)
    if isinstance(job.get("meta"), dict):
        meta.update(job["meta"])
    return {unquote(k): unquote(v) for k, v in meta.items() if not k.startswith("__")}


def apply_site_policy(document: Document, policy: SitePolicy, platform: Platform) -> Document:
    """Applies the policy to every job of a jobspec document, in place; returns the document. A job of
    a tier the policy does not know is left as it is: the rule "tier-known" reports it."""
    for _, job in labelled_blocks(document, "job"):
        tier = policy.tiers.get(job_tier(_meta(job)))
        if tier is None:
            continue
        job_type = unquote(job.get("type", '"service"'))
        groups = [body for _, body in labelled_blocks(job, "group")]
        if job_type in SPREAD_JOB_TYPES and not blocks(job, "spread") and not any(blocks(g, "spread") for g in groups):
            for name in policy.spread:
                add_block(
                    job,
                    "spread",
                    {"attribute": string(SPREAD_ATTRIBUTES[name][platform]), "weight": policy.spread_weight},
                )
        if job_type == "service" and policy.update:
            update = blocks(job, "update")
            target = update[0] if update else add_block(job, "update", {})
            for key, value in policy.update.items():
                target.setdefault(key, value)
        if tier.node_classes:
            value = ",".join(tier.node_classes)
            wanted = {
                "attribute": string(NODE_CLASS_ATTRIBUTE),
                "operator": string(NODE_CLASS_OPERATOR),
                "value": string(value),
            }
            present = [{k: v for k, v in c.items() if not k.startswith("__")} for c in blocks(job, "constraint")]
            if wanted not in present:
                add_block(job, "constraint", wanted)
        if tier.node_pool and "node_pool" not in job:
            job["node_pool"] = string(tier.node_pool)
        for group in groups:
            for _, task in labelled_blocks(group, "task"):
                resources = blocks(task, "resources")
                target = resources[0] if resources else add_block(task, "resources", {})
                target.setdefault("cpu", tier.cpu.default)
                target.setdefault("memory", tier.memory.default)
    return document


# -- the rules it adds -------------------------------------------------------------------------------------
def policy_rules(policy: SitePolicy) -> tuple[Rule, ...]:
    """The rules that hold a job to the policy's tiers: its tier is known, and no task asks for more
    than the tier allows."""

    def tier_known(ctx: JobContext) -> str | None:
        tier = job_tier(_one(ctx.job.raw, "meta"))
        if tier in policy.tiers:
            return None
        return f'meta.tier "{tier}" is not a tier of {policy.file} ({", ".join(policy.tiers)})'

    def resources_within_tier(ctx: JobContext) -> str | None:
        task = ctx.task
        assert task is not None
        tier = policy.tiers.get(job_tier(_one(ctx.job.raw, "meta")))
        if tier is None:
            return None
        problems = []
        for resource, unit, limit in (("cpu", "MHz", tier.cpu), ("memory", "MiB", tier.memory)):
            asked = (task.resources or {}).get(resource)
            if isinstance(asked, int) and not isinstance(asked, bool) and asked > limit.maximum:
                problems.append(
                    f"{resource} = {asked} {unit} is above the {tier.name} tier's maximum of {limit.maximum} {unit}"
                    f" ({policy.file} tiers.{tier.name}.{resource}.max)"
                )
        return "; ".join(problems) or None

    return (
        Rule("tier-known", "the job's meta.tier is a tier of the site policy", Scope.JOB, tier_known),
        Rule(
            "resources-within-tier",
            "no task asks for more cpu or memory than its tier's maximum (refused, never cut)",
            Scope.TASK,
            resources_within_tier,
        ),
    )
