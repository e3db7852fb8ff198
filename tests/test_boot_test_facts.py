"""node_facts.py's own parsing, on the host: what it prints runs inside the boot test's VMs."""

from __future__ import annotations

from scripts.boot_test import node_facts

# `systemctl show --property=… '*'` as systemd 252 prints it: one block per unit, a blank line between.
SHOW = """\
Id=apparmor.service
InactiveExitTimestampMonotonic=20000000
ActiveEnterTimestampMonotonic=32891000
InactiveEnterTimestampMonotonic=0

Id=consul.service
InactiveExitTimestampMonotonic=84683000
ActiveEnterTimestampMonotonic=0
InactiveEnterTimestampMonotonic=0

Id=e2scrub_reap.service
InactiveExitTimestampMonotonic=21000000
ActiveEnterTimestampMonotonic=0
InactiveEnterTimestampMonotonic=29953000

Id=never-started.service
InactiveExitTimestampMonotonic=0
ActiveEnterTimestampMonotonic=0
InactiveEnterTimestampMonotonic=0

Id=instant.target
InactiveExitTimestampMonotonic=45000000
ActiveEnterTimestampMonotonic=45000000
InactiveEnterTimestampMonotonic=0

Id=b.service
InactiveExitTimestampMonotonic=1000000
ActiveEnterTimestampMonotonic=2000000
InactiveEnterTimestampMonotonic=0

Id=a.service
InactiveExitTimestampMonotonic=5000000
ActiveEnterTimestampMonotonic=6000000
InactiveEnterTimestampMonotonic=0
"""


def test_start_times_are_blames_own_longest_first():
    # Active: enter minus exit. Finished (a oneshot back to inactive): inactive again minus exit. Still
    # activating (a client's Consul), never started, or no time taken: not listed, as blame lists them.
    assert node_facts.start_times(SHOW) == [
        " 12.891s apparmor.service",
        "  8.953s e2scrub_reap.service",
        "  1.000s a.service",
        "  1.000s b.service",
    ]
