"""The layout's rules, read from the source: which package may import which, and no cycles.

Every import counts, including those inside functions and under ``TYPE_CHECKING``: a
cycle hidden behind a local import is still a cycle a reader has to hold in their head.
The rules are the table in ``docs/layout.md``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "runbook"

# package -> the runbook packages its modules may import (besides themselves)
MAY_IMPORT = {
    "format": set(),
    "record": {"format"},
    "notify": {"format", "record"},
    "transports": {"format"},
    "engine": {"format", "record", "notify", "transports"},
    "tui": {"format", "record", "notify", "transports", "engine"},
    "demo": {"format", "record", "notify", "transports", "engine"},
}
TEXTUAL_ALLOWED = ("runbook.tui", "runbook.cli", "runbook.launch")


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, root: Path) -> Iterator[tuple[int, str]]:
    """(line, module) for every import in the file, relative ones resolved."""
    here = module_name(path, root)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            yield node.lineno, base
            for alias in node.names:  # `from runbook.record import events` imports a module
                if (
                    (root.parent / (base + "." + alias.name).replace(".", "/"))
                    .with_suffix(".py")
                    .exists()
                ):
                    yield node.lineno, f"{base}.{alias.name}"


def graph(root: Path = ROOT) -> dict[str, set[tuple[int, str]]]:
    return {module_name(p, root): set(imports(p, root)) for p in sorted(root.rglob("*.py"))}


def package_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in MAY_IMPORT) else None


def layer_violations(modules: dict[str, set[tuple[int, str]]]) -> list[str]:
    problems = []
    for name, found in modules.items():
        mine = package_of(name)
        for line, target in sorted(found):
            where = f"{name.replace('.', '/')}.py:{line}"
            if target.split(".")[0] == "textual" and not name.startswith(TEXTUAL_ALLOWED):
                problems.append(f"{where}: imports {target}; only tui/, cli and launch may")
            if mine is None or not target.startswith("runbook."):
                continue
            theirs = package_of(target)
            if theirs is None and target != "runbook":
                problems.append(f"{where}: {mine}/ imports {target} (the top: cli, launch)")
            elif theirs not in (mine, None) and theirs not in MAY_IMPORT[mine]:
                problems.append(f"{where}: {mine}/ imports {target} ({theirs}/)")
    return problems


def cycles(modules: dict[str, set[tuple[int, str]]]) -> list[list[str]]:
    """Import cycles among modules of one package (a strongly connected component > 1)."""
    edges = {
        name: {t for _, t in found if t in modules and package_of(t) == package_of(name)}
        for name, found in modules.items()
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's algorithm
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in edges[v]:
                found.append(sorted(component))

    for v in edges:
        if v not in index:
            visit(v)
    return found


def test_packages_import_only_what_the_layout_allows() -> None:
    problems = layer_violations(graph())
    assert not problems, "imports the layout forbids:\n" + "\n".join(problems)


def test_no_package_has_an_import_cycle() -> None:
    found = cycles(graph())
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_the_rules_catch_what_they_forbid(tmp_path: Path) -> None:
    """The checks themselves can fail: a small tree that breaks each rule once."""
    tree = tmp_path / "runbook"
    files = {
        "__init__.py": "",
        "format/__init__.py": "",
        "format/model.py": "from runbook.engine import session\n",
        "record/__init__.py": "",
        "record/report.py": "import textual\nfrom runbook.tui.app import RunbookApp\n",
        "engine/__init__.py": "",
        "engine/session.py": "from runbook.engine.attempt import run\n",
        "engine/attempt.py": "def run():\n    from runbook.engine.session import Session\n",
    }
    for name, text in files.items():
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_text(text)
    modules = graph(tree)
    assert layer_violations(modules) == [
        "runbook/format/model.py:1: format/ imports runbook.engine (engine/)",
        "runbook/format/model.py:1: format/ imports runbook.engine.session (engine/)",
        "runbook/record/report.py:1: imports textual; only tui/, cli and launch may",
        "runbook/record/report.py:2: record/ imports runbook.tui.app (tui/)",
    ]
    assert cycles(modules) == [["runbook.engine.attempt", "runbook.engine.session"]]


@pytest.mark.parametrize("package", sorted(MAY_IMPORT))
def test_each_package_says_what_it_may_import(package: str) -> None:
    doc = ast.get_docstring(ast.parse((ROOT / package / "__init__.py").read_text()))
    assert doc, f"runbook/{package}/__init__.py has no docstring"
