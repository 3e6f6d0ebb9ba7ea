"""The package's shape, checked from the code itself: no import cycle between its packages, and
metric names spelled only in ``record/metric_names.py``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from critical_periods.record import metric_names

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "critical_periods"


def room(module: str) -> str:
    """A module's room: its subpackage (``record``, ``sweep``, ...) or, at the top level, itself."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
    return ".".join(parts)


def imported_modules(path: Path) -> set[str]:
    """Every ``critical_periods`` module ``path`` imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("critical_periods"):
            found.add(node.module)
            if node.module == "critical_periods":  # from critical_periods import train
                found.update(f"critical_periods.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("critical_periods"))
    return found


def room_arrows() -> dict[str, set[str]]:
    arrows: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        source = room(module_name(path))
        for target in imported_modules(path):
            if target.count(".") >= 1 and room(target) != source:
                arrows.setdefault(source, set()).add(room(target))
    return arrows


def find_cycle(arrows: dict[str, set[str]]) -> list[str] | None:
    """A cycle in ``arrows`` as a list of rooms, or ``None``."""
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(arrows.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(arrows):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_find_cycle_finds_one_and_only_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "d": {"a"}}) is None


def test_no_import_cycle_between_packages():
    arrows = room_arrows()
    assert "record" in arrows and "sweep" in arrows  # the scan sees the package
    assert find_cycle(arrows) is None, f"import cycle between packages: {' -> '.join(find_cycle(arrows))}"


def module_level_imports(path: Path) -> set[str]:
    """The ``critical_periods`` modules ``path`` imports when it is imported (not inside functions,
    where a lazy import is a deliberate way to keep heavy or higher modules out of an import)."""
    found = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("critical_periods."):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("critical_periods."))
    return found


def test_no_import_cycle_between_files():
    """No two files import each other, directly or through others, when imported: a cycle makes the
    import order matter (the reproduction's study modules had one)."""
    arrows = {module_name(path): module_level_imports(path) for path in PACKAGE.rglob("*.py")}
    modules = set(arrows)
    arrows = {source: {t for t in targets if t in modules and t != source} for source, targets in arrows.items()}
    assert len(arrows) > 50
    assert find_cycle(arrows) is None, f"import cycle between files: {' -> '.join(find_cycle(arrows))}"


@pytest.mark.parametrize("low, high", [
    ("record", "analysis"), ("record", "tracking"), ("record", "sweep"), ("tracking", "analysis"),
    ("probes", "callbacks"), ("analysis", "sweep"), ("analysis", "tracking"), ("callbacks", "sweep"),
])
def test_lower_rooms_never_import_higher_ones(low, high):
    assert high not in room_arrows().get(low, set()), f"{low}/ imports {high}/ (see docs/architecture.md)"


def metric_name_values() -> set[str]:
    values = {value for name, value in vars(metric_names).items()
              if name.isupper() and isinstance(value, str) and "/" in value}
    assert "fisher/trace" in values and "train/loss" in values
    return values


def stray_literals(path: Path, names: set[str]) -> list[tuple[int, str]]:
    """String constants in code (not docstrings) that spell a metric name or a family of one."""
    tree = ast.parse(path.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    stray = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            text = node.value
            if text in names or any(text.startswith(name + "/") for name in names):
                stray.append((node.lineno, text))
    return stray


def test_stray_literal_finder_sees_a_literal(tmp_path):
    source = tmp_path / "m.py"
    source.write_text('"""fisher/trace in a docstring is fine."""\nx = {"fisher/trace": 1}\ny = f"fisher/trace/{x}"\n')
    assert stray_literals(source, {"fisher/trace"}) == [(2, "fisher/trace"), (3, "fisher/trace/")]


def test_metric_names_are_spelled_only_in_metric_names_py():
    names = metric_name_values()
    stray = {f"{path.relative_to(PACKAGE)}:{line} {text!r}"
             for path in PACKAGE.rglob("*.py") if path.name != "metric_names.py"
             for line, text in stray_literals(path, names)}
    assert not stray, "import these from critical_periods.record.metric_names: " + ", ".join(sorted(stray))
