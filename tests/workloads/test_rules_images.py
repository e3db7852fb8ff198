"""The image rule's helpers (components/workloads/rules/images.py): which references are pinned, and
repositories compared in Docker's canonical form."""

from __future__ import annotations

from test_job_rules import DIGEST, job_hcl, write
from test_jobs import ALLOWED

from components.workloads.job_model import load_job
from components.workloads.job_rules import check_job
from components.workloads.rules import images
from components.workloads.rules.images import image_problem, image_repository


def test_image_references():
    assert image_problem("traefik:v3.4.3") is None
    assert image_problem(f"docker.io/library/nginx:1.27.0@{DIGEST}") is None
    assert image_problem(f"nginx@{DIGEST}") is None
    assert image_problem(f"nginx:1.27@{DIGEST}") is None, "Nomad pulls by the digest, whatever the tag"
    assert "malformed digest" in image_problem("nginx@sha256:abc")
    assert "malformed digest" in image_problem(f"nginx@sha512:{'ab' * 64}")
    assert "pin an exact version tag" in image_problem("nginx:stable")
    assert "pin an exact version tag" in image_problem("nginx:LATEST")
    assert "expression" in image_problem("${var.image}")
    assert "is not a string" in image_problem(None) and "is not a string" in image_problem("")
    for pinned in (
        "nginx:1.27.0",
        "grafana/grafana:12.1.0-ubuntu",
        "prom/prometheus:v3.5.0",
        "x:1.2.3.4",
        "x:10.0.0_1",
    ):
        assert image_problem(pinned) is None, pinned
    for moving in ("traefik:v3", "grafana/grafana:12", "nginx:1.27", "nginx:1", "x:1.2.3-", "x:20240101", "x:v1.2"):
        assert "is not a full version" in image_problem(moving), moving
    for invalid in ("Nginx:1.2.3", "nginx:1.2.3+build", "nginx:-1.2.3", "nginx::1.2.3"):
        assert "is not a valid image reference" in image_problem(invalid), invalid


def test_image_repositories_are_compared_in_canonical_form():
    """distribution/reference normalize.go@v0.6.0 splitDockerDomain, the parser Nomad's docker driver uses."""
    for familiar in ("nginx", "library/nginx", "docker.io/nginx", "docker.io/library/nginx", "index.docker.io/nginx"):
        assert image_repository(familiar) == "docker.io/library/nginx", familiar
    assert image_repository("grafana/grafana") == "docker.io/grafana/grafana"
    assert image_repository("ghcr.io/org/app") == "ghcr.io/org/app"
    assert image_repository("localhost/app") == "localhost/app"
    assert image_repository("registry.local:5000/app") == "registry.local:5000/app"
    assert image_repository("Registry/app") == "Registry/app", "an uppercase first component is a domain"


def test_unversioned_images_may_use_another_tag_but_never_a_floating_one():
    allowlist = {"hashicorpdev/counter-api": "publishes v-tags only"}
    assert image_problem("hashicorpdev/counter-api:v3", allowlist) is None
    assert image_problem("docker.io/hashicorpdev/counter-api:v3", allowlist) is None
    assert "is not a full version" in image_problem("hashicorpdev/counter-dashboard:v3", allowlist)
    assert "pin an exact version tag" in image_problem("hashicorpdev/counter-api:latest", allowlist)
    assert "has no tag" in image_problem("hashicorpdev/counter-api", allowlist)


def test_the_rule_reads_the_module_allowlist(tmp_path, monkeypatch):
    path = write(tmp_path, job_hcl(config='image = "example/demo-api:v3"'))
    assert [v.rule for v in check_job(load_job(path), ALLOWED)] == ["images-pinned"]
    monkeypatch.setitem(images.UNVERSIONED_IMAGES, "example/demo-api", "publishes v-tags only")
    assert check_job(load_job(path), ALLOWED) == []
    # The shipped demo's images are listed, each with its reason.
    assert set(images.UNVERSIONED_IMAGES) >= {"hashicorpdev/counter-api", "hashicorpdev/counter-dashboard"}
