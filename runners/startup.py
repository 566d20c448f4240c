"""Start-up of the local entry points (`tfxt run`, `runners/local_runner.py`): fewer imports.

Three package `__init__`s load far more than building and starting the pipeline needs:
- `tfx.components`: TFX's local orchestrator reaches it through
  `tfx.dsl.input_resolution.strategies.latest_blessed_model_strategy` (for one constant), and it
  imports every TFX component with its libraries: the Tuner's KerasTuner (which loads Keras 3
  and matplotlib), the InfraValidator's Kubernetes client, and more, none of which this
  pipeline uses.
- `tensorflow_model_analysis`: every component spec reaches it for `EvalConfig`, and its
  `__init__` loads all of TFMA (its evaluators, every metric, with nltk and sacrebleu for the
  text metrics), about 3 s of CPU before the first component, for a library only the Evaluator
  runs.
- `tensorflow_data_validation`: the pipeline reads TFDV's anomalies proto, and TFDV's `__init__`
  loads its notebook display helpers with IPython (about 1.5 s); the statistics components
  import the parts of TFDV they run.
`defer_library_inits()` makes those `__init__`s bind their names on first use instead:
`from tfx.components import Trainer` still gives TFX's `Trainer`, importing only the Trainer's
modules, and `tfma.EvalConfig` imports only TFMA's config proto. The Evaluator's executor
imports what it uses when it runs. Only an `__init__` made of imports (optionally in one
`try:`), `__all__` and self-contained function definitions is deferred; any other statement
runs it as it is. So the saving is TFX 1.16's: TFX 1.21's `tfx.components` wraps each import in
its own `try:` and is imported in full there, as before.

One module is made unavailable instead: `tqdm.notebook`. Google's BigQuery client, which Beam's
BigQuery connector loads, imports it inside a `try` for notebook progress bars, and it loads
IPython and ipywidgets (about 1 s). A command-line run draws no notebook widget, and both of its
importers (BigQuery's client and pandas' gbq) fall back when it is missing. Airflow, Beam and
Vertex import TFX as usual.

Written here because Python has no switch for it: `importlib.util.LazyLoader` defers a whole
module until its first attribute, and every component spec touches TFMA's `EvalConfig`.
"""

import ast
import builtins
import dataclasses
import importlib
import importlib.abc
import importlib.util
import sys
from typing import Dict, List, Optional, Tuple

DEFERRED_PACKAGES = ("tfx.components", "tensorflow_model_analysis", "tensorflow_data_validation")
UNAVAILABLE_MODULES = ("tqdm.notebook",)


