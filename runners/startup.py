"""Start-up of the local entry points (`tfxt run`, `runners/local_runner.py`): fewer imports.

TFX's local orchestrator reaches `tfx.components` through
`tfx.dsl.input_resolution.strategies.latest_blessed_model_strategy` (for one constant), and
that package's `__init__` imports every TFX component and with it their libraries: the Tuner's
KerasTuner (which loads Keras 3 and matplotlib), the InfraValidator's Kubernetes client, and
more, none of which this pipeline uses. `defer_tfx_components()` makes that `__init__` bind its
names on first use instead: `from tfx.components import Trainer` still gives TFX's `Trainer`,
importing only the Trainer's modules. Only an `__init__` made of imports (and `__all__`) is
deferred; any other statement runs it as it is. Airflow, Beam and Vertex import TFX as usual.
"""

import ast
import importlib
import importlib.abc
import importlib.util
import sys
from typing import Dict, Tuple

DEFERRED_PACKAGES = ("tfx.components",)


def defer_tfx_components() -> None:
    """Installs the deferral for `DEFERRED_PACKAGES`; call it before TFX is imported."""
    if not any(isinstance(finder, _DeferringFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _DeferringFinder())


class _DeferringFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
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
        names = _imported_names(self.origin)
        if names is None:
            self.loader.exec_module(module)
            return

        def __getattr__(name):
            if name not in names:
                raise AttributeError(f"module {module.__name__!r} has no attribute {name!r}")
            source, attribute = names[name]
            value = getattr(importlib.import_module(source), attribute)
            setattr(module, name, value)
            return value

        if names.pop("__all__", None):
            module.__all__ = sorted(names)
        module.__getattr__ = __getattr__
        module.__dir__ = lambda: sorted(set(vars(module)) | set(names))


def _imported_names(path: str) -> "Dict[str, Tuple[str, str]] | None":
    """name -> (module, attribute) for an `__init__` of absolute imports, `__all__` and a
    docstring; None when it holds anything else."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    names: Dict[str, Tuple[str, str]] = {}
    for node in tree.body:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                and all(alias.name != "*" for alias in node.names):
            names.update({alias.asname or alias.name: (node.module, alias.name) for alias in node.names})
            continue
        if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["__all__"]:
            names["__all__"] = ("", "")  # the list itself, not a name to import
            continue
        return None
    return names
