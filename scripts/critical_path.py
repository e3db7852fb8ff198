"""Machine boots on the longest dependency path of a program run, and the time that makes.

The engine starts a resource once everything it depends on exists (pulumi/runtime/resource.py: the
RegisterResource call waits for its dependencies' URNs; the engine answers after the step), so a
run's wall time is its longest dependency path; on it, what costs minutes is booting machines. The
graph is the one the program registers under the test mocks (tests/conftest.py), for the stack's
first `up` or for a later one (`later=True`: the stack epoch exists, so the server chain holds).

The times are an estimate from a small cost model, not a measurement: nothing here boots a machine.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Protocol

# What boots a machine: a libvirt domain, an EC2 instance, an autoscaling group's instances.
MACHINE_TYPES = frozenset({"libvirt:index/domain:Domain", "aws:ec2/instance:Instance", "aws:autoscaling/group:Group"})


class Registered(Protocol):
    urn: str
    type: str
    dependencies: set[str]


@dataclass(frozen=True)
class CostModel:
    """Minutes, estimated from typical figures (none measured here): see the README's Performance."""

    create: float
    """The platform creates the machine (EC2 API and OS boot; a libvirt domain starts in seconds)."""
    boot: float
    """cloud-init: apt, the HashiCorp packages (~250 MB), the agents started."""
    gate: float
    """The agents join: Consul, Vault (unsealed, promoted to voter) and Nomad healthy."""
    tail: float
    """After the servers: bootstrap (tokens, ACLs, Vault), access, and the jobs' deployments."""

    def minutes(self, boots: int, boot_ratio: float = 1.0) -> float:
        """`boot_ratio`: a baked image's boot time over the stock image's (the boot test measures it)."""
        return boots * (self.create + self.boot * boot_ratio + self.gate) + self.tail


COSTS: Mapping[str, CostModel] = {
    "libvirt": CostModel(create=0.2, boot=3.5, gate=0.5, tail=3.0),
    "aws": CostModel(create=1.0, boot=3.5, gate=0.5, tail=3.0),
}


def boots_on_longest_path(registrations: Iterable[Registered]) -> tuple[int, list[str]]:
    """The most machine boots on any dependency path, and that path's machines (URNs), in order."""
    by_urn = {r.urn: r for r in registrations}

    @cache
    def longest(urn: str) -> tuple[int, tuple[str, ...]]:
        resource = by_urn[urn]
        best: tuple[int, tuple[str, ...]] = (0, ())
        for dependency in resource.dependencies:
            if dependency in by_urn and dependency != urn:
                best = max(best, longest(dependency))
        if resource.type in MACHINE_TYPES:
            return best[0] + 1, (*best[1], urn)
        return best

    if not by_urn:
        return 0, []
    boots, path = max(longest(urn) for urn in by_urn)
    return boots, list(path)
