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
