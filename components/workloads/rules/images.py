"""The job rule "images-pinned": a container image carries a full version tag or a digest, as Nomad's
docker driver parses image references; another tag only for a repository in UNVERSIONED_IMAGES."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from components.workloads.job_model import _is_expression
from components.workloads.rule_framework import JobContext, Rule, Scope

# Tags that move by name: the image behind them changes without the job changing.
FLOATING_TAGS = frozenset({"latest", "stable", "edge", "nightly", "main", "master"})
# A pinned tag: a full version, MAJOR.MINOR.PATCH with an optional leading "v", optionally followed by
# a suffix that starts with "-", "_" or "." (`1.27.0-alpine`, `12.1.0-ubuntu`, `v3.4.3`, `1.2.3.4`).
# `v3`, `12` and `1.27` are not: each moves to the next patch (or minor) release. A "+build" suffix
# cannot occur: "+" is not in a Docker tag (`[\w][\w.-]{0,127}`, distribution/reference
# regexp.go@v0.6.0, the grammar Nomad parses images with), so such a reference is reported as invalid.
_PINNED_TAG = re.compile(r"v?[0-9]+\.[0-9]+\.[0-9]+(?:[-_.][\w.-]+)?", re.ASCII)
# Image repositories that may use a tag which is not a full version (still never a FLOATING_TAGS
# name), each with the reason: images whose publisher makes no version tags, so that only a digest
# would otherwise do. Keys as written in jobs ("nginx", "ghcr.io/org/app"); they are compared in
# Docker's canonical form, so "nginx" also covers "docker.io/library/nginx".
UNVERSIONED_IMAGES: dict[str, str] = {
    # HashiCorp's Connect demo (jobs/countdash.nomad.hcl): tagged only v1, v2, v3 (and -amd64/-arm64
    # variants); Nomad's own example runs ":v3" (command/asset/connect.nomad.hcl at v2.0.5). A
    # production job pins a digest instead (image = "repo@sha256:...").
    "hashicorpdev/counter-api": "publishes only major-version tags (v1, v2, v3)",
    "hashicorpdev/counter-dashboard": "publishes only major-version tags (v1, v2, v3)",
}
# Drivers whose `config.image` is a container image reference.
IMAGE_DRIVERS = frozenset({"docker", "podman", "containerd-driver"})


# -- images --------------------------------------------------------------------------------------------------
# distribution/reference regexp.go@v0.6.0 (Nomad v2.0.5's go.mod), which drivers/docker/utils.go@v2.0.5
# parseDockerImage matches images against: an image it does not match is rejected by the driver.
_REF_ALNUM = r"[a-z0-9]+"
_REF_SEPARATOR = r"(?:[._]|__|[-]+)"
_REF_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_REF_DOMAIN = rf"(?:{_REF_DOMAIN_COMPONENT}(?:\.{_REF_DOMAIN_COMPONENT})*|\[(?:[a-fA-F0-9:]+)\])(?::[0-9]+)?"
_REF_PATH_COMPONENT = rf"{_REF_ALNUM}(?:{_REF_SEPARATOR}{_REF_ALNUM})*"
_REF_NAME = rf"(?:{_REF_DOMAIN}/)?{_REF_PATH_COMPONENT}(?:/{_REF_PATH_COMPONENT})*"
_REF_TAG = r"[\w][\w.-]{0,127}"
_REF_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][0-9a-fA-F]{32,}"
_IMAGE_REFERENCE = re.compile(rf"({_REF_NAME})(?::({_REF_TAG}))?(?:@({_REF_DIGEST}))?", re.ASCII)


def image_repository(name: str) -> str:
    """A repository name in Docker's canonical form (`nginx` -> `docker.io/library/nginx`), as
    splitDockerDomain in distribution/reference normalize.go@v0.6.0 makes it."""
    domain, slash, rest = name.partition("/")
    if not slash:
        return f"docker.io/library/{name}"
    if domain == "index.docker.io":
        domain = "docker.io"
    elif not (domain == "localhost" or any(c in domain for c in ".:") or domain.lower() != domain):
        domain, rest = "docker.io", name
    if domain == "docker.io" and "/" not in rest:
        rest = f"library/{rest}"
    return f"{domain}/{rest}"


def image_problem(image: Any, unversioned: Mapping[str, str] | None = None) -> str | None:
    """Why an image reference is not pinned, or None. Pinned: a digest (`@sha256:<64 hex>`, which
    Nomad pulls by whatever the tag), or a full version tag (`_PINNED_TAG`). A repository named in
    `unversioned` (UNVERSIONED_IMAGES by default) may use another tag, never a FLOATING_TAGS one."""
    unversioned = UNVERSIONED_IMAGES if unversioned is None else unversioned
    if not isinstance(image, str) or not image:
        return f"image {image!r} is not a string — pin an exact version tag"
    if _is_expression(image):
        return f'image "{image}" is an expression the validator cannot resolve — use a variable with a default'
    if "@" in image and not re.fullmatch(r"sha256:[0-9a-f]{64}", image.split("@", 1)[1]):
        return f'image "{image}" has a malformed digest — use @sha256:<64 hex digits>'
    reference = _IMAGE_REFERENCE.fullmatch(image)
    if reference is None:
        return (
            f'image "{image}" is not a valid image reference (Nomad\'s docker driver rejects it): a lowercase'
            " repository, then :<tag> of letters, digits, '_', '.' or '-', or @sha256:<digest>"
        )
    name, tag, digest = reference.groups()
    if digest is not None:  # sha256:<64 hex>, checked above
        return None
    if tag is None:
        return f'image "{image}" has no tag (Nomad would pull "latest") — pin an exact version tag'
    if tag.lower() in FLOATING_TAGS:
        return f'image "{image}" — pin an exact version tag'
    if _PINNED_TAG.fullmatch(tag):
        return None
    if image_repository(name) in {image_repository(key) for key in unversioned}:
        return None
    return (
        f'image "{image}": tag "{tag}" is not a full version, so the image behind it moves — pin MAJOR.MINOR.PATCH'
        ' (an optional leading "v" and a suffix such as "-alpine") or a digest (@sha256:...), or add the repository'
        " to UNVERSIONED_IMAGES in components/workloads/rules/images.py with the reason it has no version tags"
    )


def _images_pinned(ctx: JobContext) -> str | None:
    task = ctx.task
    assert task is not None
    if task.driver not in IMAGE_DRIVERS and "image" not in task.config:
        return None
    return image_problem(task.image)


IMAGES_PINNED = Rule(
    "images-pinned",
    "container images carry a full version tag (MAJOR.MINOR.PATCH, optional leading v and -suffix) or a"
    " sha256 digest; another tag only for a repository in UNVERSIONED_IMAGES, never latest",
    Scope.TASK,
    _images_pinned,
)
