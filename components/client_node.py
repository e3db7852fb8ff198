"""Kept for deployed stacks: their state names this dynamic provider as `components.client_node._ClientNodeProvider`
(pickled by reference before the layout by stage). It lives in components/rollout/client_node.py;
tests/test_deployed_state.py fails if this name goes."""

from components.rollout.client_node import _ClientNodeProvider

__all__ = ["_ClientNodeProvider"]
