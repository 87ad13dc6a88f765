"""Round-trip YAML (ruamel.yaml): what is not changed is written back as it was.

Comments, key order, quoting, flow/block style, anchors and the file's own
indentation survive; so do `null` / `~` / empty values (ruamel would otherwise
write every null the same way), and long lines are not re-wrapped.
"""

from __future__ import annotations

import io
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import RoundTripConstructor
from ruamel.yaml.error import YAMLError
from ruamel.yaml.representer import RoundTripRepresenter
from ruamel.yaml.tag import Tag
from collections import Counter

from .errors import ProjectError

NULL_TAG = "tag:yaml.org,2002:null"


class Null:
    """A YAML null that remembers how it was spelled (`null`, `~`, or nothing)."""

    __slots__ = ("text",)

    def __init__(self, text: str = "null") -> None:
        self.text = text

    def __bool__(self) -> bool:
        return False

    def __eq__(self, other: object) -> bool:
        return other is None or isinstance(other, Null)

    def __hash__(self) -> int:
        return hash(None)

    def __repr__(self) -> str:
        return f"Null({self.text!r})"


class _Constructor(RoundTripConstructor):
    def construct_null(self, node: Any) -> Null:  # noqa: D102
        return Null(node.value)


_Constructor.add_constructor(NULL_TAG, _Constructor.construct_null)


class _Representer(RoundTripRepresenter):
    def represent_kept_null(self, data: Null) -> Any:
        return self.represent_scalar(NULL_TAG, data.text)


_Representer.add_representer(Null, _Representer.represent_kept_null)


def is_null(value: Any) -> bool:
    return value is None or isinstance(value, Null)


def _yaml(mapping: int = 2, sequence: int = 2, offset: int = 0) -> YAML:
    y = YAML(typ="rt")
    y.Constructor = _Constructor
    y.Representer = _Representer
    y.preserve_quotes = True
    y.width = 1 << 16
    y.indent(mapping=mapping, sequence=sequence, offset=offset)
    return y


class Document:
    """A YAML file loaded for editing: `.data`, then `.dump()` in the file's own style."""

    def __init__(self, text: str, name: str) -> None:
        self.name = name
        try:
            self.data = _yaml().load(text)
        except YAMLError as exc:
            raise ProjectError(f"{name}: not valid YAML ({_one_line(exc)})") from None
        mapping, sequence, offset = _guess_indent(self.data)
        self._yaml = _yaml(mapping=mapping, sequence=sequence, offset=offset)
        self.data = self._yaml.load(text)
        self._explicit_start = text.lstrip().startswith("---")
        if self._explicit_start:
            self._yaml.explicit_start = True

    def dump(self) -> str:
        out = io.StringIO()
        self._yaml.dump(self.data, out)
        return out.getvalue()


def _guess_indent(data: Any) -> tuple[int, int, int]:
    """The file's own indentation, measured on its nested block nodes (line/column info)."""
    maps: Counter[int] = Counter()
    seqs: Counter[tuple[int, int]] = Counter()

    def walk(node: Any) -> None:
        if isinstance(node, CommentedMap):
            for key, value in node.items():
                pos = node.lc.data.get(key) if hasattr(node.lc, "data") else None
                if pos is None:
                    continue
                key_col = pos[1]
                if isinstance(value, CommentedMap) and not value.fa.flow_style() and value:
                    first = next(iter(value))
                    child = value.lc.data.get(first)
                    if child and child[0] > pos[0]:
                        maps[child[1] - key_col] += 1
                elif isinstance(value, CommentedSeq) and not value.fa.flow_style() and value:
                    item = value.lc.data.get(0)
                    if item and item[0] > pos[0]:
                        # item column = dash column + 2 ("- "), as `laddr init` and most files write it
                        dash = item[1] - 2
                        seqs[(dash - key_col, 2)] += 1
                walk(value)
        elif isinstance(node, CommentedSeq):
            for value in node:
                walk(value)

    walk(data)
    mapping = maps.most_common(1)[0][0] if maps else 2
    offset = seqs.most_common(1)[0][0][0] if seqs else 0
    offset = max(offset, 0)
    return mapping, offset + 2, offset


