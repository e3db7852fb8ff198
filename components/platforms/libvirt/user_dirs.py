"""The operator's own directories, by the XDG Base Directory Specification: a variable's value when it
is an absolute path (the spec calls a relative one invalid, to be ignored), else its default under
HOME. The base image cache (components/platforms/libvirt/base_image.py) and the consoles' logs
(components/platforms/libvirt/stylesheets.py) live there."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path


def user_dir(variable: str, default: str, environ: Mapping[str, str] | None = None) -> Path:
    """$`variable` when absolute, else $HOME/`default` (the user's home when HOME is unset)."""
    environ = os.environ if environ is None else environ
    value = environ.get(variable) or ""
    if value.startswith("/"):
        return Path(value)
    return Path(environ.get("HOME") or Path.home()) / default
