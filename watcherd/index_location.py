"""Where an index is (a SQLite file, or a PostgreSQL server's database named by a URL),
and where this machine keeps its own files about it: the daemon's lock, its status,
its saved matcher arrays and the owners of journalled moves. Beside a SQLite file;
for a server, in this machine's state folder (platformdirs `user_state_path`), keyed by
the URL: several machines share the server's index, each with its own lock and status.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

Target = Path | str  # a SQLite file's path, or a server URL

SERVER_SCHEMES = ("postgresql",)


class BadTarget(ValueError):
    """`--db` names nothing watcherd can use: the message says why, in one line."""


def is_server(target: Target) -> bool:
    return isinstance(target, str) and "://" in target


def resolve(text: str) -> Target:
    """A `--db` value as watcherd uses it: a path or `sqlite:///path` gives the file's
    absolute path; `postgresql[+driver]://...` stays a URL (never a file name). A URL
    with a password in it is refused: it would show in `ps`, in logs and in the service
    file; libpq reads it from ~/.pgpass, PGPASSFILE or PGPASSWORD instead."""
    if "://" not in text:
        return Path(text).expanduser().absolute()
    scheme, _, rest = text.partition("://")
    base = scheme.split("+")[0]
    if base == "sqlite":
        if not rest.startswith("/") or rest == "/":
            raise BadTarget(f"--db {text}: a SQLite URL names a file: sqlite:////absolute/path")
        return Path(rest[1:]).expanduser().absolute()  # sqlite:///relative, ////absolute
    if base not in SERVER_SCHEMES:
        raise BadTarget(f"--db {text}: watcherd uses SQLite (a path) or PostgreSQL (a URL)")
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(text)
    except ArgumentError:
        raise BadTarget(f"--db {text}: not a database URL") from None
    if url.password:
        raise BadTarget(
            f"--db {shown(text)}: keep the password out of the URL (put it in ~/.pgpass)"
        )
    if base == "postgresql" and url.drivername == "postgresql":
        text = "postgresql+psycopg" + text[len(scheme) :]  # the driver the extra installs
    return text


def shown(target: Target) -> str:
    """The index as shown to the user: a URL with any password masked."""
    return re.sub(r"(://[^/@:]*:)[^@/]*@", r"\1***@", str(target))


def beside(target: Target, suffix: str) -> Path:
    """Where this machine's file `suffix` about the index goes (".lock", ".status.json",
    ".arrays.npz", ".owners")."""
    if not is_server(target):
        p = Path(target)
        return p.with_name(p.name + suffix)
    import platformdirs

    key = hashlib.sha1(os.fsencode(str(target))).hexdigest()[:12]
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", str(target).split("://", 1)[1])[:60]
    return platformdirs.user_state_path("watcherd") / f"{readable}-{key}{suffix}"


def this_machine() -> str:
    """This machine's name in an index: the host name (config `machine` overrides it)."""
    import socket

    return socket.gethostname() or "localhost"


def exists(target: Target) -> bool:
    """Whether the index is there already (a server's database is taken to be)."""
    return is_server(target) or Path(target).exists()
