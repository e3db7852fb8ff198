"""Typed args for the dynamic resources: each resource takes a frozen dataclass of its inputs, and this
is the one place that turns it into the props dict its provider receives.

An input declared `field(metadata=SECRET)` is stored as a secret: the engine keeps a dynamic resource's inputs
among its outputs, so a secret input would otherwise reach the state in plain text (an Output that is
already secret stays so; a plain value passed by a test or a later caller would not).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, ClassVar, Protocol

import pulumi
import pulumi.dynamic


class Args(Protocol):
    """A dataclass instance: a dynamic resource's typed inputs."""

    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]


SECRET = {"secret": True}
"""Field metadata of an input kept secret in state and outputs."""


def input_props(args: Args) -> dict[str, Any]:
    """The args' fields by name, as the provider's create, diff and update see them."""
    return {field.name: getattr(args, field.name) for field in dataclasses.fields(args)}


def secret_inputs(args: Args) -> list[str]:
    return [field.name for field in dataclasses.fields(args) if field.metadata.get("secret")]


class TypedResource(pulumi.dynamic.Resource):
    """A dynamic resource built from typed args. `outputs` are the names the provider adds (declared
    so that they exist, unknown, during a preview); `secret_outputs` those of them that are secrets."""

    def __init__(
        self,
        provider: pulumi.dynamic.ResourceProvider,
        name: str,
        args: Args,
        opts: pulumi.ResourceOptions | None = None,
        *,
        outputs: Sequence[str] = (),
        secret_outputs: Sequence[str] = (),
    ):
        secrets = [*secret_outputs, *secret_inputs(args)]
        if secrets:
            opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=secrets))
        super().__init__(provider, name, {**input_props(args), **dict.fromkeys(outputs)}, opts)


class CreatedOnceProvider(pulumi.dynamic.ResourceProvider):
    """A resource made once in the stack's life: later runs change nothing (its diff reports none, so
    the engine keeps the outputs of the run that created it), and `destroy` has nothing to undo."""

    def diff(self, _id: str, _olds: dict[str, Any], _news: dict[str, Any]) -> pulumi.dynamic.DiffResult:
        return pulumi.dynamic.DiffResult(changes=False)

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        pass
