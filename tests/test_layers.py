"""The import direction of the template's layers (README, "What is where"), checked by walking the AST.

Every `import` and `from ... import` counts, including those inside functions,
so a lazy import cannot hide an upward dependency.
"""

import ast
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
PACKAGES = ("pipeline", "models", "serving", "edge", "runners")

# Lowest first. A module may import modules of lower layers and of its own room;
# rooms that share a layer (serving, edge) do not import each other.
LAYERS = [
    ("leaf", ("pipeline.config", "models.features", "edge.predict")),
    ("training machinery", ("pipeline.training",)),
    ("user code", ("models",)),
    ("serving", ("serving",)),
    ("edge", ("edge",)),
    ("components", ("pipeline.components",)),
    ("pipeline definition", ("pipeline.pipeline", "pipeline.orchestration", "pipeline.mlmd",
                             "pipeline.code_fingerprint")),
    ("operations", ("pipeline.ops",)),
    ("entry points", ("runners",)),
]
RANK = {"leaf": 0, "training machinery": 1, "user code": 2, "serving": 3, "edge": 3, "components": 4,
        "pipeline definition": 5, "operations": 6, "entry points": 7}


def room_of(module: str) -> str:
    if module == "pipeline":  # the package's __init__: process-wide settings only
        return "leaf"
    best = None
    for room, prefixes in LAYERS:
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + "."):
                if best is None or len(prefix) > len(best[1]):
                    best = (room, prefix)
    if best is None:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS (and the README table)")
    return best[0]


def repo_modules():
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            yield ".".join(parts), path


def imported_modules(path: pathlib.Path, module: str):
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            for alias in node.names:
                # `from pipeline import config` imports the module pipeline.config.
                yield node.lineno, f"{base}.{alias.name}" if alias.name != "*" else base


def is_repo(module: str) -> bool:
    return module.split(".")[0] in PACKAGES


def test_every_import_points_down_the_layers():
    known = {name for name, _ in repo_modules()}
    wrong = []
    for module, path in repo_modules():
        source = room_of(module)
        for line, target in imported_modules(path, module):
            if not is_repo(target):
                continue
            # `from models import features` names a module; `from pipeline.config import X` a symbol.
            while target not in known and "." in target:
                target = target.rsplit(".", 1)[0]
            if target in PACKAGES and target not in known:
                continue
            destination = room_of(target)
            if destination == source:
                if source == "leaf" and target != module:
                    wrong.append(f"{path.relative_to(REPO)}:{line} leaf {module} imports {target}")
                continue
            if RANK[destination] >= RANK[source]:
                wrong.append(f"{path.relative_to(REPO)}:{line} {module} ({source}) imports "
                             f"{target} ({destination})")
    assert not wrong, "imports against the layer direction:\n" + "\n".join(wrong)


def test_no_import_cycles_between_modules():
    known = {name for name, _ in repo_modules()}
    graph = {}
    for module, path in repo_modules():
        targets = set()
        for _, target in imported_modules(path, module):
            while target not in known and "." in target:
                target = target.rsplit(".", 1)[0]
            if target in known and target != module and target not in PACKAGES:
                targets.add(target)
        graph[module] = targets
    cycles = []
    state = {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "module import cycles:\n" + "\n".join(cycles)


@pytest.mark.parametrize("name", ["TF_USE_LEGACY_KERAS"])
def test_process_wide_settings_are_set_in_one_place(name):
    places = [str(path.relative_to(REPO)) for _, path in repo_modules() if name in path.read_text()]
    assert places == ["pipeline/__init__.py"], places


def test_setup_py_installs_every_package():
    tree = ast.parse((REPO / "setup.py").read_text())
    listed = next(kw.value for node in ast.walk(tree) if isinstance(node, ast.Call)
                  for kw in node.keywords if kw.arg == "packages")
    on_disk = {".".join(p.parent.relative_to(REPO).parts) for package in PACKAGES
               for p in (REPO / package).rglob("__init__.py")}
    assert set(ast.literal_eval(listed)) == on_disk


def test_the_layer_check_catches_an_upward_import(tmp_path, monkeypatch):
    # The check itself must be able to fail: a component importing the CLI is against the direction.
    fake = tmp_path / "pipeline" / "components" / "bad.py"
    fake.parent.mkdir(parents=True)
    fake.write_text("from runners.cli import main\n")
    found = list(imported_modules(fake, "pipeline.components.bad"))
    assert found == [(1, "runners.cli.main")]
    assert RANK[room_of("runners.cli.main")] > RANK[room_of("pipeline.components.bad")]
