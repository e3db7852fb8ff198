"""How versions compare, and where a server's report says which one it runs (tests/upstream.py:
autopilot health's "Version" for Consul and Nomad, sys/health's "version" for Vault)."""

from __future__ import annotations

import pytest

from components.rollout.versions import newer_than, release, reported_version


@pytest.mark.parametrize(
    ("text", "parsed"),
    [("2.0.7", (2, 0, 7)), ("2.1.1+ent", (2, 1, 1)), ("v2.0.4-dev", (2, 0, 4)), (" 10.20.30 ", (10, 20, 30))],
)
def test_a_release_is_read_as_the_products_print_it(text, parsed):
    assert release(text) == parsed


@pytest.mark.parametrize("text", ["", "2.0", "latest", "x2.0.7"])
def test_an_unreadable_version_is_no_release(text):
    assert release(text) is None


def test_versions_compare_by_number_not_by_text():
    assert newer_than("2.0.10", "2.0.9") and not newer_than("2.0.9", "2.0.10")
    assert newer_than("2.1.0", "2.0.99") and newer_than("3.0.0", "2.9.9")
    assert not newer_than("2.0.7", "2.0.7")
    assert not newer_than("latest", "2.0.7") and not newer_than("2.0.7", "latest")


def test_a_report_gives_its_version_from_either_field():
    assert reported_version({"Version": "2.0.7"}) == "2.0.7"  # Consul, Nomad autopilot health
    assert reported_version({"version": "2.1.1"}) == "2.1.1"  # Vault sys/health
    assert reported_version({"Version": "2.0.7", "version": "1.0.0"}) == "2.0.7"
    for unreadable in (None, {}, {"Version": ""}, {"version": 2}, {"Version": "dev"}):
        assert reported_version(unreadable) is None
