"""Inputs as the dynamic providers' check and diff receive them in a preview: unknown ones included."""

from __future__ import annotations

import pytest
from pulumi.output import Unknown

from components.dynamic.inputs import changed_keys, is_known


@pytest.mark.parametrize(
    ("value", "known"),
    [
        ("https://10.0.0.1:8200", True),
        (["a", "b"], True),
        ({"a": ["b", {"c": "d"}]}, True),
        (None, True),
        (Unknown(), False),
        (["a", Unknown()], False),
        (("a", Unknown()), False),
        ({"a": Unknown()}, False),
        ({"a": [{"b": Unknown()}]}, False),
    ],
)
def test_is_known_looks_inside_lists_and_maps(value, known):
    assert is_known(value) is known


def test_an_unknown_value_always_counts_as_changed():
    olds = {"machine": "m-1", "address": "a", "keys": ["k"]}
    news = {"machine": Unknown(), "address": "a", "keys": [Unknown()]}
    assert changed_keys(olds, news, ("machine", "address", "keys")) == ["machine", "keys"]
    assert changed_keys(olds, dict(olds), ("machine", "address")) == []
    assert changed_keys(olds, {**olds, "address": "b"}, ("address", "absent")) == ["address"]
