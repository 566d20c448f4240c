"""The TFX pipeline: its typed config (a leaf), `create_pipeline`, the custom components,
the Trainer's machinery and the operations around runs.

Every entry point (the `tfxt` CLI, the runner files, cluster tasks, the tests)
loads the config, and so imports this package first. That makes this the one
place for process-wide settings that must precede TensorFlow's import.
"""

import os

# TFX 1.16's Transform and Model Analysis, and MultiWorkerMirroredStrategy, need Keras 2
# (tf-keras); TensorFlow 2.16 would otherwise load Keras 3. An explicit setting wins.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

# TensorFlow's C++ INFO and WARNING lines (oneDNN, CUDA stubs, CPU features) say nothing a user
# of this CPU-only template can act on; errors still show. An explicit setting wins, as above.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import warnings  # noqa: E402 - after the environment, which must precede any TensorFlow import

# google-api-core (a TFX dependency) warns on every import that Python 3.10 is past its support;
# the stack is pinned to Python 3.10 by TFX 1.16 (README, "Two stacks").
warnings.filterwarnings("ignore", message="You are using a non-supported Python version",
                        category=FutureWarning)
