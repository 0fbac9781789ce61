"""Architecture rules checked on the source: no import cycles; tasks named only by the operators
and the preset table (everything else asks the operator: its level, perceptual pair, options)."""

from __future__ import annotations

import ast
from pathlib import Path


SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "ilo"
#: task keys, including the former classifier-guidance tag
TASK_NAMES = {"inpaint", "superres", "denoise", "cs", "classify", "identity"}
#: where task names may be switched on: the operator classes and the preset table
TASK_HOMES = ("ilo.operators", "ilo.solvers.presets")
#: the command line: a package on top that nothing in the library imports
CLI_MODULES = ("ilo.cli",)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(root: Path = PACKAGE) -> dict[str, Path]:
    return {module_name(p): p for p in sorted(root.rglob("*.py"))}


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The ilo modules ``name`` imports anywhere (module level or inside functions)."""
    is_pkg = path.name == "__init__.py"
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in known else mod for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in known:  # "ilo.x.y" where y is a name: its module
                t = t.rpartition(".")[0]
            if t and t != name:
                out.add(t)
    return out


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    return {m: imports(m, p, set(mods)) for m, p in mods.items()}


def cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(comp)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _is_task(node: ast.AST) -> bool:
    """A name or attribute called ``task``, or a task-name string (alone or in a literal collection)."""
    if isinstance(node, ast.Name):
        return node.id == "task"
    if isinstance(node, ast.Attribute):
        return node.attr == "task"
    if isinstance(node, ast.Constant):
        return node.value in TASK_NAMES
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return any(isinstance(e, ast.Constant) and e.value in TASK_NAMES for e in node.elts)
    return False


def task_switches(path: Path) -> list[str]:
    """Comparisons with a task (``task == ...``, ``op.task in (...)``, ``x != "cs"``), dict
    literals keyed by task names and subscripts by a task name, as ``line: source``."""
    text = path.read_text()
    hits = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Compare):
            hit = any(_is_task(n) for n in [node.left, *node.comparators])
        elif isinstance(node, ast.Dict):
            hit = any(isinstance(k, ast.Constant) and k.value in TASK_NAMES for k in node.keys)
        elif isinstance(node, ast.Subscript):
            hit = isinstance(node.slice, ast.Constant) and node.slice.value in TASK_NAMES
        else:
            continue
        if hit:
            hits.append(f"{path.relative_to(SRC)}:{node.lineno}: {ast.get_source_segment(text, node)[:80]}")
    return hits


def _switches(select) -> list[str]:
    return [h for m, p in modules().items() if select(m) for h in task_switches(p)]


def _under(m: str, prefixes) -> bool:
    return any(m == p or m.startswith(p + ".") for p in prefixes)


# ---------------------------------------------------------------------------------------------
def test_the_checks_see_what_they_look_for(tmp_path):
    """The detectors on a tiny example: a cycle, and each kind of task switch."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]
    src = tmp_path / "ilo" / "m.py"
    src.parent.mkdir()
    src.write_text('if task == "x": pass\nif op.task in ("a",): pass\nif k != "cs": pass\n'
                   'T = {"inpaint": 1}\nv = T["denoise"]\nok = {"method": 1}["method"]\n')
    global SRC
    old, SRC = SRC, tmp_path
    try:
        assert [h.split(":")[1] for h in task_switches(src)] == ["1", "2", "3", "4", "5"]
    finally:
        SRC = old


def test_imports_include_lazy_ones():
    graph = import_graph()
    assert "ilo.solvers" in graph["ilo.pipeline"] and "ilo.operators.base" in graph["ilo.solvers.csgm"]
    assert "ilo.images" in graph["ilo.operators.base"]  # imported inside a method


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_the_library_never_imports_the_cli():
    graph = import_graph()
    up = [f"{m} -> {t}" for m, ts in graph.items() if not _under(m, CLI_MODULES + ("ilo.__main__",))
          for t in ts if _under(t, CLI_MODULES)]
    assert up == [], up


def test_no_task_switch_outside_operators_and_presets():
    hits = _switches(lambda m: not _under(m, TASK_HOMES))
    assert hits == [], "\n".join(hits)


def test_the_self_tunings_modules_are_not_hidden_by_its_names():
    """``ilo.solvers.selection.<part>`` is the module ``selection/<part>.py`` (tests and
    ``ilo.bench.solve_cost`` patch names there): the package re-exports its modules' names, and a
    function named like a module (``candidates`` once) would hide it, so ``import
    ilo.solvers.selection.<part> as m`` returned the function. (``ilo.solvers.csgm`` and
    ``ilo.solvers.ilo`` are such functions by design: the package's API.)"""
    import importlib
    import types

    pkg = importlib.import_module("ilo.solvers.selection")
    parts = sorted(p.stem for p in (PACKAGE / "solvers" / "selection").glob("*.py") if p.stem != "__init__")
    assert len(parts) >= 5
    hidden = [p for p in parts if not isinstance(getattr(pkg, p, None), types.ModuleType)]
    assert not hidden, f"names of ilo.solvers.selection hide its modules: {hidden}"
