"""Inputs as the dynamic providers' `check` and `diff` receive them.

During a preview, an input that is not known yet (the address of a machine still to be created)
reaches `check` and `diff` as `pulumi.output.Unknown` (pulumi/dynamic/__main__.py deserialises with
keep_unknowns), an object that is truthy and equal only to itself. `check` and `diff` must accept it,
and must not act on the outside world: they run on every preview.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pulumi.output import Unknown


def is_known(value: Any) -> bool:
    """False when `value` is, or holds anywhere inside it, a value unknown until `up`."""
    if isinstance(value, Unknown):
        return False
    if isinstance(value, Mapping):
        return all(is_known(v) for v in value.values())
    if isinstance(value, list | tuple):
        return all(is_known(v) for v in value)
    return True


def changed_keys(olds: Mapping[str, Any], news: Mapping[str, Any], keys: Iterable[str]) -> list[str]:
    """The `keys` whose new value differs from the old one. A value not known yet counts as changed
    (it may be): Unknown equals only itself, so it never compares equal to a stored value."""
    return [k for k in keys if olds.get(k) != news.get(k)]
