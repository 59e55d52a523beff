"""Field selection for the public API: the ``fields`` query parameter, in the
grammar of Google's partial responses, applied to plain Python values (dicts,
lists, scalars) before they are encoded as JSON, msgpack or protobuf.

Grammar (no whitespace anywhere; Google refuses it too)::

    selection := item ("," item)*
    item      := path [ "(" selection ")" ]
    path      := name ("/" name)*
    name      := "*" | identifier          identifier: [A-Za-z_][A-Za-z0-9_]*

``a/b`` means ``a(b)``; ``a(b),a(c)`` merges into ``a(b,c)``; a bare ``a`` keeps
all of ``a``. ``*`` keeps every key at its level (``*(id)`` or ``*/id``: only
``id`` inside every key). A key named next to ``*`` takes its own sub-selection
instead of the wildcard's, so ``*,items(id)`` keeps everything but narrows items.
Lists are transparent: a selection applies to each element.
"""

from __future__ import annotations

import functools
import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeAlias

MAX_EXPRESSION_LENGTH = 1024
MAX_DEPTH = 16

# Sets, not strings: `"" in "0123"` is True, and "" is what peek() gives at the end.
_DIGITS = frozenset(string.digits)
_NAME_START = frozenset(string.ascii_letters + "_")
_NAME_CHARS = _NAME_START | _DIGITS
_TOKEN_CHARS = _NAME_CHARS | frozenset("*,/()")

# Key -> sub-selection, None meaning "the whole value". "*" is the wildcard key.
_Tree: TypeAlias = "dict[str, _Tree | None]"


class FieldSyntaxError(ValueError):
    """The expression does not follow the grammar; ``position`` is 0-based."""

    def __init__(self, reason: str, position: int, *, at: str = "at") -> None:
        super().__init__(f"{reason} {at} position {position}")
        self.reason = reason
        self.position = position


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def selection(self, depth: int) -> _Tree:
        tree: _Tree = {}
        while True:
            self.item(tree, depth)
            char = self.peek()
            if char in ("", ")"):
                # A ')' is the caller's to judge: it closes a group or is stray.
                return tree
            if char != ",":
                raise self.unexpected()
            self.pos += 1

    def item(self, tree: _Tree, depth: int) -> None:
        names = [self.name(depth)]
        while self.peek() == "/":
            self.pos += 1
            names.append(self.name(depth + len(names)))
        sub: _Tree | None = None
        if self.peek() == "(":
            opened = self.pos
            self.pos += 1
            sub = self.selection(depth + len(names))
            if self.peek() != ")":
                raise FieldSyntaxError("unclosed '('", opened, at="opened at")
            self.pos += 1
        for name in reversed(names[1:]):
            sub = {name: sub}
        _merge(tree, names[0], sub)

    def name(self, depth: int) -> str:
        # Checked before reading the name, so recursion can never outgrow the limit.
        if depth > MAX_DEPTH:
            raise FieldSyntaxError(f"nesting deeper than {MAX_DEPTH} levels", self.pos)
        start = self.pos
        char = self.peek()
        if char == "*":
            self.pos += 1
            return char
        if char not in _NAME_START:
            raise self.missing_name()
        while self.peek() in _NAME_CHARS:
            self.pos += 1
        return self.text[start : self.pos]

    def unexpected(self) -> FieldSyntaxError:
        char = self.peek()
        if char.isspace():
            return FieldSyntaxError("whitespace is not allowed", self.pos)
        if char not in _TOKEN_CHARS:
            return FieldSyntaxError(f"invalid character {char!r}", self.pos)
        return FieldSyntaxError(f"unexpected {char!r}", self.pos)

    def missing_name(self) -> FieldSyntaxError:
        # A name was due; what came before it tells which mistake the client made.
        pos, char = self.pos, self.peek()
        prev = self.text[pos - 1] if pos else ""
        if char and char not in _TOKEN_CHARS:
            return self.unexpected()
        if char in _DIGITS:
            return FieldSyntaxError("field name starts with a digit", pos)
        if prev == "/":
            if char == "/":
                return FieldSyntaxError("double '/'", pos)
            return FieldSyntaxError("trailing '/'", pos - 1)
        if char == "/":
            return FieldSyntaxError("leading '/'", pos)
        if prev == ",":
            if char == ",":
                return FieldSyntaxError("double ','", pos)
            if char in ("", ")"):
                return FieldSyntaxError("trailing ','", pos - 1)
        elif char == ",":
            return FieldSyntaxError("leading ','", pos)
        if prev == "(" and char == ")":
            return FieldSyntaxError("empty selection", pos)
        if prev == "(" and not char:
            return FieldSyntaxError("unclosed '('", pos - 1, at="opened at")
        if char == ")":
            return FieldSyntaxError("unexpected ')'", pos)
        return FieldSyntaxError("expected a field name", pos)


