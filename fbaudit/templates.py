"""SQL templates in ``ddl/``: one renderer, named ``{{PLACEHOLDERS}}``."""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

from .errors import FbauditError

_PLACEHOLDER = re.compile(r"\{\{([A-Z_]+)\}\}")
_OBJECT = re.compile(r"^--\s*object:\s*(\w+)\s+(\w+(?:\.\w+)?)\s*$", re.M)
# A bind marker, or a quoted string or identifier (whose ? are text): as_script replaces only markers.
_MARKER = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|\?")


def ddl_dir() -> Path:
    here = Path(__file__).resolve().parent.parent / "ddl"
    if here.is_dir():
        return here
    installed = Path(sys.prefix) / "share" / "fbaudit" / "ddl"
    if installed.is_dir():
        return installed
    raise FbauditError(f"SQL templates not found (looked in {here} and {installed}); reinstall fbaudit.")


@dataclass(frozen=True)
class Statement:
    """One SQL statement to run, with bound parameters (never inlined when run)."""

    sql: str
    params: tuple = ()
    kind: str | None = None      # for "-- object:" statements: TABLE, VIEW, ...
    object: str | None = None    # the object's name without prefix

    def as_script(self) -> str:
        """The statement for a script: parameters shown as SQL literals.

        One pass over the SQL text: each ``?`` outside quotes takes the next parameter, and what a
        parameter holds (a ``?`` in a name or a value) is never read again as a marker.
        """
        if not self.params:
            return self.sql
        params = iter(self.params)
        return _MARKER.sub(lambda m: m.group(0) if m.group(0) != "?" else _literal(next(params)), self.sql)


def _literal(v: object) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return "TRUE" if v else "FALSE"
    if isinstance(v, (int, float)):
        return str(v)
    return "'" + str(v).replace("'", "''") + "'"


def render(name: str, *, upgrades: bool = False, **values: str) -> list[Statement]:
    """Render ``ddl/<name>.sql`` into statements; a missing value names the template.

    ``-- object: COLUMN TABLE.COLUMN`` statements add a column to a table made by an older
    fbaudit; its CREATE TABLE has the column already, so they are left out unless ``upgrades``
    (objects.plan_init, which keeps them only for tables that exist).
    """
    path = ddl_dir() / f"{name}.sql"
    text = path.read_text(encoding="utf-8")

    def sub(m: re.Match) -> str:
        key = m.group(1)
        if key not in values:
            raise FbauditError(f"template {path.name}: no value for placeholder {{{{{key}}}}}")
        return values[key]

    # The template's own text is split into statements (lines of only ^) and loses its comment
    # lines first; the values go in last, in one pass, so nothing in a value (a name holding a
    # line "^", a line "-- ...", a "{{PLACEHOLDER}}") is ever read as template syntax.
    out: list[Statement] = []
    for chunk in re.split(r"^\^\s*$", text, flags=re.M):
        m = _OBJECT.search(chunk)
        body = "\n".join(line for line in chunk.strip().splitlines() if not line.lstrip().startswith("--")).strip()
        if not body:
            continue
        out.append(Statement(_PLACEHOLDER.sub(sub, body), kind=m.group(1) if m else None,
                             object=m.group(2) if m else None))
    if not upgrades:
        tables = [st.object for st in out if st.kind == "TABLE"]
        out = [st for st in out if not (st.kind == "COLUMN" and st.object.split(".")[0] in tables)]
    return out


def as_isql_script(statements: list[Statement], *, header: str = "",
                   then: list[Statement] = ()) -> str:
    """A script isql accepts: PSQL bodies need SET TERM, so every statement ends with ^.

    ``then``: statements for a second transaction, after the first COMMIT
    (rows for tables the first transaction creates).
    """
    lines = [f"-- {line}" for line in header.splitlines()] if header else []
    lines += ["SET TERM ^ ;", ""]
    for st in statements:
        lines += [st.as_script(), "^", ""]
    lines += ["SET TERM ; ^", "COMMIT;", ""]
    if then:
        lines += [st.as_script() + ";" for st in then] + ["COMMIT;", ""]
    return "\n".join(lines)
