"""Start-up of the local entry points (`runners.startup`): TFX's `tfx.components` and TFMA bind
their names on first use, so building the pipeline loads neither KerasTuner (with Keras 3), the
Kubernetes client, TFMA's metrics library nor IPython, and every name still is the library's own.

The import checks run in fresh interpreters, since this one may have loaded TFX already.
"""

import importlib
import json
import os
import subprocess
import sys

import pytest

from runners import startup
from tests.conftest import REPO_ROOT

BUILD_THE_PIPELINE = """
import json, sys
from pipeline.config import load_config
from runners.startup import defer_library_inits
defer_library_inits()
from tfx.orchestration.local.local_dag_runner import LocalDagRunner
from pipeline.pipeline import create_pipeline
pipeline = create_pipeline(load_config())
loaded = sorted(m for m in ("keras_tuner", "keras", "kubernetes", "tensorflow_model_analysis.metrics",
                            "nltk", "IPython") if m in sys.modules)
import tfx.components
from tfx.components.trainer.component import Trainer
from tfx.components import Tuner
import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.proto import config_pb2
print(json.dumps({"eval_config_is_tfma": tfma.EvalConfig is config_pb2.EvalConfig, "loaded": loaded,
                  "components": len(pipeline.components),
                  "trainer_is_tfx": tfx.components.Trainer is Trainer,
                  "tuner": Tuner.__module__, "all": "Tuner" in tfx.components.__all__}))
"""


def test_building_the_pipeline_loads_no_tuner_kubernetes_tfma_metrics_nor_ipython():
    found = json.loads(_python(BUILD_THE_PIPELINE).splitlines()[-1])
    assert found["loaded"] == []
    assert found["components"] > 10 and found["trainer_is_tfx"] and found["all"]
    assert found["tuner"] == "tfx.components.tuner.component"
    assert found["eval_config_is_tfma"]


# Every public name of a package, as `module.qualname` (or the value, for constants).
PACKAGE_NAMES = """
import importlib, json, re, sys, types
if sys.argv[1] == "deferred":
    from runners.startup import defer_library_inits
    defer_library_inits()
package = importlib.import_module(sys.argv[2])
def identity(value):
    if isinstance(value, types.ModuleType):
        return value.__name__
    name = getattr(value, "__qualname__", None)
    if name:
        return f"{getattr(value, '__module__', '')}.{name}"
    return re.sub(" at 0x[0-9a-f]+", "", repr(value))
names = sys.argv[3:] or [n for n in dir(package) if not n.startswith("__")]
print(json.dumps({n: identity(getattr(package, n, None)) for n in names + ["__version__", "__all__"]}))
"""


@pytest.mark.parametrize("package, some_names", [
    ("tfx.components", {"Trainer", "Evaluator", "Transform", "Tuner"}),
    ("tensorflow_model_analysis", {"EvalConfig", "run_model_analysis", "metrics", "default_evaluators"}),
    ("tensorflow_data_validation", {"generate_statistics_from_csv", "validate_statistics",
                                    "visualize_statistics"}),
])
def test_a_deferred_package_gives_the_same_names_as_its_own_init(package, some_names):
    def names(mode, *wanted):
        return json.loads(_python(PACKAGE_NAMES, mode, package, *wanted).splitlines()[-1])

    eager = names("eager")
    assert some_names <= set(eager)
    assert names("deferred", *[n for n in eager if n not in ("__version__", "__all__")]) == eager


def test_notebook_widgets_are_not_loaded_by_a_command_line_run():
    code = ("from runners.startup import defer_library_inits\n"
            "defer_library_inits()\n"
            "from google.cloud.bigquery import _tqdm_helpers\n"
            "import sys\n"
            "print(_tqdm_helpers.tqdm_notebook is None, 'IPython' in sys.modules)")
    assert _python(code).split() == ["True", "False"]


def test_the_evaluators_own_metrics_are_named_as_they_are_defined():
    from tensorflow_model_analysis.metrics import metric_types

    from pipeline.pipeline import CLASS_METRIC, SLICE_GATE_METRIC

    for module, class_name in (CLASS_METRIC, SLICE_GATE_METRIC):
        assert issubclass(getattr(importlib.import_module(module), class_name), metric_types.Metric)


def test_only_an_init_of_imports_and_definitions_is_deferred(tmp_path):
    imports = tmp_path / "imports.py"
    imports.write_text('"""Doc."""\nimport sys as _sys\nfrom a.b import C\nfrom a.d import E as F\n'
                       'try:\n    from a.g import *\n    from a.h import H\nexcept ImportError:\n'
                       '    _sys.stderr.write("no a")\n__all__ = ["C", "F"]\ndef f(x):\n    y = x\n'
                       '    return len(y)\n')
    init = startup._parse_init(str(imports))
    assert init.names == {"C": ("a.b", "C"), "F": ("a.d", "E"), "H": ("a.h", "H")}
    assert init.star_sources == ["a.g"] and init.all_names == ["C", "F"]
    assert [type(node).__name__ for node in init.definitions.body] == ["Import", "FunctionDef"]
    for other in ("import not_loaded_anywhere\n", "from . import b\n", "X = 1\n",
                  "try:\n    from a import b\nexcept ImportError:\n    pass\nelse:\n    X = 1\n",
                  "try:\n    X = 1\nexcept ImportError:\n    pass\n", "@decorated\ndef f():\n    pass\n",
                  # a fallback import in the handler would be lost
                  "try:\n    from a import b\nexcept ImportError:\n    from c import b\n",
                  # a function's globals do not go through the module's __getattr__
                  "from a import b\ndef f():\n    return b()\n",
                  "__all__ = names()\n"):
        (tmp_path / "other.py").write_text(other)
        assert startup._parse_init(str(tmp_path / "other.py")) is None, other


def test_a_deferred_package_knows_what_it_lacks(tmp_path):
    """`hasattr` is False and `getattr` with a default works for a name the init never bound."""
    package = tmp_path / "deferred_example"
    package.mkdir()
    (package / "__init__.py").write_text("from deferred_example.part import Thing\n")
    (package / "part.py").write_text("class Thing:\n    pass\n")
    code = ("import sys; from runners import startup\n"
            "startup.DEFERRED_PACKAGES = ('deferred_example',); startup.defer_library_inits()\n"
            "import deferred_example as d\n"
            "print(hasattr(d, 'missing'), getattr(d, 'missing', 'default'), d.Thing.__module__,\n"
            "      'deferred_example.part' in sys.modules, sorted(n for n in dir(d) if n[0] != '_'))")
    printed = _python(code, env={**os.environ, "PYTHONPATH": f"{tmp_path}:{REPO_ROOT}"})
    assert printed.split(maxsplit=4) == ["False", "default", "deferred_example.part", "True",
                                         "['Thing', 'part']"]


def _python(code: str, *args: str, env=None) -> str:
    """What `code` prints, run in a fresh interpreter from the repository (which must succeed)."""
    result = subprocess.run([sys.executable, "-c", code, *args], cwd=REPO_ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip()
