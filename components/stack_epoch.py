"""Kept for deployed stacks: their state names this dynamic provider as `components.stack_epoch._StackEpochProvider`
(pickled by reference before the layout by stage). It lives in components/rollout/stack_epoch.py;
tests/test_deployed_state.py fails if this name goes."""

from components.rollout.stack_epoch import _StackEpochProvider

__all__ = ["_StackEpochProvider"]
