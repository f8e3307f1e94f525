"""The package's layer map, enforced: docs/architecture.md explains it.

Every ``fbaudit/*.py`` is read with ``ast`` (imports at module level and inside
functions alike) and checked for four things:

1. no import cycle among fbaudit modules;
2. no ``_private`` name of one module reached from another (``from .x import _y``,
   ``x._y`` where ``x`` is bound to an fbaudit module in that file);
3. no import from a higher layer into a lower one (same layer or below only);
4. every module is placed in ``LAYERS`` (a new module must be given a layer).

A name bound to a module anywhere in a file counts in the whole file (no scopes);
imports under ``if TYPE_CHECKING:`` count like any other. No database is needed:
plain functions, no fixtures. The checkers take a ``{module: source text}``
mapping; the last tests run them on synthetic packages to show each rule fires.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "fbaudit"
DOC = ROOT / "docs" / "architecture.md"
FIX = "see docs/architecture.md"

# 0 foundation, 1 shared services, 2 features, 3 front ends (docs/architecture.md).
LAYERS = {
    "errors": 0, "yamlio": 0, "config": 0, "registry": 0, "runtime": 0, "db": 0, "idents": 0,
    "templates": 0, "catalog": 0, "logs": 0, "progress": 0, "joblock": 0, "bulk": 0,
    "objects": 1, "forms": 1, "sources": 1, "staging": 1,
    "capture": 2, "baseline": 2, "transfer": 2, "rotation": 2, "status": 2, "history": 2,
    "versions": 2, "prune": 2, "checkpoint": 2, "schedule": 2, "upgrade": 2, "undo": 2,
    "cli": 3, "api": 3, "demo": 3, "__main__": 3, "__init__": 3,
}


@dataclass(frozen=True)
class Use:
    """One module reaching another: an import, or ``name`` taken from it."""
    line: int
    target: str          # the fbaudit module reached
    name: str | None     # the name taken from it (None: the module itself)
    text: str            # how it is written, for messages


def read_package() -> dict[str, str]:
    return {p.stem: p.read_text(encoding="utf-8") for p in sorted(PACKAGE.glob("*.py"))}


def _is_private(name: str | None) -> bool:
    return bool(name) and name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _fbaudit_module(level: int, dotted: str | None) -> str | None:
    """'' for the package itself, a module name, or None when not fbaudit."""
    parts = dotted.split(".") if dotted else []
    if level == 1:
        return parts[0] if parts else ""
    if level == 0 and parts and parts[0] == "fbaudit":
        return parts[1] if len(parts) > 1 else ""
    return None


def uses(source: str, modules: set[str]) -> list[Use]:
    """Every fbaudit module a source reaches, by import or by attribute of an imported module."""
    tree = ast.parse(source)
    found: list[Use] = []
    bound: dict[str, str] = {}   # local name -> fbaudit module ('' = the package)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                mod = _fbaudit_module(0, a.name)
                if mod is None:
                    continue
                if mod:
                    found.append(Use(node.lineno, mod, None, f"import {a.name}"))
                bound[a.asname or "fbaudit"] = mod if a.asname else ""
        elif isinstance(node, ast.ImportFrom):
            mod = _fbaudit_module(node.level, node.module)
            if mod is None:
                continue
            where = "." * node.level + (node.module or "")
            for a in node.names:
                text = f"from {where} import {a.name}" + (f" as {a.asname}" if a.asname else "")
                if mod == "" and a.name in modules:       # from . import x [as y]
                    found.append(Use(node.lineno, a.name, None, text))
                    bound[a.asname or a.name] = a.name
                elif mod == "":                           # a name from fbaudit/__init__.py
                    found.append(Use(node.lineno, "__init__", a.name, text))
                else:
                    found.append(Use(node.lineno, mod, None if a.name == "*" else a.name, text))
    for node in ast.walk(tree):                           # x._y, fbaudit.x._y
        if not isinstance(node, ast.Attribute):
            continue
        base = node.value
        if isinstance(base, ast.Name) and bound.get(base.id):
            mod = bound[base.id]
        elif (isinstance(base, ast.Attribute) and isinstance(base.value, ast.Name)
              and bound.get(base.value.id) == "" and base.attr in modules):
            mod = base.attr
        else:
            continue
        found.append(Use(node.lineno, mod, node.attr, ast.unparse(node)))
    return found


def all_uses(sources: dict[str, str]) -> dict[str, list[Use]]:
    modules = set(sources)
    return {m: [u for u in uses(src, modules) if u.target != m] for m, src in sources.items()}


def _paths(graph: dict[str, dict[str, int]], start: str) -> dict[str, list[str]]:
    """The shortest import path from ``start`` to every module it reaches (breadth first)."""
    paths, queue = {start: [start]}, [start]
    while queue:
        here = queue.pop(0)
        for nxt in sorted(graph.get(here, {})):
            if nxt not in paths:
                paths[nxt] = paths[here] + [nxt]
                queue.append(nxt)
    return paths


def cycle_offences(sources: dict[str, str], shown: int = 5) -> list[str]:
    """One offence per ring of modules that import each other: its shortest cycles, as chains."""
    graph: dict[str, dict[str, int]] = {}
    for m, us in all_uses(sources).items():
        for u in us:
            if u.target in sources:
                graph.setdefault(m, {}).setdefault(u.target, u.line)
    paths = {m: _paths(graph, m) for m in graph}
    rings: dict[frozenset[str], dict[frozenset, list[str]]] = {}
    for start in sorted(graph):
        back = [p for n, p in paths[start].items() if start in graph.get(n, {})]
        if back:
            chain = min(back, key=len) + [start]
            ring = frozenset(m for m in paths[start] if start in paths.get(m, {}))
            rings.setdefault(ring, {}).setdefault(frozenset(zip(chain, chain[1:])), chain)
    out = []
    for ring, cycles in sorted(rings.items(), key=lambda r: sorted(r[0])):
        chains = sorted(cycles.values(), key=lambda c: (len(c), c))
        text = [" -> ".join(c) + " (" + ", ".join(f"fbaudit/{a}.py:{graph[a][b]} imports {b}"
                                                   for a, b in zip(c, c[1:])) + ")" for c in chains[:shown]]
        more = f"\n    ... and {len(chains) - shown} more cycles" if len(chains) > shown else ""
        out.append(f"import cycle among {', '.join(sorted(ring))}; break it by moving what both sides need "
                   f"into a lower layer, {FIX}:\n    " + "\n    ".join(text) + more)
    return out


def private_offences(sources: dict[str, str]) -> list[str]:
    return [f"fbaudit/{m}.py:{u.line}: `{u.text}` reaches `{u.name}`, private to {u.target}; make it "
            f"public or move it to a shared module, {FIX}"
            for m, us in all_uses(sources).items() for u in us if _is_private(u.name)]


def layer_offences(sources: dict[str, str], layers: dict[str, int] = LAYERS) -> list[str]:
    upward: dict[tuple[str, int, str], list[str]] = {}    # one line per import statement
    for m, us in all_uses(sources).items():
        for u in us:
            if m in layers and u.target in layers and layers[u.target] > layers[m]:
                upward.setdefault((m, u.line, u.target), []).append(u.name or u.target)
    return [f"fbaudit/{m}.py:{line}: imports {', '.join(names)} from {t} (layer {layers[t]}) into {m} "
            f"(layer {layers[m]}); import only from the same layer or below: move the code down, "
            f"or let the caller pass it in, {FIX}" for (m, line, t), names in upward.items()]


def unplaced_offences(sources: dict[str, str], layers: dict[str, int] = LAYERS) -> list[str]:
    return [f"fbaudit/{m}.py is in no layer; add it to LAYERS in tests/test_layers.py and to "
            f"docs/architecture.md" for m in sorted(sources) if m not in layers]


def _check(offences: list[str], what: str) -> None:
    if offences:
        pytest.fail(f"{len(offences)} {what}:\n" + "\n".join(f"- {o}" for o in offences), pytrace=False)


# ---- the package as it is ----------------------------------------------------------------------

def test_no_import_cycles():
    _check(cycle_offences(read_package()), "import cycle(s) among fbaudit modules")


def test_no_private_names_across_modules():
    _check(private_offences(read_package()), "private name(s) reached from another module")


def test_imports_go_down_the_layers():
    _check(layer_offences(read_package()), "import(s) from a higher layer")


def test_every_module_has_a_layer():
    _check(unplaced_offences(read_package()), "module(s) missing from the layer map")


def test_architecture_doc_lists_every_module():
    text = DOC.read_text(encoding="utf-8") if DOC.exists() else ""
    _check([f"`{m}` (layer {n}) is not named in docs/architecture.md; add its line there"
            for m, n in LAYERS.items() if m != "__init__" and f"`{m}`" not in text], "module(s) missing from the doc")


# ---- the checkers on synthetic packages: each rule fires -----------------------------------------

def test_checker_finds_a_cycle_through_a_function_level_import():
    found = cycle_offences({"a": "from . import b\n", "b": "def f():\n    from .c import g\n",
                            "c": "import fbaudit.a as a_mod\n", "d": "from .a import x\n"})
    assert len(found) == 1 and "a -> b -> c -> a" in found[0] and "fbaudit/b.py:2 imports c" in found[0]
    assert cycle_offences({"a": "from . import b\n", "b": "from .c import x\n", "c": ""}) == []


def test_checker_finds_private_names_across_modules():
    src = ("from .a import _x, ok, __version__\nfrom fbaudit.a import _y as y\nfrom . import a as a_mod\n"
           "import fbaudit, fbaudit.a as fa\n"
           "def f(self):\n    return a_mod._z, fa._w, fbaudit.a._v, self._mine, a_mod.public, _own\n")
    found = private_offences({"a": "_x = _own = 1\n", "b": src})
    assert [o.split(":")[1] for o in found] == ["1", "2", "6", "6", "6"], found
    assert all("private to a" in o for o in found)
    assert private_offences({"a": "_x = 1\nprint(_x)\n"}) == []


def test_checker_finds_an_upward_import():
    layers = {"low": 0, "mid": 1, "high": 1}
    found = layer_offences({"low": "def f():\n    from . import mid\n", "mid": "from .high import h\n",
                            "high": "from .low import x\n"}, layers)
    assert len(found) == 1 and found[0].startswith("fbaudit/low.py:2:") and "mid (layer 1)" in found[0]


def test_checker_finds_a_module_without_a_layer():
    found = unplaced_offences({"known": "", "newcomer": ""}, {"known": 0})
    assert len(found) == 1 and "fbaudit/newcomer.py is in no layer" in found[0]
