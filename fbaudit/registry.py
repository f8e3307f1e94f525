"""The registry (``config/tables.yaml``): audited tables with stable numbers.

Every audited table has a table number (the article's NUM_TABLE) and every
logged column a field number (NUM_POLE). Numbers are given once and never
reused: a dropped or retyped column's number moves to ``retired`` and a new
column (or the new type) gets a fresh number. The file is edited by people;
it is rewritten with its comments and order kept.

Format::

    tables:
      CUSTOMER:
        number: 1
        enabled: true
        key: [ID]                # default: the primary key
        author: EDITED_BY        # optional column naming who changed the row
        exclude: [PASSWORD_HASH] # columns never logged
        fields:
          ID: {number: 1, type: INTEGER}
          NAME: {number: 2, type: VARCHAR(100) CHARACTER SET UTF8}
        retired:
          OLD_NOTE: {number: 3, type: VARCHAR(10) CHARACTER SET UTF8}
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import yamlio
from .errors import ConfigError
from .yamlio import CommentedMap

HEADER = (
    "fbaudit registry: the audited tables, with table and field numbers that never change.\n"
    "Edit key / author / exclude by hand; numbers are assigned by `fbaudit enable` and `fbaudit sync`.\n"
)
_TABLE_KEYS = {"number", "enabled", "key", "author", "exclude", "fields", "retired"}
MAX_NUMBER = 2_147_483_647      # table and field numbers are INTEGER columns (NUM_TABLE, NUM_POLE)


@dataclass
class FieldEntry:
    number: int
    type: str


@dataclass
class TableEntry:
    name: str
    number: int
    enabled: bool = True
    key: list[str] = field(default_factory=list)
    author: str | None = None
    exclude: list[str] = field(default_factory=list)
    fields: dict[str, FieldEntry] = field(default_factory=dict)
    retired: dict[str, FieldEntry] = field(default_factory=dict)

    def max_field_number(self) -> int:
        nums = [f.number for f in self.fields.values()] + [f.number for f in self.retired.values()]
        return max(nums, default=0)


class Registry:
    """The registry file, loaded and validated; ``save()`` writes it back."""

    def __init__(self, path: Path, doc: CommentedMap, tables: dict[str, TableEntry]):
        self.path = path
        self._doc = doc
        self.tables = tables

    # -- loading -----------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path) -> "Registry":
        path = Path(path)
        if not path.exists():
            doc = CommentedMap()
            doc.yaml_set_start_comment(HEADER)
            doc["tables"] = CommentedMap()
            return cls(path, doc, {})
        doc = yamlio.load(path)
        if doc is None:
            doc = CommentedMap()
        if not isinstance(doc, dict):
            raise ConfigError(f"{path}: the registry must be a mapping with a 'tables' key")
        for key in doc:
            if key != "tables":
                raise ConfigError(f"{yamlio.where(path, doc, key)}: unknown key {key!r}; the registry has only 'tables'")
        if doc.get("tables") is None:
            doc["tables"] = CommentedMap()
        tnode = doc["tables"]
        if not isinstance(tnode, dict):
            raise ConfigError(f"{yamlio.where(path, doc, 'tables')}: 'tables' must be a mapping of table names")
        tables: dict[str, TableEntry] = {}
        numbers: dict[int, str] = {}
        for name, node in tnode.items():
            entry = _parse_table(path, tnode, str(name), node)
            if entry.number in numbers:
                raise ConfigError(f"{yamlio.where(path, node, 'number')}: table number {entry.number} is used by "
                                  f"both {numbers[entry.number]!r} and {entry.name!r}")
            numbers[entry.number] = entry.name
            tables[entry.name] = entry
        return cls(path, doc, tables)

    def where(self, table: str, section: str | None = None, name: str | None = None) -> str:
        """``file:line`` of a table (``section`` "fields"/"retired" and a field ``name``: of that field)."""
        node = self._doc["tables"]
        parent, key = node, table
        tnode = node.get(table)
        if section and isinstance(tnode, dict) and isinstance(tnode.get(section), dict) and name in tnode[section]:
            parent, key = tnode[section], name
        elif isinstance(tnode, dict) and "number" in tnode and section is None and name == "number":
            parent, key = tnode, "number"
        return yamlio.where(self.path, parent, key)

    # -- numbering -----------------------------------------------------------
    def next_table_number(self, known_max: int = 0) -> int:
        return max([t.number for t in self.tables.values()] + [known_max]) + 1

    # -- writing -----------------------------------------------------------
    def put(self, entry: TableEntry) -> None:
        """Store ``entry`` in memory and in the YAML document, keeping comments."""
        self.tables[entry.name] = entry
        tnode = self._doc["tables"]
        node = tnode.get(entry.name)
        if not isinstance(node, dict):
            node = CommentedMap()
            tnode[entry.name] = node
        node["number"] = entry.number
        node["enabled"] = entry.enabled
        _set_list(node, "key", entry.key)
        if entry.author:
            node["author"] = entry.author
        elif "author" in node:
            del node["author"]
        _set_list(node, "exclude", entry.exclude)
        node["fields"] = _fields_map(node.get("fields"), entry.fields)
        if entry.retired:
            node["retired"] = _fields_map(node.get("retired"), entry.retired)
        elif "retired" in node:
            del node["retired"]

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        yamlio.dump(self._doc, self.path)


def _flow(items: list[str]):
    from ruamel.yaml.comments import CommentedSeq
    seq = CommentedSeq(items)
    seq.fa.set_flow_style()
    return seq


def _set_list(node: CommentedMap, key: str, values: list[str]) -> None:
    if list(node.get(key) or []) != list(values):
        node[key] = _flow(list(values))
    elif key not in node:
        node[key] = _flow(list(values))


def _fields_map(old: Any, fields: dict[str, FieldEntry]) -> CommentedMap:
    out = old if isinstance(old, CommentedMap) else CommentedMap()
    for name in [k for k in out if k not in fields]:
        del out[name]
    for name, f in fields.items():
        cur = out.get(name)
        if isinstance(cur, dict) and cur.get("number") == f.number and cur.get("type") == f.type:
            continue
        m = CommentedMap(number=f.number, type=f.type)
        m.fa.set_flow_style()
        out[name] = m
    return out


def _parse_fields(path: Path, parent: Any, key: str, node: Any) -> dict[str, FieldEntry]:
    if node is None:
        return {}
    if not isinstance(node, dict):
        raise ConfigError(f"{yamlio.where(path, parent, key)}: '{key}' must be a mapping NAME: {{number, type}}")
    out: dict[str, FieldEntry] = {}
    for name, f in node.items():
        if isinstance(f, int) and not isinstance(f, bool) and 1 <= f <= MAX_NUMBER:
            out[str(name)] = FieldEntry(f, "")
            continue
        if not isinstance(f, dict) or not isinstance(f.get("number"), int) or isinstance(f.get("number"), bool) \
                or not 1 <= f["number"] <= MAX_NUMBER:
            raise ConfigError(f"{yamlio.where(path, node, name)}: field {name!r} needs a positive integer 'number' "
                              f"(1 to {MAX_NUMBER}, e.g. {{number: 3, type: INTEGER}})")
        unknown = set(f) - {"number", "type"}
        if unknown:
            raise ConfigError(f"{yamlio.where(path, node, name)}: unknown key(s) {sorted(unknown)} in field {name!r}")
        out[str(name)] = FieldEntry(int(f["number"]), str(f.get("type") or ""))
    return out


def _str_list(path: Path, node: Any, key: str) -> list[str]:
    v = node.get(key)
    if v is None:
        return []
    if isinstance(v, str):
        return [v]
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise ConfigError(f"{yamlio.where(path, node, key)}: '{key}' must be a list of column names")
    return [str(x) for x in v]


def _parse_table(path: Path, tnode: Any, name: str, node: Any) -> TableEntry:
    if not isinstance(node, dict):
        raise ConfigError(f"{yamlio.where(path, tnode, name)}: table {name!r} must be a mapping (number, key, fields, ...)")
    for key in node:
        if key not in _TABLE_KEYS:
            raise ConfigError(f"{yamlio.where(path, node, key)}: unknown key {key!r} in table {name!r}; "
                              f"allowed: {', '.join(sorted(_TABLE_KEYS))}")
    num = node.get("number")
    if not isinstance(num, int) or isinstance(num, bool) or not 1 <= num <= MAX_NUMBER:
        raise ConfigError(f"{yamlio.where(path, tnode, name)}: table {name!r} needs a positive integer 'number' "
                          f"(1 to {MAX_NUMBER})")
    enabled = node.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ConfigError(f"{yamlio.where(path, node, 'enabled')}: 'enabled' must be true or false")
    author = node.get("author")
    if author is not None and not isinstance(author, str):
        raise ConfigError(f"{yamlio.where(path, node, 'author')}: 'author' must be a column name")
    entry = TableEntry(
        name=name, number=num, enabled=enabled,
        key=_str_list(path, node, "key"), author=author, exclude=_str_list(path, node, "exclude"),
        fields=_parse_fields(path, node, "fields", node.get("fields")),
        retired=_parse_fields(path, node, "retired", node.get("retired")),
    )
    seen: dict[int, str] = {}
    for fname, f in list(entry.fields.items()) + list(entry.retired.items()):
        if f.number in seen:
            raise ConfigError(f"{yamlio.where(path, node, 'fields')}: field number {f.number} of table {name!r} "
                              f"is used by both {seen[f.number]!r} and {fname!r}")
        seen[f.number] = fname
    return entry
