"""The shape of the package's source: module and function sizes, in-function imports, cycles.

Reads the ``.py`` files under a source root (default ``src/gliomaseg``) as text and AST; it
imports and runs none of them. It measures:

* modules (``.py`` files, ``__init__`` included; ``top_level_modules``: those directly under
  the root), total lines (``wc -l``), the modules over 400 lines and the largest one;
* functions and methods (nested ones too) by ``end_lineno - lineno + 1`` (the ``def`` line to
  the last line of the body, decorators left out): the ten longest and all over 60 lines;
* in-function imports of the package's own modules (an ``import``/``from`` statement inside
  a function body that names ``<package>...`` or is relative), per module;
* import cycles among the package's modules: the strongly connected components of more than
  one module of the graph of every import of our own modules (module-level, in-function and
  ``if TYPE_CHECKING:``), and again of the module-level imports only (what runs at import
  time; ``TYPE_CHECKING`` blocks left out). ``from pkg.a import b`` is an edge to
  ``pkg.a.b`` when ``b`` is a submodule, to ``pkg.a`` otherwise; an import's implicit import
  of the parent packages is not an edge, nor is ``importlib.import_module("...")``.

The package name is the root folder's name. Prints one JSON object with the header fields the
other benchmarks use (``bench/README.md``) and the git commit of the tree measured::

    .venv/bin/python bench/code_shape.py [--root src/gliomaseg] > code_shape.json
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import platform
import sys
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

LONG_MODULE_LINES = 400
LONG_FUNCTION_LINES = 60
LONGEST_SHOWN = 10


@dataclass(frozen=True)
class Import:
    """One import of our own package: where it stands and which module it reaches."""

    source: str
    target: str
    line: int
    scope: str  # "module", "function" or "type_checking"


def module_name(path: Path, root: Path) -> str:
    """``root/a/b.py`` -> ``pkg.a.b``; ``root/a/__init__.py`` -> ``pkg.a`` (pkg: root's name)."""
    parts = [root.name, *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk_scoped(
    tree: ast.Module,
) -> list[tuple[ast.AST, list[str], str]]:
    """Every node with its qualified-name stack and scope (module/function/type_checking)."""
    out: list[tuple[ast.AST, list[str], str]] = []

    def visit(node: ast.AST, names: list[str], scope: str) -> None:
        for child in ast.iter_child_nodes(node):
            child_names, child_scope = names, scope
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                child_names, child_scope = [*names, child.name], "function"
            elif isinstance(child, ast.ClassDef):
                child_names = [*names, child.name]
            elif isinstance(child, ast.If) and scope == "module" and _is_type_checking(child.test):
                out.append((child, names, scope))
                for sub in child.body:
                    out.append((sub, names, "type_checking"))
                    visit(sub, names, "type_checking")
                for sub in child.orelse:
                    out.append((sub, names, scope))
                    visit(sub, names, scope)
                continue
            out.append((child, child_names, child_scope))
            visit(child, child_names, child_scope)

    visit(tree, [], "module")
    return out


def _resolve(
    node: ast.Import | ast.ImportFrom, here: str, is_package: bool, modules: set[str]
) -> list[str]:
    """The modules of our package that one import statement names (empty for others)."""
    package = here.split(".")[0]

    def known(name: str) -> str | None:
        while name and name not in modules:  # pkg.a.b.c (a name in b) -> the module pkg.a.b
            name = name.rpartition(".")[0]
        return name or None

    if isinstance(node, ast.Import):
        names = [a.name for a in node.names if a.name.split(".")[0] == package]
        return [m for m in map(known, names) if m]
    if node.level:
        base = here.split(".") if is_package else here.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        origin = ".".join([*base, node.module] if node.module else base)
    else:
        origin = node.module or ""
    if origin.split(".")[0] != package:
        return []
    targets = []
    for alias in node.names:
        sub = f"{origin}.{alias.name}"
        target = sub if sub in modules else known(origin)
        if target and target not in targets:
            targets.append(target)
    return targets


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components of more than one node, each sorted, largest first."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return sorted(found, key=lambda c: (-len(c), c))


def shortest_cycle(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """A shortest cycle through the component's first module, as ``[a, b, ..., a]``."""
    members, start = set(component), component[0]
    parent: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for node in frontier:
            for child in sorted(graph.get(node, ())):
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parent[path[-1]])
                    return [*reversed(path), start]
                if child in members and child not in parent:
                    parent[child] = node
                    nxt.append(child)
        frontier = nxt
    return []


def _cycles(imports: list[Import], scopes: set[str]) -> dict[str, Any]:
    graph: dict[str, set[str]] = {}
    for imp in imports:
        if imp.scope in scopes and imp.source != imp.target:
            graph.setdefault(imp.source, set()).add(imp.target)
    components = strongly_connected(graph)
    return {
        "count": len(components),
        "components": [
            {
                "modules": component,
                "example_cycle": " -> ".join(shortest_cycle(graph, component)),
                "edges": [
                    f"{imp.source} -> {imp.target} (line {imp.line}, {imp.scope})"
                    for imp in imports
                    if imp.scope in scopes and imp.source in component and imp.target in component
                ],
            }
            for component in components
        ],
    }


def measure(root: Path) -> dict[str, Any]:
    """The shape figures of the package under ``root`` (see the module docstring)."""
    files = sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)
    names = {module_name(p, root): p for p in files}
    modules = set(names)
    lines: dict[str, int] = {}
    functions: list[dict[str, Any]] = []
    imports: list[Import] = []
    for name, path in names.items():
        text = path.read_text(encoding="utf-8")
        rel = path.relative_to(root.parent).as_posix()
        lines[rel] = text.count("\n") + (not text.endswith("\n") and bool(text))
        tree = ast.parse(text, filename=str(path))
        for node, qualname, scope in _walk_scoped(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                functions.append(
                    {"name": ".".join(qualname), "file": f"{rel}:{node.lineno}", "lines": length}
                )
            elif isinstance(node, ast.Import | ast.ImportFrom):
                for target in _resolve(node, name, path.name == "__init__.py", modules):
                    imports.append(Import(name, target, node.lineno, scope))
    functions.sort(key=lambda f: (-f["lines"], f["file"]))
    long_modules = {
        k: v for k, v in sorted(lines.items(), key=lambda kv: -kv[1]) if v > LONG_MODULE_LINES
    }
    long_functions = [f for f in functions if f["lines"] > LONG_FUNCTION_LINES]
    in_function = {(i.source, i.line) for i in imports if i.scope == "function"}
    per_module = Counter(source for source, _ in in_function)
    largest = max(lines, key=lambda k: lines[k]) if lines else None
    return {
        "modules": len(files),
        "top_level_modules": sum(1 for p in files if p.parent == root),
        "total_lines": sum(lines.values()),
        "largest_module": {"file": largest, "lines": lines[largest]} if largest else None,
        f"modules_over_{LONG_MODULE_LINES}_lines": {
            "count": len(long_modules),
            "modules": long_modules,
        },
        "functions": len(functions),
        f"longest_{LONGEST_SHOWN}_functions": functions[:LONGEST_SHOWN],
        f"functions_over_{LONG_FUNCTION_LINES}_lines": {
            "count": len(long_functions),
            "functions": long_functions,
        },
        "in_function_imports": {
            "count": len(in_function),
            "per_module": dict(sorted(per_module.items(), key=lambda kv: (-kv[1], kv[0]))),
        },
        "type_checking_imports": len(
            {(i.source, i.line) for i in imports if i.scope == "type_checking"}
        ),
        "import_cycles_all_imports": _cycles(imports, {"module", "function", "type_checking"}),
        "import_cycles_module_level": _cycles(imports, {"module"}),
    }


def header(root: Path, note: str) -> dict[str, Any]:
    """The header fields of every benchmark (:func:`gliomaseg.core.machine.report_header`)."""
    try:
        from gliomaseg.core.machine import report_header
    except ImportError:  # a gliomaseg older than core/machine.py: a minimal stand-in
        return {
            "benchmark": "code_shape",
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {"cpu_count": os.cpu_count(), "arch": platform.machine()},
            "python": platform.python_version(),
            "git_commit": None,
            "note": note,
        }
    return report_header("code_shape", note=note, folder=root)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--root", type=Path, default=Path("src/gliomaseg"), help="package folder")
    parser.add_argument("--note", default="", help="free text stored in the JSON")
    args = parser.parse_args(argv)
    if not args.root.is_dir():
        print(f"code_shape: {args.root} is not a folder", file=sys.stderr)
        return 2
    report = {
        **header(args.root, args.note),
        "settings": {"root": str(args.root)},
        "results": measure(args.root),
    }
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
