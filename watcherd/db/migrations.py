"""The schema's versions: a fresh index is created from the models at the latest version;
an older one is brought forward one step at a time. SQLite and PostgreSQL alike; what
differs between them (the triggers of the change log) is asked of the backend's module.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Connection, inspect, select, text

from ..models import (
    Base,
    Decision,
    File,
    IgnoredPair,
    Move,
    RegionHash,
    SchemaVersion,
    Thumbnail,
    Video,
)
from . import postgresql, sqlite
from .errors import SchemaTooNew


# Migrations from version N-1 to N, in order. A fresh index is created from the models
# and stamped with the latest version; an older one is brought forward step by step,
# inside one transaction per step, so an interrupted upgrade leaves the old version.
def _v2_quarantine(conn: Connection) -> None:
    """Version 2: the move journal and ignored pairs (quarantine and restore)."""
    Base.metadata.create_all(conn, tables=[Move.__table__, IgnoredPair.__table__])


def _v3_regions(conn: Connection) -> None:
    """Version 3: region hashes for cropped copies. Images indexed before have none
    until they are read again; they still match by their whole-picture hashes."""
    Base.metadata.create_all(conn, tables=[RegionHash.__table__])


def _v4_thumbnails(conn: Connection) -> None:
    """Version 4: thumbnails and the date a photo was taken, for the HTML report.
    Files indexed before have neither until they are read again; the report makes
    their thumbnails from the files themselves."""
    # Version 1 creates `files` from today's model, which has the column already.
    if "taken_at" not in {c["name"] for c in inspect(conn).get_columns("files")}:
        conn.exec_driver_sql("ALTER TABLE files ADD COLUMN taken_at VARCHAR(19)")
    Base.metadata.create_all(conn, tables=[Thumbnail.__table__])


# The matcher's arrays are saved beside the index when the daemon stops and loaded at
# its next start instead of being rebuilt from millions of rows, but only if nothing
# they depend on changed meanwhile, whoever changed it (a scan, a restore, another
# version or machine). Triggers count every such change in one row (`generation`).
_GENERATION_TRIGGERS = sqlite.GENERATION_TRIGGERS


def _meta(conn: Connection) -> None:
    conn.exec_driver_sql(
        "CREATE TABLE IF NOT EXISTS meta (key VARCHAR(32) PRIMARY KEY, value BIGINT NOT NULL)"
    )
    for key in ("generation", "foreign"):  # foreign: read until version 7
        conn.exec_driver_sql(
            f"INSERT INTO meta (key, value) VALUES ('{key}', 0) ON CONFLICT (key) DO NOTHING"
        )


def _generation(conn: Connection) -> None:
    """Version 5 (SQLite only: an index on PostgreSQL starts at 9): a change counter."""
    _meta(conn)
    sqlite.counting_triggers(conn)


def _v6_original_index(conn: Connection) -> None:
    """Version 6: an index on decisions.original_id. Ending a file's pairings (it was
    deleted, changed or restored) looks for it on both sides of every decision; without
    this index each such file read the whole table: 21.8 ms at a million files with
    200,000 decisions, 1.9 ms with it."""
    conn.exec_driver_sql(
        "CREATE INDEX IF NOT EXISTS ix_decisions_original_id ON decisions (original_id)"
    )


# Which files each change touched, so that matcher arrays saved or held at an older
# generation catch up by re-reading those files alone (Pipeline.catch_up): one row per
# file, with the generation of its latest change. Changes to a file's regions need no
# row of their own: they are only ever written together with the file's row.
def _v7_changes(conn: Connection) -> None:
    """Version 7: the change log behind the generation counter. It starts empty, so it
    reaches back to the generation it was made at (`logged_from`)."""
    conn.exec_driver_sql(
        "CREATE TABLE IF NOT EXISTS changes "
        "(file_id BIGINT PRIMARY KEY, generation BIGINT NOT NULL)"
    )
    conn.exec_driver_sql(
        "INSERT INTO meta (key, value) "
        "SELECT 'logged_from', value FROM meta WHERE key = 'generation' "
        "ON CONFLICT (key) DO NOTHING"
    )
    backend(conn).change_log_triggers(conn)


def backend(conn: Connection):
    """The module that knows this connection's database: sqlite or postgresql."""
    return postgresql if conn.dialect.name == "postgresql" else sqlite


