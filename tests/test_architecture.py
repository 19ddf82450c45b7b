"""The package's shape: every pebench module belongs to one stage of the pipeline, imports only go
down it, and no two modules import each other, not even through an import inside a function.

Stages, lowest first (README, "Architecture"): core modules every stage shares; encodings; models and
data beside each other; measure; runner, training and reports; the CLI on top.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "pebench"

#: each stage and the stages it may import from (besides itself)
MAY_IMPORT = {
    "core": set(),
    "encodings": {"core"},
    "models": {"core", "encodings"},
    "data": {"core"},
    "measure": {"core", "encodings", "models", "data"},
    "runner": {"core", "encodings", "models", "data", "measure"},
    "training": {"core", "encodings", "models", "data", "measure"},
    "reports": {"core"},
    "cli": {"core", "encodings", "models", "data", "measure", "runner", "training", "reports"},
}
CORE = {"pebench", "pebench.errors", "pebench.atomic", "pebench.env", "pebench.resolution", "pebench.modes",
        "pebench.settings", "pebench.results", "pebench.randomness", "pebench.importing", "pebench.kernels"}
#: packages that are not named after their stage
STAGE_OF_PACKAGE = {"zoo": "models"}


def module_names(root: Path) -> dict[str, Path]:
    names = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the package's modules it imports anywhere in its code (top level, inside functions,
    under TYPE_CHECKING alike). ``from a import b`` counts as importing ``a.b`` when that is a module."""
    package = root.name
    names = module_names(root)
    graph = {}
    for name, path in names.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names if a.name.split(".")[0] == package}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                    and node.module.split(".")[0] == package:
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    targets.add(sub if sub in names else node.module)
        graph[name] = {t for t in targets if t in names and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def stage_of(module: str, core: set[str] = CORE) -> str:
    if module in core:
        return "core"
    first = module.split(".")[1]
    return STAGE_OF_PACKAGE.get(first, first)


def upward_imports(graph: dict[str, set[str]], may_import=MAY_IMPORT, core: set[str] = CORE) -> list[str]:
    return sorted(f"{source} ({stage_of(source, core)}) imports {target} ({stage_of(target, core)})"
                  for source, targets in graph.items() for target in targets
                  if stage_of(target, core) != stage_of(source, core)
                  and stage_of(target, core) not in may_import[stage_of(source, core)])


def test_every_module_belongs_to_a_known_stage():
    unknown = sorted(m for m in module_names(ROOT) if stage_of(m) not in MAY_IMPORT)
    assert not unknown, f"modules outside every stage (add them to a stage package or to CORE): {unknown}"


def test_no_import_cycles():
    assert cycles(import_graph(ROOT)) == []


#: the one import allowed to go up: the top-level package hands plugins `pebench.register_encoding` (lazily,
#: inside a module __getattr__, so that `import pebench` stays free of torch)
PUBLIC_FACADE = ["pebench (core) imports pebench.encodings.plugins (encodings)"]


def test_imports_only_go_down_the_pipeline():
    assert upward_imports(import_graph(ROOT)) == PUBLIC_FACADE


def test_the_checks_find_a_planted_cycle_and_upward_import(tmp_path):
    package = tmp_path / "pkg"
    for name, text in {
        "__init__.py": "",
        "errors.py": "",
        "encodings/__init__.py": "",
        "encodings/base.py": "def f():\n    from pkg.cli.app import main\n",  # upward, hidden in a function
        "cli/__init__.py": "",
        "cli/app.py": "from pkg.encodings import base\nfrom pkg.cli import helpers\n",
        "cli/helpers.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.cli.app import main\n",
    }.items():
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text(text)
    graph = import_graph(package)
    assert cycles(graph) == [["pkg.cli.app", "pkg.cli.helpers", "pkg.encodings.base"]]
    core = {"pkg", "pkg.errors"}
    assert upward_imports(graph, core=core) == ["pkg.encodings.base (encodings) imports pkg.cli.app (cli)"]


@pytest.mark.parametrize("package", sorted(p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()))
def test_each_package_says_what_enters_and_what_leaves(package):
    doc = ast.get_docstring(ast.parse((ROOT / package / "__init__.py").read_text(encoding="utf-8"))) or ""
    assert "Enters:" in doc and "Leaves:" in doc, f"pebench/{package}/__init__.py's docstring must say both"
