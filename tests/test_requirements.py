"""The two stacks' direct requirements: requirements.in (Python 3.10, TFX 1.16) and
requirements-py313.in (Python 3.13, TFX 1.21) name the same packages, apart from a stated few.

Both files are edited by hand; a package added to one and forgotten in the other breaks only
the other stack (the run report's matplotlib did).
"""

import os
import re

from tests.conftest import REPO_ROOT

# On one stack only, each for its reason.
STACK_SPECIFIC = {
    "apache-airflow",  # TFX 1.21 supports Airflow only below Python 3.13
    "setuptools",  # capped below 81 for TensorBoard 2.16's pkg_resources; TensorBoard 2.21 needs no cap
    "tensorboard",  # TensorFlow 2.16 depends on it, TensorFlow 2.21 no longer does
}


def _names(filename):
    names = set()
    with open(os.path.join(REPO_ROOT, filename)) as f:
        for line in f:
            requirement = line.split("#", 1)[0].strip()
            if requirement:
                names.add(re.split(r"[\[<>=~!; ]", requirement, maxsplit=1)[0].lower())
    return names


def test_both_stacks_name_the_same_direct_requirements():
    py310, py313 = _names("requirements.in"), _names("requirements-py313.in")
    assert {"tfx", "apache-beam", "tf-keras", "tensorflow-serving-api"} <= py310 & py313
    assert py310 ^ py313 <= STACK_SPECIFIC, {"only in requirements.in": py310 - py313,
                                             "only in requirements-py313.in": py313 - py310}
