"""Real servers for the tests, started as subprocesses on 127.0.0.1 and torn down after: moto's S3 server and the
Dask CLI's ``dask scheduler`` / ``dask worker``. Each runs in its own process group, so a test can SIGKILL a server
with its children (a worker's nanny and worker process) and nothing outlives the test.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

DASK = str(Path(sys.executable).with_name("dask"))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60.0, proc: subprocess.Popen | None = None):
    """Poll ``condition`` every 50 ms until it holds; fail naming ``what`` (and the log) otherwise."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: the process exited with code {proc.returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not ready after {timeout:.0f} s")
        time.sleep(0.05)


class Server:
    """A subprocess in its own session (process group), its output in ``log``."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str] | None = None):
        self.args, self.log = args, log
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env
            )

    def kill(self) -> None:
        """SIGKILL the whole process group (a ``dask worker``'s nanny and its worker too)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        self.kill()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def moto_s3(log: Path) -> Iterator[str]:
    """moto's S3 server on a free port; yields its endpoint URL."""
    port = free_port()
    server = Server([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(url), f"moto S3 server on {url}", proc=server.proc)
        yield url
    finally:
        server.stop()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1):
            return True
    except OSError as exc:  # an HTTP error status still means the server is up
        return hasattr(exc, "code")


def dask_scheduler(port: int, log: Path) -> Server:
    """``dask scheduler`` on 127.0.0.1:``port`` (dashboard off), ready to accept workers when this returns."""
    server = Server([DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"], log)
    wait_for(lambda: _listening(port), f"dask scheduler on port {port}", proc=server.proc)
    return server


def dask_worker(address: str, log: Path, name: str) -> Server:
    """One ``dask worker`` process (with its nanny), one thread, connected to ``address``."""
    return Server([DASK, "worker", address, "--nthreads", "1", "--nworkers", "1", "--name", name,
                   "--no-dashboard"], log)  # fmt: skip


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0
