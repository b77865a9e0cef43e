"""Writing agents.yaml the way its author left it: comments, key order, block style, quotes and
number spellings survive a change made by a command or a tool.

Only the write path uses this (ruamel.yaml's round-trip mode, imported here and nowhere else);
reading stays on the fast safe loader in `store`. `render(text, before, after)` takes the file's
current text and two plain snapshots of what it means (as `store._serialisable` builds them,
before and after a change) and edits the parsed document in place: a key whose value did not
change is not touched, a changed value is replaced where it stands (its end-of-line comment
kept), a new key is appended to its mapping, a removed key's trailing comment lines move to the
entry before it. New mappings are written in block style, new lists as `[A, B]`, new multi-line
text as a `|` block. `render` returns None when the text cannot be edited this way (the caller
then writes the snapshot afresh); the caller still checks what the text reads back as.
"""

from __future__ import annotations

import io
import re
from typing import Any

_NEW_FILE_INDENT = (2, 4, 2)  # (mapping, sequence, offset) of files we create
_DEEPEST = 50  # nesting we follow to find where a trailing comment is kept


def _yaml(indent: tuple[int, int, int]) -> Any:
    from ruamel.yaml import YAML

    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096  # long descriptions stay on one line
    yaml.indent(mapping=indent[0], sequence=indent[1], offset=indent[2])
    # An untouched `key: null` stays `null` (ruamel would write an empty value).
    yaml.representer.add_representer(
        type(None), lambda rep, _data: rep.represent_scalar("tag:yaml.org,2002:null", "null")
    )
    return yaml


def _dump(yaml: Any, doc: Any) -> str:
    out = io.StringIO()
    yaml.dump(doc, out)
    return out.getvalue()


def _detect_indent(text: str) -> tuple[int, int, int]:
    """(mapping, sequence, offset) indentation of the author's file, read from its lines: the
    first key indented under another gives the mapping step, the first `- ` item under a `key:`
    line the dash offset. A file without block lists gets the usual `key:` + 2 + `- ` style."""
    mapping = offset = None
    previous: tuple[int, bool] | None = None  # (indent, ends with ':') of the last content line
    for line in text.splitlines():
        stripped = line.lstrip(" ")
        if not stripped or stripped.startswith("#") or line.startswith("\t"):
            continue
        indent = len(line) - len(stripped)
        if previous is not None and previous[1]:
            if stripped.startswith("- ") or stripped == "-":
                offset = indent - previous[0] if offset is None else offset
            elif mapping is None and indent > previous[0]:
                mapping = indent - previous[0]
        body = stripped.split(" #", 1)[0].rstrip()
        previous = (indent, body.endswith(":") and not stripped.startswith("- "))
        if mapping is not None and offset is not None:
            break
    mapping = mapping if mapping and mapping <= 8 else 2
    offset = offset if offset is not None and 0 <= offset <= 8 else mapping
    return mapping, offset + 2, offset


def _load_styled(text: str) -> tuple[Any, Any] | None:
    """(yaml, document) set up with the author's indentation, or None when ruamel cannot parse
    `text` or its top is not a mapping."""
    from ruamel.yaml.comments import CommentedMap

    yaml = _yaml(_detect_indent(text))
    try:
        doc = yaml.load(text.removeprefix("\ufeff"))
    except Exception:  # noqa: BLE001 (any parse failure: the caller writes the file afresh)
        return None
    return (yaml, doc) if isinstance(doc, CommentedMap) else None


def prepare() -> None:
    """Import the round-trip library now (a writer calls this before taking the config lock, so
    the lock is not held while a cold import runs)."""
    import ruamel.yaml  # noqa: F401


def render(text: str | None, before: dict[str, Any], after: dict[str, Any],
           reuse: dict[str, Any] | None = None) -> str | None:
    """`text` changed from meaning `before` to meaning `after`, everything else kept; None when
    the text cannot be edited in place (empty, unparsable by the round-trip parser, not a mapping).

    `reuse`, a dict the caller keeps between calls, holds the parsed document of the text this
    returned last: when the next `text` is exactly that (nobody else wrote the file since), the
    slow round-trip parse is skipped.
    """
    if not text or not text.strip():
        return None
    if reuse is not None and reuse.get("text") == text:
        yaml, doc = reuse["yaml"], reuse["doc"]
    else:
        loaded = _load_styled(text)
        if loaded is None:
            return None
        yaml, doc = loaded
    if reuse is not None:
        reuse.clear()  # the document is about to change: only a finished edit may be reused
    _merge(doc, before, after, 0)
    out = _dump(yaml, doc)
    out = ("\ufeff" + out) if text.startswith("\ufeff") else out
    if reuse is not None:
        reuse.update(text=out, yaml=yaml, doc=doc)
    return out


def fresh_text(data: dict[str, Any], header: str = "") -> str:
    """`data` as a new file: block mappings, `[A, B]` lists, `header` (comment lines) on top."""
    return header + _dump(_yaml(_NEW_FILE_INDENT), _fresh(data, None))


# --- editing the document -----------------------------------------------------------------