def load_fragment(text: str) -> Any:
    """A YAML snippet (the sandbox's own service definitions) as round-trip nodes."""
    return _yaml().load(text)


def dump_fragment(data: Any) -> str:
    out = io.StringIO()
    _yaml().dump(data, out)
    return out.getvalue()


def tagged(mapping: CommentedMap, tag: str) -> CommentedMap:
    """Give a mapping a local tag, e.g. Compose's `!override`."""
    mapping.yaml_set_ctag(Tag(suffix=tag))
    return mapping


def new_map(items: dict[str, Any] | None = None) -> CommentedMap:
    m = CommentedMap()
    for k, v in (items or {}).items():
        m[k] = v
    return m


def new_seq(items: list[Any] | None = None) -> CommentedSeq:
    s = CommentedSeq()
    s.extend(items or [])
    return s


def _one_line(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    return text[:300]


def _tail(node: Any) -> tuple[Any, Any, int] | None:
    """Where ruamel keeps the comment lines after a node: (container, key, slot) of its last leaf."""
    while True:
        if isinstance(node, CommentedMap) and len(node):
            key = list(node)[-1]
            value = node[key]
            if isinstance(value, (CommentedMap, CommentedSeq)) and len(value) and not value.fa.flow_style():
                node = value
                continue
            return node, key, 2
        if isinstance(node, CommentedSeq) and len(node):
            idx = len(node) - 1
            value = node[idx]
            if isinstance(value, (CommentedMap, CommentedSeq)) and len(value) and not value.fa.flow_style():
                node = value
                continue
            return node, idx, 0
        return None


def move_trailing_comments(src: Any, dst: Any) -> None:
    """Comment lines after `src` belong to what followed it: put them after `dst` instead.

    ruamel attaches a comment on its own line to the end of the node before it, so
    inserting a node after `src` (or replacing `src`) would otherwise move the user's
    comment above the wrong key, or lose it. An end-of-line comment stays with `src`.
    """
    move_comment_between(_tail(src), _tail(dst))


def move_comment_between(at_src: tuple[Any, Any, int] | None, at_dst: tuple[Any, Any, int] | None) -> None:
    """The comment lines after entry `at_src` (container, key, slot) go after `at_dst`."""
    from ruamel.yaml.tokens import CommentToken

    if at_src is None or at_dst is None or at_src[:2] == at_dst[:2]:
        return
    container, key, slot = at_src
    entry = container.ca.items.get(key)
    token = entry[slot] if entry and len(entry) > slot else None
    if token is None or not isinstance(getattr(token, "value", None), str) or "\n" not in token.value:
        return
    first = token.value.index("\n") + 1
    keep, move = token.value[:first], token.value[first:]
    if not move:
        return
    token.value = keep
    d_container, d_key, d_slot = at_dst
    d_entry = d_container.ca.items.setdefault(d_key, [None, None, None, None])
    while len(d_entry) <= d_slot:
        d_entry.append(None)
    existing = d_entry[d_slot]
    if existing is not None and isinstance(getattr(existing, "value", None), str):
        existing.value = existing.value.rstrip("\n") + "\n" + move
    else:
        from ruamel.yaml.error import CommentMark

        d_entry[d_slot] = CommentToken("\n" + move, CommentMark(0), None)


def own_value(m: CommentedMap, key: str) -> Any:
    """`m[key]` made safe to edit: a value shared through an anchor, or inherited by a merge
    key (`<<: *x`), is copied into `m`'s own entry first, so editing it changes only `m`."""
    if key not in m:
        return None
    value = m[key]
    inherited = key not in getattr(m, "_ok", m)
    shared = isinstance(value, (CommentedMap, CommentedSeq)) and value.yaml_anchor() is not None
    if not (inherited or shared):
        return value
    if isinstance(value, CommentedMap):
        copy: Any = new_map(dict(value.items()))
    elif isinstance(value, CommentedSeq):
        copy = new_seq(list(value))
    else:
        return value
    m[key] = copy
    return copy
