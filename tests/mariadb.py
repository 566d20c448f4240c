"""A throwaway MariaDB server on loopback for tests: Debian's `mariadb-server` binaries, a
temporary datadir, a free port, a user with a password; always stopped afterwards.

`.ci/install-system-deps` installs the package (`apt-get install mariadb-server`).
"""

import contextlib
import dataclasses
import os
import shutil
import socket
import subprocess
import time
from typing import Iterator, Optional

# An upper bound, not a timing: the tests share 2 cores with a pipeline run on the other worker.
STARTUP_TIMEOUT_SECONDS = 180
USER = "mlmd"
PASSWORD = "mlmd-test-password"


@dataclasses.dataclass
class MariaDB:
    host: str
    port: int
    user: str
    password: str
    socket_path: str
    client: str

    def query(self, sql: str, database: Optional[str] = None) -> str:
        """Runs `sql` with the mariadb client as root over the socket; returns tab-separated rows."""
        command = [self.client, "--no-defaults", f"--socket={self.socket_path}", "-uroot",
                   "--batch", "--skip-column-names", "-e", sql]
        if database:
            command.insert(-2, database)
        return subprocess.run(command, check=True, capture_output=True, text=True, timeout=30).stdout


def binaries() -> Optional[dict]:
    """Paths of mariadbd, mariadb-install-db and mariadb, or None if the package is missing."""
    found = {
        "server": shutil.which("mariadbd") or shutil.which("mariadbd", path="/usr/sbin"),
        "install": shutil.which("mariadb-install-db") or shutil.which("mysql_install_db"),
        "client": shutil.which("mariadb") or shutil.which("mysql"),
    }
    return found if all(found.values()) else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def mariadb_server(directory: str) -> Iterator[MariaDB]:
    """Starts mariadbd in `directory`; yields once it accepts connections; stops it on exit."""
    paths = binaries()
    if paths is None:
        raise FileNotFoundError("MariaDB is not installed: run `sudo .ci/install-system-deps`.")
    datadir = os.path.join(directory, "data")
    socket_path = os.path.join(directory, "mariadb.sock")
    # mariadbd refuses to run as root unless told to.
    as_user = ["--user=root"] if os.geteuid() == 0 else []
    subprocess.run([paths["install"], "--no-defaults", f"--datadir={datadir}", "--skip-test-db",
                    "--auth-root-authentication-method=normal", *as_user],
                   check=True, capture_output=True, timeout=120)
    port = _free_port()
    log = open(os.path.join(directory, "mariadbd.log"), "w")
    process = subprocess.Popen(
        [paths["server"], "--no-defaults", f"--datadir={datadir}", f"--socket={socket_path}",
         f"--port={port}", "--bind-address=127.0.0.1", "--skip-log-bin",
         "--innodb-buffer-pool-size=64M", f"--pid-file={os.path.join(directory, 'mariadbd.pid')}",
         *as_user],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        server = MariaDB("127.0.0.1", port, USER, PASSWORD, socket_path, paths["client"])
        _wait_until_ready(process, server, os.path.join(directory, "mariadbd.log"))
        server.query(f"CREATE USER '{USER}'@'127.0.0.1' IDENTIFIED BY '{PASSWORD}'; "
                     f"GRANT ALL PRIVILEGES ON *.* TO '{USER}'@'127.0.0.1';")
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log.close()


def _wait_until_ready(process: subprocess.Popen, server: MariaDB, log_path: str) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"mariadbd exited with {process.returncode}:\n"
                               + open(log_path).read()[-3000:])
        try:
            server.query("SELECT 1")
            return
        except subprocess.CalledProcessError:
            time.sleep(0.5)
    raise TimeoutError(f"mariadbd did not accept connections within {STARTUP_TIMEOUT_SECONDS} s:\n"
                       + open(log_path).read()[-3000:])