def _merge(node: Any, before: dict[str, Any], after: dict[str, Any], depth: int) -> None:
    from ruamel.yaml.comments import CommentedMap

    for key in [k for k in before if k not in after]:
        if key in node:
            _delete(node, key)
    for key, value in after.items():
        if key in before and before[key] == value and key in node:
            continue
        current = node.get(key) if key in node else None
        if (isinstance(value, dict) and isinstance(current, CommentedMap) and isinstance(before.get(key), dict)
                and depth < _DEEPEST):
            if value and not current and current.fa.flow_style():
                current.fa.set_block_style()  # `agents: {}` receiving its first agent
            _merge(current, before[key], value, depth + 1)
            continue
        if isinstance(value, (dict, list)) or (isinstance(value, str) and "\n" in value):
            if node.fa.flow_style() and (isinstance(value, dict) or isinstance(value, str)):
                node.fa.set_block_style()  # a nested block cannot sit inside `{...}`
        if key in node:
            node[key] = _fresh(value, current)
        else:
            _append(node, key, _fresh(value, None))


def _append(node: Any, key: Any, value: Any) -> None:
    """Add `key` at the end of `node`. Comment lines after the old last entry (a blank line, a
    comment before the next section) stay at the end of the mapping, after the new entry."""
    keys = list(node)
    rest = ""
    if keys:
        token = _get_tail(_tail_owner(node, keys[-1], 0))
        if token is not None and getattr(token, "value", ""):
            eol, newline, rest = token.value.partition("\n")
            if rest:
                token.value = eol + newline
    node[key] = value
    if rest:
        _append_tail(_tail_owner(node, key, 0), rest, token)


def _fresh(value: Any, like: Any) -> Any:
    """`value` as a ruamel node, styled like the value it replaces (`like`) where that makes sense."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq
    from ruamel.yaml.scalarstring import LiteralScalarString, ScalarString

    if isinstance(value, dict):
        node = CommentedMap()
        for key, item in value.items():
            node[key] = _fresh(item, None)
        node.fa.set_block_style()
        return node
    if isinstance(value, list):
        seq = CommentedSeq([_fresh(item, None) for item in value])
        if isinstance(like, CommentedSeq) and not like.fa.flow_style() and value:
            seq.fa.set_block_style()
        else:
            seq.fa.set_flow_style()
        return seq
    if isinstance(value, str):
        if "\n" in value and _literal_safe(value):
            return LiteralScalarString(value)
        if "\n" not in value and isinstance(like, ScalarString) and not isinstance(like, LiteralScalarString):
            return type(like)(value)  # keep the author's quotes
        return value
    return value


_UNSAFE_LITERAL = re.compile(r"[ \t]\n|[\x00-\x08\x0b-\x1f\x7f]|^\s")


def _literal_safe(text: str) -> bool:
    """Whether `text` reads back unchanged from a `|` block (no trailing blanks on a line, no
    control characters, no leading space)."""
    return not _UNSAFE_LITERAL.search(text) and not text.endswith((" ", "\t"))


def _delete(node: Any, key: Any) -> None:
    """Remove `key`, keeping the comment lines that followed its entry (they describe what comes
    next): they move to the end of the entry before it."""
    keys = list(node)
    index = keys.index(key)
    owner = _tail_owner(node, key, 0)
    token = _get_tail(owner)
    before = node.ca.items.get(key)
    spacing = [t for t in (before[1] or [])] if before and len(before) > 1 and before[1] else []
    del node[key]
    if index < len(keys) - 1 and spacing and getattr(spacing[0], "value", "") == "\n":
        # The blank line that set the removed entry apart now sets the next one apart.
        nxt = node.ca.items.setdefault(keys[index + 1], [None, None, None, None])
        if not nxt[1]:
            nxt[1] = [spacing[0]]
    if token is None:
        return
    value = getattr(token, "value", "")
    _, _, rest = value.partition("\n")  # the first line ended the removed entry's own line
    if not rest:
        return
    if index > 0:
        _append_tail(_tail_owner(node, keys[index - 1], 0), rest, token)
    elif len(node):
        _append_before_first(node, rest)


def _tail_owner(node: Any, key: Any, depth: int) -> tuple[Any, Any, int]:
    """(container, key or index, slot) where the comment after `node[key]`'s entry is kept."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    value = node[key]
    if depth < _DEEPEST and isinstance(value, CommentedMap) and len(value) and not value.fa.flow_style():
        return _tail_owner(value, list(value)[-1], depth + 1)
    if depth < _DEEPEST and isinstance(value, CommentedSeq) and len(value) and not value.fa.flow_style():
        last = len(value) - 1
        if isinstance(value[last], (CommentedMap, CommentedSeq)) and len(value[last]):
            return _tail_owner(value, last, depth + 1)
        return value, last, 0
    return node, key, 2


def _get_tail(owner: tuple[Any, Any, int]) -> Any:
    container, key, slot = owner
    entry = container.ca.items.get(key)
    return entry[slot] if entry and len(entry) > slot else None


def _append_tail(owner: tuple[Any, Any, int], rest: str, like: Any) -> None:
    from ruamel.yaml.tokens import CommentToken

    container, key, slot = owner
    entry = container.ca.items.setdefault(key, [None, None, None, None])
    current = entry[slot]
    if current is not None and getattr(current, "value", None):
        current.value = current.value + rest if current.value.endswith("\n") else current.value + "\n" + rest
    else:
        entry[slot] = CommentToken("\n" + rest, like.start_mark, None)


def _append_before_first(node: Any, rest: str) -> None:
    """Comment lines that followed a removed first entry: put them before the new first key."""
    first = list(node)[0]
    lines = [line.strip() for line in rest.splitlines()]
    comment = "\n".join(line.lstrip("#").removeprefix(" ") if line.startswith("#") else "" for line in lines)
    if comment.strip():
        node.yaml_set_comment_before_after_key(first, before=comment.strip("\n"),
                                               indent=_key_column(node))


def _key_column(node: Any) -> int:
    line_col = getattr(node, "lc", None)
    return int(getattr(line_col, "col", 0) or 0)
