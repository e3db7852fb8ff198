"""A stack's configuration read from the files, as the engine assembles it, for tools and tests that
run without the Pulumi CLI: Pulumi.yaml's schema defaults, then Pulumi.<stack>.yaml."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import yaml

from components.config.reading import parse_settings
from components.config.settings import PROJECT, Settings

ROOT = Path(__file__).resolve().parent.parent


def project_file() -> dict:
    return yaml.safe_load((ROOT / "Pulumi.yaml").read_text())


def stacks() -> list[str]:
    return sorted(p.name.split(".")[1] for p in ROOT.glob("Pulumi.*.yaml"))


def _encode(value: Any) -> str:
    """Config values reach the program as strings; arrays and objects as JSON, like the engine sends them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def stack_config(stack: str, overrides: dict[str, Any] | None = None) -> dict[str, str]:
    """Full keys (`hashistack:serverCount`) -> raw values; `overrides` may use short keys, None removes."""
    prefix = f"{PROJECT}:"
    config = {
        prefix + key: _encode(spec["default"]) for key, spec in project_file()["config"].items() if "default" in spec
    }
    stack_path = ROOT / f"Pulumi.{stack}.yaml"
    if not stack_path.is_file():
        raise SystemExit(f"no stack file {stack_path.name}; stacks: {', '.join(stacks())}")
    stack_file = yaml.safe_load(stack_path.read_text()) or {}
    config.update({key: _encode(value) for key, value in (stack_file.get("config") or {}).items()})
    for key, value in (overrides or {}).items():
        full = key if ":" in key else prefix + key
        if value is None:
            config.pop(full, None)
        else:
            config[full] = _encode(value)
    return config


def stack_settings(stack: str, overrides: dict[str, Any] | None = None, preview: bool = True) -> Settings:
    """Validated Settings of a stack from its files (raises SettingsError like the program would)."""
    config = stack_config(stack, overrides)
    prefix = f"{PROJECT}:"
    return parse_settings(
        lambda key: config.get(key if ":" in key else prefix + key),
        stack=stack,
        config_keys=frozenset(k[len(prefix) :] for k in config if k.startswith(prefix)),
        preview=preview,
    )


def pulumi_json(stack: str, *command: str) -> dict:
    """The JSON a `pulumi` command prints for a deployed stack, run through scripts/pulumi.sh (its
    backend, passphrase and stack defaults); a failure stops the calling tool with pulumi's message."""
    result = subprocess.run([str(ROOT / "scripts" / "pulumi.sh"), stack, *command], capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"`pulumi {' '.join(command)}` failed:\n{result.stderr}")
    return json.loads(result.stdout)


def stack_outputs(stack: str) -> dict:
    """The stack's outputs, secrets included."""
    return pulumi_json(stack, "stack", "output", "--json", "--show-secrets")
