"""What a deployed stack's state holds that the code must keep meeting: every resource's URN, and the
dynamic providers pickled into it by reference.

A changed URN (a new name, type or parent) makes the engine replace that resource in every deployed
stack, servers included; a dynamic provider class that is no longer importable under the name a
state recorded breaks that stack's next preview, `up` and `destroy`, and `aliases` cannot help. A
refactor (issue #18: the layout by stage) must keep both: aliases for a moved resource, a thin
re-export module at a provider's old path. tests/deployed-state/urns-<stack>.txt is the URN list of
the state as of this commit; add a line for a new resource, never change one without an alias.
"""

from __future__ import annotations

import base64
import importlib
from pathlib import Path

import dill

from components.config.settings import NodeImage
from components.nodes.node_image import recipe
from scripts.stack_files import stack_settings

from conftest import unwrap

STATE = Path(__file__).resolve().parent / "deployed-state"

# Every dynamic provider class a deployed stack's state may name (`__provider`, pickled by dill by
# reference to its module and name). Only ever add to this list.
PICKLED_PROVIDERS = {
    "components.bootstrap._CaFileProvider",
    "components.bootstrap._ConsulPresetTokensProvider",
    "components.bootstrap._NomadAclBootstrapProvider",
    "components.bootstrap._VaultInitProvider",
    "components.bootstrap._VaultUnsealedProvider",
    "components.client_node._ClientNodeProvider",
    "components.server_health._ServerHealthProvider",
    "components.stack_epoch._StackEpochProvider",
    # Since the layout by stage (#18); the names above stay importable through re-exports.
    "components.bootstrap.ca_file._CaFileProvider",
    "components.bootstrap.steps._ConsulPresetTokensProvider",
    "components.bootstrap.steps._NomadAclBootstrapProvider",
    "components.bootstrap.steps._VaultUnsealedProvider",
    "components.rollout.client_node._ClientNodeProvider",
    "components.rollout.server_health._ServerHealthProvider",
    "components.rollout.stack_epoch._StackEpochProvider",
    "components.rollout.vault_init._VaultInitProvider",
    # Since the day-two roll (#25).
    "components.rollout.server_handover._ServerHandoverProvider",
    "components.rollout.vault_standby._VaultStandbyFirstProvider",
    "components.rollout.client_fleet._ClientFleetProvider",
}


# A baked base image is named by the hash of its inputs (components/nodes/node_image.py): a new one is
# meant to be a new volume, which the servers' disks move onto one at a time. Recorded as this.
BAKED_IMAGE = "hashistack-<os>-<inputs hash>"


def registered_urns(program) -> set[str]:
    settings = stack_settings(program.stack)
    baked = recipe(settings).name if settings.node_image is NodeImage.BAKED else None
    return {r.urn.replace(baked, BAKED_IMAGE) if baked else r.urn for r in program.registrations}


def test_every_urn_a_deployed_stack_has_is_still_registered(program):
    recorded = (STATE / f"urns-{program.stack}.txt").read_text().splitlines()
    registered = registered_urns(program)
    gone = sorted(set(recorded) - registered)
    assert not gone, (
        "these resources would be replaced or deleted in every deployed stack; keep their URNs with "
        f"`aliases` (pulumi.Alias) rather than editing {STATE.name}/urns-{program.stack}.txt: {gone}"
    )
    new = sorted(registered - set(recorded))
    assert not new, f"new resources: add them to {STATE.name}/urns-{program.stack}.txt: {new}"


def test_the_pickled_providers_load_and_are_the_recorded_classes(program):
    found = set()
    for registration in program.registrations:
        pickled = registration.inputs.get("__provider")
        if pickled is None:
            continue
        provider = dill.loads(base64.b64decode(unwrap(pickled)))
        found.add(f"{type(provider).__module__}.{type(provider).__qualname__}")
    assert found and found <= PICKLED_PROVIDERS, sorted(found - PICKLED_PROVIDERS)


def test_every_provider_path_a_state_may_name_still_imports():
    for path in sorted(PICKLED_PROVIDERS):
        module, name = path.rsplit(".", 1)
        provider = getattr(importlib.import_module(module), name)
        assert callable(getattr(provider, "create", None)), path
