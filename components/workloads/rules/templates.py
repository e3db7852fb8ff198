"""Go templates, consul-template's language, as the job rules read them: each action of a template's
data lexed into tokens (`template_actions`), and the calls of named functions with their arguments
(`_calls`), enough to find what a template reads."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


# -- templates -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Token:
    kind: str
    """string, field, var, ident, number, pipe, lparen, rparen or other."""
    text: str

    @property
    def literal(self) -> str | None:
        """A string token's value (Go's escapes as JSON's), else None."""
        if self.kind != "string":
            return None
        if self.text.startswith("`"):
            return self.text[1:-1]
        try:
            return json.loads(self.text)
        except ValueError:  # a Go escape JSON lacks (\x41, \a): what is between the quotes
            return self.text[1:-1]


# Go text/template's lexemes inside an action, enough to tell a function's arguments apart.
_GO_TOKEN = re.compile(
    r"""(?P<string>"(?:[^"\\\n]|\\.)*"|`[^`]*`)
      |(?P<char>'(?:[^'\\\n]|\\.)*')
      |(?P<comment>/\*.*?\*/)
      |(?P<field>(?:\.[A-Za-z_][A-Za-z0-9_]*)+|\.)
      |(?P<var>\$[A-Za-z0-9_]*)
      |(?P<ident>[A-Za-z_][A-Za-z0-9_]*)
      |(?P<number>[0-9][0-9A-Za-z_.+-]*)
      |(?P<space>\s+)
      |(?P<pipe>\|)
      |(?P<lparen>\()
      |(?P<rparen>\))
      |(?P<other>.)""",
    re.X | re.S,
)


def template_actions(text: str, left: str = "{{", right: str = "}}") -> list[tuple[str, list[_Token]]]:
    """Each action of a Go template (consul-template's language) as (its text, its tokens, spaces,
    comments and trim markers left out). As in Go's text/template lexer, a right delimiter inside a
    string does not end an action, and "{{- " and " -}}" trim the text around it."""
    trim_left = re.compile(r"-[ \t\r\n]")
    trim_right = re.compile(r"[ \t\r\n]-" + re.escape(right))
    actions = []
    start = text.find(left)
    while start != -1:
        pos = start + len(left)
        if trim_left.match(text, pos):
            pos += 1
        tokens: list[_Token] = []
        while pos < len(text) and not text.startswith(right, pos):
            if trim_right.match(text, pos):
                pos += 2
                break
            match = _GO_TOKEN.match(text, pos)
            assert match is not None  # `other` matches any character
            kind = match.lastgroup or "other"
            if kind == "char":
                kind = "other"
            if kind not in ("space", "comment"):
                tokens.append(_Token(kind, match.group()))
            pos = match.end()
        actions.append((text[start : pos + len(right)], tokens))
        start = text.find(left, pos + len(right))
    return actions


def _template_actions_of(template: Mapping[str, Any]) -> list[tuple[str, list[_Token]]]:
    data = template.get("data")
    if not isinstance(data, str):
        return []
    return template_actions(data, template.get("left_delimiter", "{{"), template.get("right_delimiter", "}}"))


@dataclass(frozen=True)
class _Call:
    function: str
    arguments: tuple[tuple[_Token, ...], ...]
    """Each argument's tokens (a parenthesised argument is one); none when the value is piped in."""


def _calls(tokens: Sequence[_Token], functions: frozenset[str]) -> list[_Call]:
    """Calls of the named functions in an action's tokens."""
    calls = []
    for index, token in enumerate(tokens):
        if token.kind != "ident" or token.text not in functions:
            continue
        arguments: list[tuple[_Token, ...]] = []
        current: list[_Token] = []
        depth = 0
        for following in tokens[index + 1 :]:
            if depth == 0 and following.kind in ("pipe", "rparen"):
                break
            current.append(following)
            depth += {"lparen": 1, "rparen": -1}.get(following.kind, 0)
            if depth == 0:
                arguments.append(tuple(current))
                current = []
        calls.append(_Call(token.text, tuple(arguments)))
    return calls
