"""Typed args of the dynamic resources (components/dynamic/typed.py): one frozen dataclass per resource,
turned into props in one place, its secret fields kept secret."""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import typing
from dataclasses import dataclass, field

import pulumi
import pulumi.dynamic

import components
from components.dynamic.typed import SECRET, CreatedOnceProvider, TypedResource, input_props, secret_inputs

from conftest import run_pulumi


@dataclass(frozen=True)
class _Args:
    name: str
    token: pulumi.Input[str] = field(metadata=SECRET)
    size: int = 3


class _Provider(pulumi.dynamic.ResourceProvider):
    def create(self, props):
        return pulumi.dynamic.CreateResult("id", {**props, "answer": "42", "key": "k"})


class _Thing(TypedResource, module="test", name="Thing"):
    def __init__(self, name: str, args: _Args, opts: pulumi.ResourceOptions | None = None, secret_outputs=("key",)):
        super().__init__(_Provider(), name, args, opts, outputs=("answer", "key"), secret_outputs=secret_outputs)


@dataclass(frozen=True)
class _Public:
    path: str


class _Plain(TypedResource, module="test", name="Plain"):
    def __init__(self, name: str, args: _Public, opts: pulumi.ResourceOptions | None = None):
        super().__init__(_Provider(), name, args, opts)


def test_the_props_are_the_fields_by_name_and_the_secret_ones_are_marked():
    args = _Args("a", "t")
    assert input_props(args) == {"name": "a", "token": "t", "size": 3}
    assert secret_inputs(args) == ["token"]
    assert secret_inputs(_Public("p")) == []


def test_a_typed_resource_registers_its_fields_and_keeps_secret_inputs_and_outputs_secret():
    monitor = run_pulumi(
        lambda: (
            _Thing("thing", _Args("a", "t"), pulumi.ResourceOptions(additional_secret_outputs=["answer"])),
            _Plain("plain", _Public("/p")),
        )
    )
    (thing,) = monitor.of_type("pulumi-python:dynamic/test:Thing")
    # Declared outputs travel as None, which the wire leaves out: the inputs are the fields.
    assert set(thing.inputs) == {"name", "token", "size", "__provider"}
    assert (thing.inputs["name"], thing.inputs["size"]) == ("a", 3)
    # The caller's own secret outputs are kept, merged with the fields' and the resource's.
    assert thing.secret_outputs == {"answer", "key", "token"}
    (plain,) = monitor.of_type("pulumi-python:dynamic/test:Plain")
    assert plain.inputs["path"] == "/p" and plain.secret_outputs == set()


def test_a_resource_made_once_never_changes_and_leaves_nothing_to_delete():
    provider = CreatedOnceProvider()
    assert provider.diff("id", {"a": 1}, {"a": 2}).changes is False
    assert provider.delete("id", {"a": 1}) is None


def _dynamic_resource_classes() -> list[type]:
    for module in pkgutil.walk_packages(components.__path__, "components."):
        importlib.import_module(module.name)
    found, pending = [], [pulumi.dynamic.Resource]
    while pending:
        for subclass in pending.pop().__subclasses__():
            pending.append(subclass)
            if subclass.__module__.startswith("components.") and subclass is not TypedResource:
                found.append(subclass)
    return found


def test_every_dynamic_resource_of_the_program_takes_a_frozen_dataclass():
    classes = _dynamic_resource_classes()
    names = sorted(cls.__name__ for cls in classes)
    assert names == [
        "CaFile",
        "ClientFleet",
        "ClientNode",
        "ConsulPresetTokens",
        "NomadAclBootstrap",
        "ServerHandover",
        "ServerHealth",
        "StackEpoch",
        "VaultInit",
        "VaultStandbyFirst",
        "VaultUnsealed",
    ]
    for cls in classes:
        assert issubclass(cls, TypedResource), f"{cls.__name__} builds its props by hand"
        args = typing.get_type_hints(cls.__init__)["args"]
        assert dataclasses.is_dataclass(args) and args.__dataclass_params__.frozen, f"{cls.__name__}: {args}"