def _v8_move_owner(conn: Connection) -> None:
    """Version 8: each journalled move names the process that owns it (only that
    process acts on it while it lives) and the root its file was moved out of, as
    configured and as it really was (a restore opens no folder through a link)."""
    have = {c["name"] for c in inspect(conn).get_columns("moves")}
    for column in ("owner VARCHAR(64)", "root TEXT", "root_real TEXT"):
        if column.split()[0] not in have:
            conn.exec_driver_sql(f"ALTER TABLE moves ADD COLUMN {column}")


def _v9_videos(conn: Connection) -> None:
    """Version 9: sampled frames of videos, for near-duplicate videos. Videos indexed
    before are matched by their bytes only until they are read again (scan --rehash)."""
    Base.metadata.create_all(conn, tables=[Video.__table__])


def _v10_machines(conn: Connection) -> None:
    """Version 10: every file and journalled move belongs to a machine; the rows there
    are become the machine's that upgrades the index (a SQLite index is one machine's)."""
    machine = conn.info.get("machine", "")
    for table, column in (("files", "machine"), ("moves", "machine"), ("decisions", "decided_on")):
        if column not in {c["name"] for c in inspect(conn).get_columns(table)}:
            conn.exec_driver_sql(
                f"ALTER TABLE {table} ADD COLUMN {column} VARCHAR(64) NOT NULL DEFAULT ''"
            )
        conn.execute(text(f"UPDATE {table} SET {column} = :m"), {"m": machine})
    conn.exec_driver_sql(
        "CREATE UNIQUE INDEX IF NOT EXISTS ux_files_machine_path ON files (machine, path)"
    )


def counter(conn: Connection, key: str) -> int:
    return int(conn.exec_driver_sql(f"SELECT value FROM meta WHERE key = '{key}'").scalar())


def schema_version(conn: Connection) -> int:
    if not inspect(conn).has_table(SchemaVersion.__tablename__):
        return 0
    return conn.execute(select(SchemaVersion.version)).scalar() or 0


def migrate(engine, machine: str = "") -> int:
    """Bring the schema to LATEST; returns the version found before migrating. Rows
    that come to need a machine (version 10) become `machine`'s."""
    with engine.begin() as conn:
        found = schema_version(conn)
        if found > LATEST:
            raise SchemaTooNew(
                f"index schema version {found} is newer than this watcherd understands "
                f"({LATEST}); upgrade watcherd"
            )
        if found == 0 and not inspect(conn).has_table("files"):
            Base.metadata.create_all(conn)
            _meta(conn)
            _v7_changes(conn)
            conn.execute(SchemaVersion.__table__.insert().values(id=1, version=LATEST))
            return 0
    for version in range(found + 1, LATEST + 1):
        with engine.begin() as conn:
            conn.info["machine"] = machine
            MIGRATIONS[version](conn)
            conn.execute(SchemaVersion.__table__.delete())
            conn.execute(SchemaVersion.__table__.insert().values(id=1, version=version))
    return found


MIGRATIONS: dict[int, Callable[[Connection], None]] = {
    1: lambda conn: Base.metadata.create_all(
        conn, tables=[SchemaVersion.__table__, File.__table__, Decision.__table__]
    ),
    2: _v2_quarantine,
    3: _v3_regions,
    4: _v4_thumbnails,
    5: _generation,
    6: _v6_original_index,
    7: _v7_changes,
    8: _v8_move_owner,
    9: _v9_videos,
    10: _v10_machines,
}
LATEST = max(MIGRATIONS)
