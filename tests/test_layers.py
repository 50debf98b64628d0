"""The floors of the house: core < engines < report < application, no import upward, no cycle.

Every import statement of every module is read with ``ast`` (function-local ones included), as
are the string tables the command line imports by name (``cubist.cli.common.COMMANDS``).
"""
import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("cubist", "search", "pruners")

# module name -> floor (0 core, 1 engines, 2 report, 3 application); the longest prefix decides
FLOORS = {"cubist": 0, "search": 1, "pruners": 1, "cubist.report": 2, "cubist.cli": 3}
FLOOR_NAMES = ("core", "engines", "report", "application")
SIBLINGS = {("search", "pruners"), ("pruners", "search")}   # engines do not import each other


def modules() -> dict[str, pathlib.Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


MODULES = modules()


def floor(name: str) -> int:
    best = max((p for p in FLOORS if name == p or name.startswith(p + ".")), key=len)
    return FLOORS[best]


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _ours(name: str) -> str | None:
    """The module of ours that ``name`` denotes (a module, or a package for a name in it)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def imports(module: str) -> set[str]:
    """Modules of ours that ``module`` imports anywhere in its body (function-local too)."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, is_package, node)
            # ``from pkg import sub`` imports the submodule when there is one
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None))
              == "import_module" and node.args and isinstance(node.args[0], ast.Constant)):
            arg = node.args[0].value
            if arg.startswith("."):
                raise AssertionError(f"{module}: relative import_module({arg!r}) cannot be checked")
            names = [arg]
        else:
            continue
        for name in names:
            ours = _ours(name)
            if ours is not None and ours != module:
                out.add(ours)
    return out


GRAPH = {m: imports(m) for m in MODULES}


def test_the_walker_sees_imports_of_every_kind():
    assert "cubist.masks" in GRAPH["cubist.model"]            # relative, module level
    assert "search.engine" in GRAPH["search.phases"]          # relative, function-local
    assert "cubist.report.tables" in GRAPH["cubist.cli.plot"]
    assert "search.enumerate" in GRAPH["cubist.report.symmetry"]


def test_the_command_table_names_application_modules():
    from cubist.cli.common import COMMANDS
    for name, (module, _) in COMMANDS.items():
        assert module in MODULES, f"command {name}: no module {module}"
        assert floor(module) == 3, f"command {name} lives in {module}, not on the application floor"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_import_points_up(module):
    mine = floor(module)
    for other in sorted(GRAPH[module]):
        assert floor(other) <= mine, (f"{module} ({FLOOR_NAMES[mine]}) imports {other} "
                                      f"({FLOOR_NAMES[floor(other)]}), a higher floor")
        assert (module.split(".")[0], other.split(".")[0]) not in SIBLINGS, \
            f"engine {module} imports the other engine's {other}"


def test_no_import_cycle():
    state, stack = {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for n in sorted(GRAPH[m]):
            if state.get(n) == "open":
                cycle = stack[stack.index(n):] + [n]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = "done"

    for m in sorted(MODULES):
        if m not in state:
            visit(m)


def test_a_cycle_and_an_upward_import_would_be_caught(monkeypatch):
    """The checks above fail on a planted cycle and a planted upward import."""
    monkeypatch.setitem(GRAPH, "cubist.masks", GRAPH["cubist.masks"] | {"cubist.model"})
    with pytest.raises(AssertionError, match="import cycle"):
        test_no_import_cycle()
    monkeypatch.setitem(GRAPH, "cubist.store", GRAPH["cubist.store"] | {"cubist.report.tables"})
    with pytest.raises(AssertionError, match="higher floor"):
        test_no_import_points_up("cubist.store")
