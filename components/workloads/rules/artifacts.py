"""The job rule "artifacts-checksummed": every artifact a task downloads is pinned by a sha256 or
sha512 checksum, in its options or its URL, as go-getter and Nomad read it."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

from components.workloads.job_model import _is_expression, _one
from components.workloads.rule_framework import JobContext, Rule, Scope

# Checksum types that pin an artifact: go-getter and Nomad also take md5 and sha1 (checksum.go@v1.8.8,
# TaskArtifact.validateChecksum in nomad/structs/structs.go@v2.0.5), whose collisions can be made.
ARTIFACT_CHECKSUM_HEX_DIGITS = {"sha256": 64, "sha512": 128}


# -- artifacts -----------------------------------------------------------------------------------------------------
def checksum_problem(checksum: Any, *, in_url: bool) -> str | None:
    """Why an artifact checksum does not pin the download, or None. "sha256:<64 hex>" or
    "sha512:<128 hex>"; in the URL, go-getter also takes the hex alone and tells the type by its
    length (extractChecksum, newChecksumFromValue: checksum.go@v1.8.8). A value Nomad interpolates at
    run time passes, as Nomad lets it (TaskArtifact.validateChecksum, nomad/structs/structs.go@v2.0.5)."""
    if not isinstance(checksum, str):
        return f"checksum {checksum!r} is not a string"
    if _is_expression(checksum):
        return None
    value = checksum.strip()
    kind, separator, digest = value.partition(":")
    if not separator:
        if in_url and re.fullmatch(r"[0-9a-fA-F]{64}|[0-9a-fA-F]{128}", value):
            return None
        return f'checksum "{checksum}" is not "<type>:<hex>"'
    if kind == "file":
        return f'checksum "{checksum}" is fetched from a URL at download time, so it pins nothing in the job'
    if kind not in ARTIFACT_CHECKSUM_HEX_DIGITS:
        return f'checksum type "{kind}" — use sha256 or sha512 (md5 and sha1 collisions can be made)'
    digits = ARTIFACT_CHECKSUM_HEX_DIGITS[kind]
    if not re.fullmatch(rf"[0-9a-fA-F]{{{digits}}}", digest):
        return f'checksum "{checksum}" is not a {kind} digest ({digits} hex digits)'
    return None


def artifact_problem(artifact: Mapping[str, Any]) -> str | None:
    """Why an artifact is not pinned, or None. Its checksum is options.checksum, else the source
    URL's `checksum` parameter: Nomad sets each option as a query parameter of the URL, over one of
    the same name (getURL, client/allocrunner/taskrunner/getter/util.go@v2.0.5)."""
    source = artifact.get("source", "?")
    options = _one(artifact, "options") or {}
    if "checksum" in options:
        problem = checksum_problem(options["checksum"], in_url=False)
        where = "options.checksum"
    else:
        query = parse_qs(urlsplit(source).query) if isinstance(source, str) else {}
        if "checksum" not in query:
            return (
                f'artifact {source} has no checksum — pin it with options {{ checksum = "sha256:..." }} or'
                " ?checksum=sha256:... in its URL"
            )
        problem = checksum_problem(query["checksum"][0], in_url=True)  # url.Values.Get: the first
        where = "the URL's checksum parameter"
    return f"artifact {source}: {where}: {problem}" if problem else None


def _artifacts_checksummed(ctx: JobContext) -> str | None:
    task = ctx.task
    assert task is not None
    problems = [problem for problem in map(artifact_problem, task.artifacts) if problem]
    return "; ".join(problems) or None


ARTIFACTS_CHECKSUMMED = Rule(
    "artifacts-checksummed",
    "every artifact is pinned with a sha256 or sha512 checksum (options.checksum or ?checksum= in its URL)",
    Scope.TASK,
    _artifacts_checksummed,
)