def defer_library_inits() -> None:
    """Installs the deferral of `DEFERRED_PACKAGES` and hides `UNAVAILABLE_MODULES`; call it
    before TFX is imported."""
    if not any(isinstance(finder, _DeferringFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _DeferringFinder())


class _DeferringFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname in UNAVAILABLE_MODULES:
            raise ModuleNotFoundError(f"{fullname} is not loaded by a command-line run "
                                      "(runners/startup.py)", name=fullname)
        if fullname not in DEFERRED_PACKAGES:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.origin and spec.origin.endswith("__init__.py"):
                    spec.loader = _DeferredInitLoader(spec.loader, spec.origin)
                return spec
        return None


class _DeferredInitLoader(importlib.abc.Loader):
    """Runs a package `__init__` of `from x import y` lines as a module `__getattr__`."""

    def __init__(self, loader, origin: str):
        self.loader = loader
        self.origin = origin

    def create_module(self, spec):
        return None  # the default module, with the spec's __path__

    def exec_module(self, module) -> None:
        init = _parse_init(self.origin)
        if init is None:
            self.loader.exec_module(module)
            return
        exec(compile(init.definitions, self.origin, "exec"), vars(module))

        def __getattr__(name):
            value = _resolve(module.__name__, init, name)
            setattr(module, name, value)
            return value

        def __dir__():
            star_names = {name for source in init.star_sources
                          for name in dir(importlib.import_module(source)) if not name.startswith("_")}
            return sorted(set(vars(module)) | set(init.names) | star_names)

        if init.all_names is not None:
            module.__all__ = list(init.all_names)
        module.__getattr__ = __getattr__
        module.__dir__ = __dir__


@dataclasses.dataclass
class _Init:
    """What a deferrable `__init__` binds: name -> (module, attribute), the modules it
    star-imports, its literal `__all__` (None without one), and the statements run at once."""

    names: Dict[str, Tuple[str, str]]
    star_sources: List[str]
    all_names: Optional[List[str]]
    definitions: ast.Module


def _resolve(package: str, init: _Init, name: str):
    """What the `__init__` would have bound to `name`: its import, or a star import's name."""
    if name in init.names:
        source, attribute = init.names[name]
        if source != package:  # (the package's own submodules: its getattr would come back here)
            source_module = importlib.import_module(source)
            if hasattr(source_module, attribute):
                return getattr(source_module, attribute)
        return importlib.import_module(f"{source}.{attribute}")  # `from x import submodule`
    if name.startswith("_"):
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    for source in reversed(init.star_sources):  # the last star import of a name wins, as in the init
        source_module = importlib.import_module(source)
        if hasattr(source_module, name):
            return getattr(source_module, name)
    # A submodule the full `__init__` imports on the way (TFDV's `tfdv.coders`).
    if importlib.util.find_spec(f"{package}.{name}") is not None:
        return importlib.import_module(f"{package}.{name}")
    raise AttributeError(f"module {package!r} has no attribute {name!r}")


def _parse_init(path: str) -> Optional[_Init]:
    """An `__init__` of absolute imports (at top level, or in one `try:` whose handlers only
    report), a literal `__all__`, functions that use none of the imported names, and a
    docstring, as an `_Init`; None when it holds anything else, and then it runs as it is."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    init = _Init(names={}, star_sources=[], all_names=None, definitions=ast.Module(body=[], type_ignores=[]))
    statements = list(tree.body)
    tries = [node for node in statements if isinstance(node, ast.Try)]
    if len(tries) == 1 and not tries[0].orelse and not tries[0].finalbody \
            and all(_only_reports(handler.body) for handler in tries[0].handlers):
        # The handler (TFMA's prints "Error importing") is dropped: a missing module now
        # raises its ImportError where the name is first used.
        index = statements.index(tries[0])
        statements[index:index + 1] = tries[0].body
    for node in statements:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if [alias.name for alias in node.names] == ["*"]:
                init.star_sources.append(node.module)
            elif all(alias.name != "*" for alias in node.names):
                init.names.update({alias.asname or alias.name: (node.module, alias.name)
                                   for alias in node.names})
            continue
        if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["__all__"]:
            try:
                init.all_names = list(ast.literal_eval(node.value))
            except ValueError:
                return None
            continue
        if _loaded_import(node) or isinstance(node, ast.FunctionDef) and not node.decorator_list \
                and _self_contained(node):
            init.definitions.body.append(node)  # a module already loaded (`sys`), or a function
            continue
        return None
    return init


def _loaded_import(node: ast.AST) -> bool:
    return isinstance(node, ast.Import) and all(alias.name in sys.modules for alias in node.names)


def _only_reports(body: List[ast.stmt]) -> bool:
    """A handler that only writes something (TFMA's `sys.stderr.write(...)`) or passes."""
    return all(_loaded_import(node) or isinstance(node, (ast.Expr, ast.Pass)) for node in body)


def _self_contained(function: ast.FunctionDef) -> bool:
    """A function that uses only builtins, its arguments and its own locals: a function's
    globals are not looked up through the module's `__getattr__`, so it could not see the
    deferred names."""
    names = [n for n in ast.walk(function) if isinstance(n, ast.Name)]
    arguments = function.args.posonlyargs + function.args.args + function.args.kwonlyargs + [
        a for a in (function.args.vararg, function.args.kwarg) if a is not None]
    known = {n.id for n in names if isinstance(n.ctx, ast.Store)} | {a.arg for a in arguments}
    return not {n.id for n in names if isinstance(n.ctx, ast.Load)} - known - set(dir(builtins))
