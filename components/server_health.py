"""Kept for deployed stacks: their state names this dynamic provider as `components.server_health._ServerHealthProvider`
(pickled by reference before the layout by stage). It lives in components/rollout/server_health.py;
tests/test_deployed_state.py fails if this name goes."""

from components.rollout.server_health import _ServerHealthProvider

__all__ = ["_ServerHealthProvider"]
