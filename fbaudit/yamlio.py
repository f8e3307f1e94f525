"""Reading and writing the human-edited YAML files (config and registry).

ruamel.yaml is used rather than PyYAML because it keeps comments, key order
and layout when a file is written back (the registry is edited by people and
rewritten by ``fbaudit enable``/``sync``), and it reports the line of every
key, which our error messages name.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

from .errors import ConfigError


def _yaml() -> YAML:
    y = YAML()  # round-trip mode
    y.preserve_quotes = True
    y.indent(mapping=2, sequence=4, offset=2)
    y.width = 120
    return y


def load(path: Path) -> Any:
    """Parse ``path``; a syntax error becomes a ConfigError with file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        return _yaml().load(text)
    except MarkedYAMLError as exc:
        # For "could not find expected ':'" the context mark is the line that
        # started the trouble; otherwise the problem mark is where it is.
        pm, cm = exc.problem_mark, exc.context_mark
        mark = cm if (cm and (exc.context or "").startswith("while scanning a simple key")) else (pm or cm)
        line = f":{mark.line + 1}" if mark else ""
        what = exc.problem or exc.context or "syntax error"
        if cm and pm and cm.line != pm.line and mark is pm and exc.context:
            what += f" ({exc.context} at line {cm.line + 1})"
        raise ConfigError(f"{path}{line}: invalid YAML: {what}") from None


def dump(data: Any, path: Path) -> None:
    """Write ``data`` back, atomically (temp file + rename)."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        _yaml().dump(data, fh)
    tmp.replace(path)


def line_of(node: Any, key: Any = None) -> int | None:
    """1-based line of ``key`` in mapping ``node`` (or of the node itself)."""
    try:
        if key is not None and isinstance(node, CommentedMap):
            return node.lc.key(key)[0] + 1
        if key is not None and isinstance(node, CommentedSeq):
            return node.lc.item(key)[0] + 1
        return node.lc.line + 1
    except (AttributeError, KeyError, TypeError, IndexError):
        return None


def where(path: Path, node: Any, key: Any = None) -> str:
    line = line_of(node, key)
    return f"{path}:{line}" if line else str(path)


__all__ = ["CommentedMap", "CommentedSeq", "load", "dump", "line_of", "where"]
