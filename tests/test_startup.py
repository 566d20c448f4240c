"""Start-up of the local entry points (`runners.startup`): TFX's `tfx.components` binds its names
on first use, so building the pipeline loads neither KerasTuner (with Keras 3) nor the Kubernetes
client, and every name still is TFX's own class.

The import check runs in a fresh interpreter, since this one may have loaded TFX already.
"""

import json
import subprocess
import sys

from runners import startup
from tests.conftest import REPO_ROOT

BUILD_THE_PIPELINE = """
import json, sys
from pipeline.config import load_config
from runners.startup import defer_tfx_components
defer_tfx_components()
from tfx.orchestration.local.local_dag_runner import LocalDagRunner
from pipeline.pipeline import create_pipeline
pipeline = create_pipeline(load_config())
loaded = sorted(m for m in ("keras_tuner", "keras", "kubernetes") if m in sys.modules)
import tfx.components
from tfx.components.trainer.component import Trainer
from tfx.components import Tuner
print(json.dumps({"loaded": loaded, "components": len(pipeline.components),
                  "trainer_is_tfx": tfx.components.Trainer is Trainer,
                  "tuner": Tuner.__module__, "all": "Tuner" in tfx.components.__all__}))
"""


def test_building_the_pipeline_loads_no_tuner_nor_kubernetes():
    result = subprocess.run([sys.executable, "-c", BUILD_THE_PIPELINE], cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["loaded"] == []
    assert found["components"] > 10 and found["trainer_is_tfx"] and found["all"]
    assert found["tuner"] == "tfx.components.tuner.component"


def test_only_an_init_of_imports_is_deferred(tmp_path):
    imports = tmp_path / "imports.py"
    imports.write_text('"""Doc."""\nfrom a.b import C\nfrom a.d import E as F\n__all__ = ["C", "F"]\n')
    assert startup._imported_names(str(imports)) == {"C": ("a.b", "C"), "F": ("a.d", "E"),
                                                    "__all__": ("", "")}
    for other in ("import os\n", "from a import *\n", "from . import b\n", "X = 1\n",
                  "try:\n    from a import b\nexcept ImportError:\n    pass\n"):
        (tmp_path / "other.py").write_text(other)
        assert startup._imported_names(str(tmp_path / "other.py")) is None, other
