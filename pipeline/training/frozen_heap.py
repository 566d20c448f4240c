"""Keeps Python's full garbage collections during training from walking the objects that existed
before it; `models.trainer.train` runs `model.fit` inside `frozen_heap()`.

Tracing Keras's train and test functions leaves enough new Python objects behind (graphs, ops,
specs) that CPython starts a full collection during the first steps. A full collection walks
every tracked object of the process: after TensorFlow, TFX and Beam are imported, about 470,000
of them, modules, classes and functions that are not garbage. On the penguin Transform output
that one collection took 270-450 ms of the epoch (1-1.5 ms of the printed ms/step on the
2-core machine at load 2-3; BENCHMARKS.md, "Goal 4: the Trainer's ms/step").

`gc.freeze` moves the objects that exist now into a permanent generation that collections skip;
`gc.unfreeze` after `fit` hands them back. The collection is skipped, not postponed: over
`train` and `export` together, the same process ran one full collection instead of two.
Objects created during `fit` are collected as usual; only a cycle among the older objects that
became garbage during `fit` waits for the next full collection after it. CPython offers no way to
skip a generation's walk for some objects only, hence the process-wide freeze, held for as short
a time as `fit` runs.
"""

import contextlib
import gc
from typing import Iterator


@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """Freezes the objects that exist on entry and unfreezes them on exit.

    When something froze objects already (a server's start-up, say), nothing is done: unfreezing
    on exit would undo that choice.
    """
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
