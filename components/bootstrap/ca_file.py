"""CaFile: the cluster CA as a local file, for the Vault provider, which reads its CA from a file only."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pulumi.dynamic

from components.dynamic.inputs import changed_keys, is_known
from components.dynamic.typed import TypedResource


class _CaFileProvider(pulumi.dynamic.ResourceProvider):
    """A local file holding the CA, for the Vault provider, which reads its CA from a file only.

    `check` and `diff` only look (they run on every preview); the file is written by create and
    update, and by `write_ca_file` in the program (Bootstrap), which a preview needs too.
    """

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.CheckResult:
        failures = [
            pulumi.dynamic.CheckFailure(key, f"{key} must be a string, not {type(news.get(key)).__name__}")
            for key in ("path", "content")
            if is_known(news.get(key)) and not isinstance(news.get(key), str)
        ]
        return pulumi.dynamic.CheckResult(news, failures)

    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        write_ca_file(props["path"], props["content"])
        return pulumi.dynamic.CreateResult(id_=props["path"], outs=props)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.DiffResult:
        replaces = changed_keys(olds, news, ("path",))
        # A fresh checkout has the state but not the file: an update writes it back.
        missing = is_known(news.get("path")) and not Path(news["path"]).is_file()
        changed = bool(replaces or missing or changed_keys(olds, news, ("content",)))
        return pulumi.dynamic.DiffResult(changes=changed, replaces=replaces, delete_before_replace=False)

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.UpdateResult:
        write_ca_file(news["path"], news["content"])
        return pulumi.dynamic.UpdateResult(outs=news)

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        Path(props["path"]).unlink(missing_ok=True)


def write_ca_file(path: str, content: str) -> str:
    """Writes the (public) CA certificate where the Vault provider reads it; idempotent."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.is_file() or target.read_text() != content:
        target.write_text(content)
    return path


@dataclass(frozen=True)
class CaFileArgs:
    path: pulumi.Input[str]
    """Where the file goes: .hashistack/<stack>/ca.pem in the checkout."""
    content: pulumi.Input[str]
    """The CA certificate (public)."""


class CaFile(TypedResource, module="hashistack", name="CaFile"):
    path: pulumi.Output[str]

    def __init__(self, name: str, args: CaFileArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(_CaFileProvider(), name, args, opts)
