"""One run at a time per pipeline: a lock around a run, held for the SQLite and the MySQL store.

`pipeline.ops.run.run_and_report` (what `make run`, the runner files and `tfxt run` call) takes
`pipeline_lock(config)` around the whole run; continuous training takes it too. Two runs on the
same outputs would otherwise both train and push, making duplicate versions from the same data.

- SQLite store: `fcntl.flock` on a file next to the metadata DB. The kernel drops the lock when
  the holder's process ends, however it ends (even SIGKILL), so a dead run never blocks the next.
- MySQL store: MySQL's `GET_LOCK` on a connection of its own, so runs on different machines that
  share the store exclude each other too; the server drops it when that connection closes.

The holder writes who it is (pid, host, start time, command) where the next process can read it
(the lock file, or a small `tfxt_lock_holders` table in the metadata database), so a refused run
names the holder. Nothing here imports TensorFlow or TFX.
"""

import contextlib
import datetime
import fcntl
import hashlib
import json
import os
import shlex
import socket
import sys
import time
from typing import Dict, Iterator, Optional

from pipeline.config import PipelineConfig

# How often a waiting process tries the lock again.
_POLL_SECONDS = 0.2
# MySQL limits lock names to 64 characters.
_MYSQL_LOCK_NAME_LENGTH = 64
_HOLDERS_TABLE = "tfxt_lock_holders"


class LockHeldError(RuntimeError):
    """Another process holds the pipeline's lock; the message names it and what to do."""


def holder_info() -> Dict[str, object]:
    """Who this process is: what a refused run prints about the holder."""
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join(shlex.quote(arg) for arg in [os.path.basename(sys.executable)]
                                + sys.argv)}


@contextlib.contextmanager
def pipeline_lock(config: PipelineConfig, name: str = "run",
                  wait_seconds: float = 0.0) -> Iterator[Dict[str, object]]:
    """Holds the lock `name` of `config`'s pipeline for the block; yields this holder's info.

    Args:
      config: the pipeline; its metadata section says where the lock lives.
      name: which lock ("run" for pipeline runs); different names do not exclude each other.
      wait_seconds: how long to wait for a holder to finish before giving up (0: do not wait).

    Raises:
      LockHeldError: the lock is still held after `wait_seconds`, naming the holder.
    """
    holder = holder_info()
    lock = _MySQLLock(config, name) if config.metadata.backend == "mysql" else _FileLock(config, name)
    deadline = time.monotonic() + max(wait_seconds, 0.0)
    while not lock.try_acquire(holder):
        if time.monotonic() >= deadline:
            current = lock.holder()
            lock.close()
            raise LockHeldError(_held_message(config, name, current, wait_seconds))
        time.sleep(_POLL_SECONDS)
    try:
        yield holder
    finally:
        lock.release()


def _held_message(config: PipelineConfig, name: str, holder: Optional[dict], waited: float) -> str:
    who = "another process (it did not say who)"
    if holder:
        who = (f"pid {holder.get('pid')} on {holder.get('host')} since {holder.get('started')} "
               f"({holder.get('command')})")
    waited_text = f" after waiting {waited:g} s" if waited > 0 else ""
    return (f"Pipeline '{config.pipeline_name}' is busy{waited_text}: its {name} lock is held by {who}. "
            "Wait for that run to finish (or stop it) and start again.")


class _FileLock:
    """`fcntl.flock` on `<metadata dir>/<pipeline>.<name>.lock`; the file holds the holder's JSON."""

    def __init__(self, config: PipelineConfig, name: str):
        directory = os.path.dirname(config.metadata_path)
        os.makedirs(directory, exist_ok=True)
        self.path = os.path.join(directory, f"{config.pipeline_name}.{name}.lock")
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)

    def try_acquire(self, holder: dict) -> bool:
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, json.dumps(holder).encode(), 0)
        return True

    def holder(self) -> Optional[dict]:
        try:
            with open(self.path, encoding="utf-8") as f:
                return json.loads(f.read() or "null")
        except (OSError, ValueError):
            return None

    def release(self) -> None:
        # Emptied before unlocking, so that nobody reads a finished holder's details.
        os.ftruncate(self.fd, 0)
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        self.close()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class _MySQLLock:
    """MySQL `GET_LOCK` on a dedicated connection; the holder's JSON in `tfxt_lock_holders`."""

    def __init__(self, config: PipelineConfig, name: str):
        import pymysql

        metadata = config.metadata
        self.connection = pymysql.connect(host=metadata.host, port=metadata.port, user=metadata.user,
                                          password=metadata.password, autocommit=True)
        self.database = metadata.database
        full_name = f"tfxt.{metadata.database}.{config.pipeline_name}.{name}"
        self.key = full_name
        if len(full_name) > _MYSQL_LOCK_NAME_LENGTH:
            self.key = "tfxt." + hashlib.sha256(full_name.encode()).hexdigest()[:40]
        with self.connection.cursor() as cursor:
            # ML Metadata creates the database on first use; the lock may come first.
            cursor.execute(f"CREATE DATABASE IF NOT EXISTS `{self.database}`")
            cursor.execute(f"CREATE TABLE IF NOT EXISTS `{self.database}`.{_HOLDERS_TABLE} "
                           "(name VARCHAR(64) PRIMARY KEY, holder TEXT NOT NULL)")

    def try_acquire(self, holder: dict) -> bool:
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT GET_LOCK(%s, 0)", (self.key,))
            if cursor.fetchone()[0] != 1:
                return False
            cursor.execute(f"REPLACE INTO `{self.database}`.{_HOLDERS_TABLE} (name, holder) "
                           "VALUES (%s, %s)", (self.key, json.dumps(holder)))
        return True

    def holder(self) -> Optional[dict]:
        with self.connection.cursor() as cursor:
            cursor.execute(f"SELECT holder FROM `{self.database}`.{_HOLDERS_TABLE} WHERE name = %s",
                           (self.key,))
            row = cursor.fetchone()
        return json.loads(row[0]) if row else None

    def release(self) -> None:
        try:
            with self.connection.cursor() as cursor:
                cursor.execute(f"DELETE FROM `{self.database}`.{_HOLDERS_TABLE} WHERE name = %s",
                               (self.key,))
                cursor.execute("SELECT RELEASE_LOCK(%s)", (self.key,))
        finally:
            self.close()

    def close(self) -> None:
        self.connection.close()
