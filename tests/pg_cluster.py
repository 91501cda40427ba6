"""A throwaway PostgreSQL cluster for the tests: `initdb` into a temporary folder, a
unix socket there and no TCP port, `pg_ctl start` and, at the end, `stop`. Run as the
`postgres` user when the tests run as root (PostgreSQL refuses to run as root)."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

USER = "watcherd"


def bindir() -> Path | None:
    """Where Debian's (or any) PostgreSQL server programs are, newest version first."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version, reverse=True)
    if found:
        return Path(found[0]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _version(path: str) -> int:
    try:
        return int(Path(path).parts[4])
    except (IndexError, ValueError):
        return 0


class Cluster:
    def __init__(self, bin_dir: Path) -> None:
        self.bin = bin_dir
        self.base = Path(tempfile.mkdtemp(prefix="watcherd-pg-"))
        self.data, self.socket = self.base / "data", self.base / "s"
        self._as = []
        if os.geteuid() == 0:
            self._as = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.base, "postgres", "postgres")
        self._databases = 0

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        proc = subprocess.run([*self._as, *args], capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {proc.stdout}{proc.stderr}")
        return proc

    def start(self) -> Cluster:
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", USER, "-A", "trust",
                  "-E", "UTF8", "--locale=C.UTF-8", "--no-sync")  # fmt: skip
        if self._as:
            self._run("mkdir", "-m", "0700", str(self.socket))
        else:
            self.socket.mkdir(mode=0o700)
        self.launch()
        if self._as:  # the tests (root) reach the socket folder
            self._run("chmod", "0755", str(self.base), str(self.socket))
        return self

    def launch(self) -> None:
        """Start the server (again, after `halt`)."""
        options = (
            f"-k {self.socket} -c listen_addresses='' -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options,
                  "-l", str(self.base / "log"), "-w", "start")  # fmt: skip

    def halt(self) -> None:
        """Stop the server, as an administrator or a crash would (its data stays)."""
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{USER}@/{database}?host={self.socket}"

    def new_database(self, template: str = "template0", **options: str) -> str:
        """A fresh, empty database's URL (each test its own)."""
        import psycopg

        self._databases += 1
        name = f"t{os.getpid()}_{self._databases}"
        extra = "".join(f" {k.upper()} = '{v}'" for k, v in options.items())
        with psycopg.connect(host=str(self.socket), user=USER, dbname="postgres") as conn:
            conn.autocommit = True
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE {template}{extra}')
        return self.url(name)

    def stop(self) -> None:
        subprocess.run([*self._as, str(self.bin / "pg_ctl"), "-D", str(self.data), "-m",
                        "immediate", "stop"], capture_output=True, timeout=60)  # fmt: skip
        shutil.rmtree(self.base, ignore_errors=True)
