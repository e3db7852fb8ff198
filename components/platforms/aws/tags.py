"""The tags every taggable AWS resource of the stack carries: a Name, and Project and Stack.

The policy pack requires Project and Stack (policy/resource_policies.py), and the Elastic IP preflight
counts the stack's own addresses by them (preflight.py).
"""

from __future__ import annotations

from components.config.settings import PROJECT, Settings


def stack_tags(settings: Settings, what: str) -> dict[str, str]:
    return {"Name": f"{PROJECT}-{settings.stack}-{what}", "Project": PROJECT, "Stack": settings.stack}
