"""Stage 3, what a machine boots with: agent configurations, units and the bootstrap script (pure), the per-platform plan, and user-data as Outputs."""
