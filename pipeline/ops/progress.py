"""Live progress of a pipeline run: which component is running and how long each took.

TFX's local and Beam runners log "Component X is running." / "node X is
running." through absl. `show_progress` listens for those lines and prints one
short line per start and finish, so a user sees the run advance without
reading TFX's own log.
"""

import contextlib
import logging
import os
import re
import sys
import time
from typing import Callable, Dict, Iterator, Optional, TextIO

from absl import logging as absl_logging

_STARTED = re.compile(r"^(?:Component|node) (\S+) is running\.$")
_FINISHED = re.compile(r"^(?:Component|node) (\S+) is finished\.$")


class ProgressHandler(logging.Handler):
    """Turns the runners' start/finish log lines into progress lines."""

    def __init__(self, stream: TextIO, on_start: Optional[Callable[[str], None]] = None):
        super().__init__(level=logging.INFO)
        self.stream = stream
        self.on_start = on_start
        self.started: Dict[str, float] = {}
        self.durations: Dict[str, float] = {}

    @property
    def running(self) -> Optional[str]:
        """The component that started last and has not finished, if any."""
        unfinished = [node for node in self.started if node not in self.durations]
        return unfinished[-1] if unfinished else None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed foreign log record is not ours to raise
            return
        if match := _STARTED.match(message):
            node = match.group(1)
            self.started[node] = time.monotonic()
            self._print(f"▶ {node} running ...")
            if self.on_start is not None:
                self.on_start(node)
        elif match := _FINISHED.match(message):
            node = match.group(1)
            self.durations[node] = time.monotonic() - self.started.get(node, time.monotonic())
            self._print(f"✓ {node} done in {self.durations[node]:.1f} s")

    def _print(self, text: str) -> None:
        self.stream.write(f"[{time.strftime('%H:%M:%S')}] {text}\n")
        self.stream.flush()


@contextlib.contextmanager
def show_progress(stream: TextIO = sys.stdout, log_path: Optional[str] = None,
                  on_start: Optional[Callable[[str], None]] = None) -> Iterator[ProgressHandler]:
    """Prints component progress while the block runs; calls `on_start(node_id)` as each starts.

    With `log_path`, TFX's full INFO log goes to that file and the console
    keeps only errors, so the progress lines stay readable.
    """
    handler = ProgressHandler(stream, on_start)
    logger = logging.getLogger()  # absl logs through the root logger
    previous_level = logger.level
    quieted = []
    added = [handler]
    if log_path:
        os.makedirs(os.path.dirname(log_path), exist_ok=True)
        file_handler = logging.FileHandler(log_path)
        file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        added.append(file_handler)
        # absl logs through the root logger; TensorFlow has its own console handler.
        for existing in logger.handlers + logging.getLogger("tensorflow").handlers:
            quieted.append((existing, existing.level))
            existing.setLevel(max(existing.level, logging.ERROR))
    logger.setLevel(logging.INFO)
    # TFX logs progress at INFO through absl. When some library parses absl
    # flags mid-run (Transform's Beam pipeline does), absl resets its logger to
    # the `verbosity` flag, WARNING by default, and progress would go silent:
    # setting the flag itself keeps INFO for the whole run.
    previous_verbosity = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.INFO)
    for new in added:
        logger.addHandler(new)
    try:
        yield handler
    finally:
        for new in added:
            logger.removeHandler(new)
            new.close()
        for existing, level in quieted:
            existing.setLevel(level)
        logger.setLevel(previous_level)
        absl_logging.set_verbosity(previous_verbosity)
