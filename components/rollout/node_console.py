"""A node's serial console, as the host keeps it: where a failed boot says why.

The boot script's last line goes to the serial console (cloudinit/hashistack-bootstrap.sh, `console`):
`hashistack-bootstrap: done`, or one `hashistack-bootstrap: FAILED while <step>: ...` line. A gate
that can read the console stops at that line instead of waiting out its deadline.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

FAILED_MARK = "hashistack-bootstrap: FAILED"
# A boot's console is mostly the kernel's and cloud-init's; the script's line is near the end.
TAIL_BYTES = 256 * 1024
# Terminal control sequences (colour, cursor) that a serial console carries along with the text.
_CONTROL = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|[\x00-\x08\x0b-\x1f\x7f]")


def failure_line(text: str) -> str | None:
    """The last FAILED line of the boot script in console text, cleaned of control characters."""
    found = None
    for line in text.splitlines():
        clean = _CONTROL.sub("", line).strip()
        if FAILED_MARK in clean:
            found = clean[clean.index(FAILED_MARK) :]
    return found


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def log_file_watch(path: str) -> Callable[[], str | None]:
    """Watches the console log file at `path` (the domain's serial log on libvirt) from its size now:
    the log is appended to across boots and machines (libvirt/domain.xsl, append="on"), so only what
    this boot wrote counts. A log that shrank was rolled over (virtlogd, at 2 MiB) and is read from
    its start. No path, no file, or one this user may not read, is no news."""
    if not path:
        return lambda: None
    log_path = Path(path)
    start = _size(log_path)

    def watch() -> str | None:
        nonlocal start
        try:
            with log_path.open("rb") as log:
                size = log.seek(0, 2)
                if size < start:
                    start = 0
                log.seek(max(start, size - TAIL_BYTES))
                return failure_line(log.read().decode(errors="replace"))
        except OSError:
            return None

    return watch