def _merge(tree: _Tree, key: str, sub: _Tree | None) -> None:
    if key not in tree:
        tree[key] = sub
        return
    existing = tree[key]
    if existing is None or sub is None:
        tree[key] = None  # "all of it" absorbs any narrower selection
        return
    for child, child_sub in sub.items():
        _merge(existing, child, child_sub)


def _normalize(tree: _Tree) -> _Tree | None:
    """Drop what the wildcard already says, so equivalent expressions compare equal."""
    out = {key: None if sub is None else _normalize(sub) for key, sub in tree.items()}
    if "*" in out:
        star = out["*"]
        out = {key: sub for key, sub in out.items() if key == "*" or sub != star}
        if star is None and len(out) == 1:
            return None
    return out


def _render(tree: _Tree) -> str:
    parts = []
    for key in sorted(tree):
        sub = tree[key]
        if sub is None:
            parts.append(key)
        elif len(sub) == 1:
            parts.append(f"{key}/{_render(sub)}")
        else:
            parts.append(f"{key}({_render(sub)})")
    return ",".join(parts)


@dataclass(frozen=True, slots=True)
class _Node:
    fields: dict[str, _Node | None]
    has_wildcard: bool
    wildcard: _Node | None


def _build(tree: _Tree) -> _Node:
    fields = {key: None if sub is None else _build(sub) for key, sub in tree.items() if key != "*"}
    star = tree.get("*")
    return _Node(fields, "*" in tree, None if star is None else _build(star))


def _apply(node: _Node, value: Any) -> Any:
    # The hot path: runs on every item of every page, so it is plain loops only.
    if isinstance(value, dict):
        fields = node.fields
        out = {}
        if node.has_wildcard:
            wildcard = node.wildcard
            for key, item in value.items():
                sub = fields.get(key, wildcard)
                out[key] = item if sub is None else _apply(sub, item)
        else:
            for key, item in value.items():
                if key in fields:
                    sub = fields[key]
                    out[key] = item if sub is None else _apply(sub, item)
        return out
    if isinstance(value, list):
        return [_apply(node, item) for item in value]
    return value  # a selection inside a scalar means nothing: keep the scalar


@dataclass(frozen=True, slots=True)
class Projection:
    """A compiled ``fields`` expression. Equal projections have equal ``canonical``
    forms (sorted, merged), which is what cache keys and ETags should use."""

    canonical: str
    _root: _Node | None = field(default=None, compare=False, repr=False)

    ALL: ClassVar[Projection]

    def __str__(self) -> str:
        return self.canonical

    def apply(self, value: Any) -> Any:
        """A new value keeping only the selected keys; the input is not modified."""
        return value if self._root is None else _apply(self._root, value)

    def selects(self, path: Sequence[str]) -> bool:
        """Whether any part of the value at this key path would be kept."""
        if isinstance(path, str):
            raise TypeError("path is a sequence of keys, not a string")
        node = self._root
        for key in path:
            if node is None:
                return True
            if key in node.fields:
                node = node.fields[key]
            elif node.has_wildcard:
                node = node.wildcard
            else:
                return False
        return True


Projection.ALL = Projection("*")
ALL = Projection.ALL


def compile_fields(expression: str) -> Projection:
    """Parse and compile ``expression``; raises FieldSyntaxError."""
    # Checked before the cache, so an abusive string is never hashed nor kept.
    if len(expression) > MAX_EXPRESSION_LENGTH:
        raise FieldSyntaxError(
            f"expression longer than {MAX_EXPRESSION_LENGTH} characters", MAX_EXPRESSION_LENGTH
        )
    return _compile(expression)


# Errors propagate out of lru_cache uncached, so each one is raised afresh.
@functools.lru_cache(maxsize=1024)
def _compile(expression: str) -> Projection:
    if not expression:
        raise FieldSyntaxError("empty expression", 0)
    parser = _Parser(expression)
    tree = parser.selection(1)
    if parser.pos < len(expression):
        raise parser.unexpected()  # only a stray ')' stops a top-level selection
    normal = _normalize(tree)
    if normal is None:
        return ALL
    return Projection(_render(normal), _build(normal))
