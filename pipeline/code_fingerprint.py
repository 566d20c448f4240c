"""Fingerprints of the user code a component runs, so that edited code is never served from the cache.

TFX fingerprints a `module_file`, but user code referenced by a dotted path from the installed
package (`models.preprocessing.preprocessing_fn`) is only a string to its cache: after an edit
of `models/features.py` the next run reused the old Transform output and trained on stale
features. `create_pipeline` passes `code_fingerprint(dotted_path)` in the `custom_config` of the
component that runs the code (Transform, Trainer, Tuner), so an edit changes that component's
execution properties, and with them its cache key, and those of nothing else.

The fingerprint is a hash of the source of the module behind the dotted path and of every module
it imports, directly or not, from the user-code packages (found by reading the imports, lazy
ones too, without executing anything).
"""

import ast
import hashlib
import importlib.util
from typing import List, Optional, Set

# Code a component runs that a user edits (models/) or that trains and exports the model.
USER_CODE_PACKAGES = ("models", "pipeline.training")


def code_fingerprint(dotted_path: str) -> str:
    """A short hash of the source behind `dotted_path` (a function's module) and its user imports."""
    digest = hashlib.sha256()
    for module in sorted(module_closure(dotted_path.rsplit(".", 1)[0])):
        digest.update(module.encode() + b"\0")
        with open(_source_path(module), "rb") as f:
            digest.update(f.read())
    return digest.hexdigest()[:16]


def module_closure(module: str) -> Set[str]:
    """`module` and every user-code module it imports, directly or through others."""
    found: Set[str] = set()
    pending = [module]
    while pending:
        name = pending.pop()
        if name in found or not _is_user_code(name):
            continue
        path = _source_path(name)
        if path is None:
            continue
        found.add(name)
        pending += _imported_names(path, name)
    return found


def _is_user_code(module: str) -> bool:
    return any(module == package or module.startswith(package + ".") for package in USER_CODE_PACKAGES)


def _source_path(module: str) -> Optional[str]:
    """The module's .py file, or None for a name that is not a module (`from m import CONSTANT`)."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, AttributeError, ValueError):
        return None
    return spec.origin if spec and spec.origin and spec.origin.endswith(".py") else None


def _imported_names(path: str, module: str) -> List[str]:
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    package = module if path.endswith("__init__.py") else module.rsplit(".", 1)[0]
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            names.append(base)
            # `from models import features` imports a module; `from models.features import X` a name.
            names += [f"{base}.{alias.name}" for alias in node.names]
    return names
