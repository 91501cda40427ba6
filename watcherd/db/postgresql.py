"""PostgreSQL, for one index shared by a family's machines: its connection setup, its
writer lock and the triggers of its change log, in PL/pgSQL.

Writers take one advisory transaction lock as their first statement, so that, as on
SQLite with BEGIN IMMEDIATE, watcherd's writers commit one at a time: whatever changed
between one of a daemon's commits and its next transaction was written by somebody else
(the change log's catch-up relies on it). Readers take no lock.
"""

from __future__ import annotations

from sqlalchemy import Connection, Engine, create_engine, event

# pg_advisory_xact_lock's key: "watcherd" in ASCII, as a signed 64-bit number
WRITER_LOCK = int.from_bytes(b"watcherd", "big", signed=True)

_FUNCTIONS = (
    """CREATE OR REPLACE FUNCTION watcherd_count() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE meta SET value = value + 1 WHERE key = 'generation';
        RETURN NULL;
    END $$""",
    """CREATE OR REPLACE FUNCTION watcherd_log() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE g BIGINT;
    BEGIN
        UPDATE meta SET value = value + 1 WHERE key = 'generation' RETURNING value INTO g;
        INSERT INTO changes (file_id, generation)
            VALUES (CASE WHEN TG_OP = 'DELETE' THEN OLD.id ELSE NEW.id END, g)
            ON CONFLICT (file_id) DO UPDATE SET generation = excluded.generation;
        RETURN NULL;
    END $$""",
)
_TRIGGERS = {
    "files_ins": ("AFTER INSERT ON files", "watcherd_log"),
    "files_del": ("AFTER DELETE ON files", "watcherd_log"),
    "files_upd": ("AFTER UPDATE OF phash, dhash, status ON files", "watcherd_log"),
    "regions_ins": ("AFTER INSERT ON region_hashes", "watcherd_count"),
    "regions_del": ("AFTER DELETE ON region_hashes", "watcherd_count"),
}


def change_log_triggers(conn: Connection) -> None:
    """Count every change, and log which file each change to `files` touched (the same
    rows as SQLite's triggers write)."""
    for sql in _FUNCTIONS:
        conn.exec_driver_sql(sql)
    for name, (when, function) in _TRIGGERS.items():
        table = when.rsplit(" ", 1)[1]
        conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS generation_{name} ON {table}")
        conn.exec_driver_sql(
            f"CREATE TRIGGER generation_{name} {when} FOR EACH ROW EXECUTE FUNCTION {function}()"
        )


def engine(url: str, writer: bool) -> Engine:
    made = create_engine(url, pool_pre_ping=True)
    if writer:
        lock = f"SELECT pg_advisory_xact_lock({WRITER_LOCK})"
        event.listen(made, "begin", lambda conn: conn.exec_driver_sql(lock))
    return made
