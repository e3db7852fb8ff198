"""The versions the servers run, as their APIs report them, and how two versions compare.

Consul, Nomad and Vault keep raft data that a newer version may have written in a form an older
one cannot read (docs/operations.md, Upgrading: downgrades are not supported), so the roll refuses
a version older than one a server runs (components/rollout/server_handover.py). Where each product
reports its version is in tests/upstream.py, with its source.
"""

from __future__ import annotations

import re
from typing import Any

VERSION_KEYS = {"consul": "consulVersion", "nomad": "nomadVersion", "vault": "vaultVersion"}
"""Product -> the stack setting that pins it."""
_RELEASE = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)")


def release(version: str) -> tuple[int, int, int] | None:
    """MAJOR.MINOR.PATCH of a version as the products print it ("2.0.7", "2.1.1+ent", "v2.0.4-dev")."""
    match = _RELEASE.match(version.strip())
    return (int(match[1]), int(match[2]), int(match[3])) if match else None


def newer_than(version: str, other: str) -> bool:
    """True when `version` is a later release than `other` (either unreadable: False)."""
    ours, theirs = release(version), release(other)
    return ours is not None and theirs is not None and ours > theirs


def reported_version(report: dict[str, Any] | None) -> str | None:
    """The version in one server's report: autopilot health's "Version" (Consul, Nomad) or sys/health's
    "version" (Vault); None when it does not say."""
    version = (report or {}).get("Version", (report or {}).get("version"))
    return version if isinstance(version, str) and release(version) else None
