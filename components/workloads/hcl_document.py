"""A jobspec as python-hcl2's document: the form the renderer builds and the site policy edits, and that
python-hcl2 writes back as HCL text.

In that form (python-hcl2 8.1.4, `hcl2.loads` with preserve_heredocs), a string literal keeps its
quotes (`'"apps"'`), an expression is `${...}` (`var.image` as `'${var.image}'`), numbers and bools are
Python values, and every block is a list of dicts marked `"__is_block__": True`, a labelled block one
dict level deeper (`{'"web"': {...}}`). Parsing and writing back keeps what the job means (tests check
this for every file in jobs/); it drops comments, so a job's submitted text is python-hcl2's layout.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import hcl2
from hcl2.utils import SerializationOptions

BLOCK = "__is_block__"
_OPTIONS = SerializationOptions(with_comments=False, preserve_heredocs=True)
_HEREDOC_START = re.compile(r"<<-?([A-Za-z_][A-Za-z0-9_]*)$")

Document = dict[str, Any]


def parse(text: str) -> Document:
    """The document of a jobspec; raises what python-hcl2 raises for text that is not HCL."""
    return hcl2.loads(text, serialization_options=_OPTIONS)


def dump(document: Document) -> str:
    """The document as HCL text. python-hcl2 separates blocks with lines of spaces, sometimes two;
    those become one empty line, outside heredocs, whose lines are the job's own."""
    lines: list[str] = []
    heredoc_end = None
    for line in hcl2.dumps(document).splitlines():
        if heredoc_end is not None:
            lines.append(line)
            if line.strip() == heredoc_end:
                heredoc_end = None
            continue
        start = _HEREDOC_START.search(line.rstrip())
        heredoc_end = start.group(1) if start else None
        if line.strip() or (lines and lines[-1] and not lines[-1].rstrip().endswith("{")):
            lines.append(line.rstrip() if not line.strip() else line)
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines).lstrip("\n") + "\n"


def string(value: str) -> str:
    """A string literal. HCL reads `%{` as a template directive, so it is escaped (`%%{`); `${` is left
    as it is: Nomad's parser keeps a reference it does not know (`${NOMAD_PORT_http}`, `${attr.x}`) for
    the client to interpolate (jobspec2/types.config.go@v2.0.5 EvalContext's UndefinedVariable)."""
    return json.dumps(value).replace("%{", "%%{")


def unquote(value: Any) -> Any:
    """A literal's value (`'"apps"'` -> `apps`); anything else as it is."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        try:
            return json.loads(value)
        except ValueError:
            return value[1:-1]
    return value


def block(body: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """An unlabelled block's body, marked as a block."""
    return {**(body or {}), BLOCK: True}


def labelled(label: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """A labelled block (`group "web" { ... }`) as one list element."""
    return {string(label): block(body)}


def blocks(body: Mapping[str, Any], name: str) -> list[dict[str, Any]]:
    """The blocks called `name` directly in `body`, in order (each a dict; labelled ones keyed by label)."""
    value = body.get(name)
    return [b for b in value if isinstance(b, dict)] if isinstance(value, list) else []


def labelled_blocks(body: Mapping[str, Any], name: str) -> list[tuple[str, dict[str, Any]]]:
    """`name "label" { ... }` blocks of `body` as (label, body) pairs; the bodies are the document's own."""
    return [(unquote(label), inner) for element in blocks(body, name) for label, inner in element.items()]


def add_block(body: dict[str, Any], name: str, inner: Mapping[str, Any]) -> dict[str, Any]:
    """Appends a `name { ... }` block to `body`; returns the new block's body."""
    new = block(inner)
    body.setdefault(name, []).append(new)
    return new
