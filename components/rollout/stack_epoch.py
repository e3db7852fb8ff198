"""StackEpoch: whether this `pulumi up` is the stack's first, read from the stack's own state.

The server chain (components/rollout/server_chain.py) orders servers one after another so that a later `up`
replaces one machine at a time. On the first `up` that order buys nothing (with `bootstrap_expect`
Consul and Nomad elect no leader until every server runs) and costs a full boot per server, so the
servers are created together then.

Which run is the first cannot be asked of the network (an unreachable peer looks the same during a
roll) and the program sees no state; but a resource can remember the run that created it. Every
program run carries a fresh token; the epoch stores the token of the run that created it and never
changes afterwards (its diff reports none, so the engine keeps its outputs: a "same" step). The run
whose token the epoch holds is the first. The engine registers a resource only once everything in
its `depends_on` has been created (pulumi/runtime/resource.py, _depends_on.py: an Output-valued
`depends_on` is awaited, its resources included), so `after(previous)` delays a server behind its
predecessor's gate on every run but the first.

A first `up` that fails half-way is retried on the chained path; the gates judge "does a cluster
exist" from its peers and their own state, not from the epoch (components/rollout/server_health.py).
The epoch is not protected, so `pulumi destroy` removes it with the rest.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi.dynamic

from components.dynamic.typed import CreatedOnceProvider, TypedResource

RUN_TOKEN = uuid.uuid4().hex
"""This program run's token: new in every run, stored only by the epoch that a run creates."""


class _StackEpochProvider(CreatedOnceProvider):
    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        return pulumi.dynamic.CreateResult(id_="epoch", outs={"created_in": props["run"]})


@dataclass(frozen=True)
class StackEpochArgs:
    run: str = RUN_TOKEN
    """The token this run offers; the epoch keeps the one of the run that created it."""


class StackEpoch(TypedResource, module="hashistack", name="StackEpoch"):
    created_in: pulumi.Output[str]
    """The token of the run that created the stack's epoch."""

    def __init__(self, name: str, args: StackEpochArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(_StackEpochProvider(), name, args, opts, outputs=("created_in",))
        self.run = args.run

    @property
    def first_up(self) -> pulumi.Output[bool]:
        """True in the run that created the epoch (the stack's first `up`, or its preview), else False."""
        return self.created_in.apply(lambda token: token == self.run)

    def after(
        self, previous: Sequence[pulumi.Resource], always: Sequence[pulumi.Resource] = ()
    ) -> pulumi.Output[list[pulumi.Resource]]:
        """A `depends_on` that waits for `previous` on every run but the first (and for the epoch),
        and for `always` on every run."""
        chosen, kept = list(previous), list(always)
        return self.first_up.apply(lambda first: kept if first else [*kept, *chosen])
