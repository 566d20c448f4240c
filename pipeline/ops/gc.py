"""Removes artifact folders under the pipeline root that ML Metadata does not reference.

A component killed mid-run (SIGKILL, a lost machine) leaves its partial output folder behind:
TFX registers output artifacts only when the execution is published, and never reuses the
folder (re-runs get a new execution id). `tfxt gc [--dry-run]` (`runners.cli.main`) calls
`collect_garbage`. It holds the run lock, because a running component's outputs are not in
ML Metadata yet either. Paths go through `tfx.dsl.io.fileio`, so a gs:// root works too.
"""

import os
from typing import List, Set

from pipeline import mlmd
from pipeline.config import PipelineConfig
from pipeline.ops.lock import pipeline_lock


def collect_garbage(config: PipelineConfig, dry_run: bool = False) -> List[str]:
    """The unreferenced artifact folders (removed unless `dry_run`), sorted.

    Raises:
      LockHeldError: a run of the pipeline is in progress.
    """
    with pipeline_lock(config):
        folders = unreferenced_folders(config)
        if not dry_run:
            from tfx.dsl.io import fileio

            for folder in folders:
                fileio.rmtree(folder)
    return folders


def unreferenced_folders(config: PipelineConfig) -> List[str]:
    """Folders `<pipeline_root>/<component>/<output key>/<execution id>` no artifact lies in."""
    from tfx.dsl.io import fileio

    referenced = _referenced_paths(config)
    result = []
    for component in _subfolders(fileio, config.pipeline_root):
        for key in _subfolders(fileio, component):
            for folder in _subfolders(fileio, key):
                if folder not in referenced:
                    result.append(folder)
    return sorted(result)


def _subfolders(fileio, folder: str) -> List[str]:
    """Sub-folders of `folder`, without TFX's own `.system` (and other hidden) folders."""
    if not fileio.isdir(folder):
        return []
    names = [name.rstrip("/") for name in fileio.listdir(folder)]
    paths = [os.path.join(folder, name) for name in names if not name.startswith(".")]
    return [path for path in paths if fileio.isdir(path)]


def _referenced_paths(config: PipelineConfig) -> Set[str]:
    """Every artifact URI in the store and every folder above one."""
    store = mlmd.open_store(config)
    paths: Set[str] = set()
    for artifact in store.get_artifacts():
        path = artifact.uri.rstrip("/")
        while path and path not in paths:
            paths.add(path)
            parent = os.path.dirname(path)
            path = parent if parent != path else ""
    return paths
