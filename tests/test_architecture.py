"""The layout holds: rooms import one way (no cycle between modules or between rooms), imports sit at the top of
their module, the light packages stay light, and packaging ships every room."""

from __future__ import annotations

import ast
import fnmatch
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted([*(ROOT / "agents").rglob("*.py"), *(ROOT / "payroute_env").rglob("*.py")])
SCRIPTS = [ROOT / "train.py", ROOT / "evaluate.py"]
# imports a function may make to keep an optional dependency optional (the video extra's encoder)
OPTIONAL_IMPORTS: frozenset[str] = frozenset({"imageio_ffmpeg"})


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path) -> set[str]:
    """Every project module ``path`` imports (``from .x import y`` resolved; ``from pkg import mod`` counted as
    ``pkg.mod``)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    known = {module_name(p) for p in SOURCES}
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            submodules = [f"{base}.{alias.name}" for alias in node.names]
            # ``from pkg import mod`` needs only ``pkg.mod``; a name defined in ``pkg/__init__`` needs ``pkg``
            targets = submodules if all(m in known for m in submodules) else [base, *submodules]
        else:
            continue
        found |= {t for t in targets if t in known and t != name}
    return found


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of ``graph`` as a list of nodes (first repeated at the end), or ``None``."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle_and_passes_a_tree() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle_between_modules() -> None:
    graph = {module_name(p): imported_modules(p) for p in SOURCES}
    assert sum(map(len, graph.values())) > 50  # the walk does see the imports
    assert find_cycle(graph) is None


def test_rooms_import_one_way() -> None:
    """Between the rooms of ``agents`` (and ``payroute_env``, which imports none of them) the graph is a chain:
    deciders <- evaluation <- training, evaluation <- analysis; ``agents.algorithms`` is shared."""

    def room(module: str) -> str:
        parts = module.split(".")
        return ".".join(parts[:2]) if parts[0] == "agents" and len(parts) > 1 else parts[0]

    graph: dict[str, set[str]] = {}
    for path in SOURCES:
        here = room(module_name(path))
        graph.setdefault(here, set()).update(room(m) for m in imported_modules(path) if room(m) != here)
    assert find_cycle(graph) is None
    assert not any(r.startswith("agents") for r in graph["payroute_env"])
    assert "agents.training" not in graph["agents.deciders"] | graph["agents.evaluation"]
    assert "agents.deciders" in graph["agents.training"]


@pytest.mark.parametrize("path", [*SOURCES, *SCRIPTS], ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_sit_at_the_top_of_their_module(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    inner = []
    for func in ast.walk(tree):
        if isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
            for node in ast.walk(func):
                if isinstance(node, ast.Import | ast.ImportFrom):
                    names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or "."]
                    inner += [f"line {node.lineno}: {n}" for n in names if n.split(".")[0] not in OPTIONAL_IMPORTS]
    assert inner == []


def test_light_packages_load_neither_torch_nor_stable_baselines3() -> None:
    """``payroute_env`` and ``agents.deciders`` (heuristics, evaluation of saved models) load neither; training does
    (so the check itself can fail)."""
    code = """import sys
heavy = lambda: sorted(m for m in ("torch", "stable_baselines3") if m in sys.modules)
import payroute_env
print(heavy())
import agents.deciders
print(heavy())
import agents.training
print(heavy())"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:3] == ["[]", "[]", "['stable_baselines3', 'torch']"]


def test_packaging_ships_every_room_and_its_data() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    include = config["packages"]["find"]["include"]
    packages = {module_name(p.parent / "__init__.py") for p in SOURCES if p.name == "__init__.py"}
    assert {"agents.deciders", "agents.training", "agents.evaluation", "agents.analysis"} <= packages
    assert all(any(fnmatch.fnmatch(pkg, pattern) for pattern in include) for pkg in packages)
    for package, patterns in config["package-data"].items():
        folder = ROOT / package.replace(".", "/")
        data = [f for f in folder.rglob("*") if f.suffix in {".yml", ".toml"}]
        shipped = [f for f in data if any(fnmatch.fnmatch(str(f.relative_to(folder)), p) for p in patterns)]
        assert data and shipped == data
