from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys

import pytest
from daemon_harness import Daemon
from notify_server import NotificationServer, SessionBus

from watcherd.config import Config
from watcherd.index import Index


@pytest.fixture(autouse=True)
def isolated_env(tmp_path_factory, monkeypatch):
    """Never read or write the real user's config or index from a test."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / ".local/share"))
    monkeypatch.delenv("WATCHERD_CONFIG", raising=False)
    monkeypatch.delenv("WATCHERD_DB", raising=False)
    # No test reaches the real desktop: no session bus unless a test starts its own.
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path_factory.mktemp("runtime")))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    return home


def unprivileged() -> list[str]:
    """A command prefix under which file permissions apply, even when tests run as root.

    Root reads any file through CAP_DAC_OVERRIDE; dropping that capability (and
    CAP_DAC_READ_SEARCH) from the bounding set makes an unreadable file really unreadable.
    """
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: cannot make a file unreadable")
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search"]


@pytest.fixture(scope="session")
def pg_server():
    """One throwaway PostgreSQL cluster for the session (tests/pg_cluster.py); each test
    that wants one gets a database of its own (`new_database`)."""
    from pg_cluster import Cluster, bindir

    found = bindir()
    if found is None:
        pytest.skip("PostgreSQL is not installed (.ci/run installs it): not exercised here")
    pytest.importorskip("psycopg", reason="the postgres extra (psycopg) is not installed")
    cluster = Cluster(found).start()
    yield cluster
    cluster.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def index_target(request, tmp_path):
    """Where an index lives, once per backend: a SQLite file, a PostgreSQL database."""
    if request.param == "sqlite":
        return tmp_path / "index.sqlite3"
    return request.getfixturevalue("pg_server").new_database()


@pytest.fixture
def sqlite_index(tmp_path):
    idx = Index(tmp_path / "index.sqlite3")
    yield idx
    idx.close()


@pytest.fixture
def index(index_target):
    idx = Index(index_target)
    yield idx
    idx.close()


@pytest.fixture
def config():
    return Config(workers=1)


def run_cli(*args: str, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run the installed `watcherd` command in a real subprocess."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-m", "watcherd", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=300,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"watcherd {' '.join(args)} exited {proc.returncode}\n"
            f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
    return proc


def invoke(*args: str, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run a `watcherd` command in this process (click's CliRunner): for what a command
    prints and the status it exits with, a tenth of the time a process takes to start.
    `run_cli` starts a real process where the process is the point (its exit, its
    signals, what it imports)."""
    import logging

    from click.testing import CliRunner

    from watcherd.cli import main

    try:
        runner = CliRunner(mix_stderr=False)  # click 8.1; later ones keep them apart anyway
    except TypeError:
        runner = CliRunner()
    try:
        result = runner.invoke(main, list(args), env=env, prog_name="watcherd",
                               catch_exceptions=False)  # fmt: skip
    finally:
        logging.getLogger("watcherd").handlers[:] = []  # its stream was the runner's
    proc = subprocess.CompletedProcess(["watcherd", *args], result.exit_code,
                                       result.stdout, result.stderr)  # fmt: skip
    if check and proc.returncode != 0:
        raise AssertionError(
            f"watcherd {' '.join(args)} exited {proc.returncode}\n"
            f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
    return proc


@pytest.fixture
def cli():
    return run_cli


@contextlib.contextmanager
def mounted_tmpfs(path, size: str = "4m", readonly: bool = False):
    """A real second filesystem (tmpfs) at `path`; skips the test where none can be had."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root: this path is not exercised here")
    path.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip()}): path not exercised")
    try:
        if readonly:
            subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


@contextlib.contextmanager
def mounted_reflink_fs(path):
    """A real XFS filesystem with reflinks (a sparse image on a loop device) at `path`;
    skips the test where none can be had."""
    if os.geteuid() != 0 or shutil.which("mkfs.xfs") is None:
        pytest.skip("an XFS loop mount needs root and mkfs.xfs: the reflink path is not exercised")
    image = path.with_name(path.name + ".img")
    with open(image, "wb") as fh:
        fh.truncate(320 * 1024 * 1024)  # XFS's smallest; sparse, so it costs nothing
    path.mkdir(parents=True, exist_ok=True)
    made = subprocess.run(["mkfs.xfs", "-q", "-m", "reflink=1", str(image)], capture_output=True)
    proc = made if made.returncode else subprocess.run(
        ["mount", "-o", "loop", str(image), str(path)], capture_output=True, text=True
    )  # fmt: skip
    if proc.returncode != 0:
        image.unlink()
        pytest.skip(f"cannot mount an XFS image here ({proc.stderr!r}): reflinks not exercised")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)
        image.unlink()


@contextlib.contextmanager
def read_only_folder(path):
    """`path` made read-only for real, even for root (a read-only bind mount)."""
    if os.geteuid() != 0:
        path.chmod(0o555)
        try:
            yield path
        finally:
            path.chmod(0o755)
        return
    subprocess.run(["mount", "--bind", str(path), str(path)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(path)], check=True)
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


@pytest.fixture
def daemons():
    """Start real `watcherd run` subprocesses; each is killed at the end of the test."""
    started: list[Daemon] = []

    def make(*args, **kwargs) -> Daemon:
        d = Daemon(*args, **kwargs)
        started.append(d)
        return d

    yield make
    for d in started:
        d.close()


@pytest.fixture
def session_bus(tmp_path):
    """A real `dbus-daemon --session` of the test's own."""
    bus = SessionBus(tmp_path / "bus")
    yield bus
    bus.close()


@pytest.fixture
def notification_server(session_bus):
    """A notification server on that bus that records what it is asked to show."""
    server = NotificationServer(session_bus.address)
    yield server
    server.close()
