"""The floors of the house, checked on the source (every import statement, those inside functions too).

``tickbus`` → ``actors`` → ``broker`` → ``observability``: import-linter's layers contract (run by
``make lint``) says each package imports only the ones below. These tests add what it does not check:
no import cycle between any two modules, and no import of another package's private module (a name
with a leading underscore below the package) from anywhere but that package and its own tests.
"""

from __future__ import annotations

import ast
import subprocess
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("tickbus", "actors", "broker", "observability")


def _python_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "*.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if listed.returncode == 0 and listed.stdout.strip():
        return [ROOT / line for line in listed.stdout.split() if (ROOT / line).exists()]
    return [p for p in ROOT.rglob("*.py") if ".venv" not in p.parts]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> Iterator[tuple[int, str]]:
    """``(line, module or module.name)`` of every import in ``path``, relative ones resolved."""
    name = _module_name(path)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            yield node.lineno, module
            for alias in node.names:
                yield node.lineno, f"{module}.{alias.name}"


def _graph() -> dict[str, set[str]]:
    sources = {_module_name(p): p for p in _python_files() if p.relative_to(ROOT).parts[0] in PACKAGES}
    edges: dict[str, set[str]] = {m: set() for m in sources}
    for module, path in sources.items():
        for _, imported in _imports(path):
            target = imported
            while target and target not in sources:
                target = target.rpartition(".")[0]
            if target and target != module:
                edges[module].add(target)
    return edges


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root, children_of_root in edges.items():
        if root in index:
            continue
        work = [(root, iter(sorted(children_of_root)))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
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
    return found


def test_no_import_cycle_between_modules_lazy_imports_included():
    assert _cycles(_graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_packages_import_each_other_only_downwards():
    order = {name: floor for floor, name in enumerate(PACKAGES)}
    upward = [
        f"{module} imports {target}"
        for module, targets in _graph().items()
        for target in targets
        if order[target.split(".")[0]] < order[module.split(".")[0]]
    ]
    assert upward == []


def _owner(path: Path) -> str | None:
    parts = path.relative_to(ROOT).parts
    if parts[0] in PACKAGES:
        return parts[0]
    if parts[0] == "tests" and len(parts) > 2 and parts[1] in PACKAGES:
        return parts[1]  # tests/<package>/...: that package's own unit tests
    return None


def test_no_module_imports_another_packages_private_modules():
    private = []
    for path in _python_files():
        owner = _owner(path)
        for line, target in _imports(path):
            parts = target.split(".")
            if parts[0] not in PACKAGES or parts[0] == owner:
                continue
            if any(p.startswith("_") and not p.startswith("__") for p in parts[1:]):
                private.append(f"{path.relative_to(ROOT)}:{line}: {target}")
    assert private == []
