"""The `watcherd` command line: thin click commands over the modules that do the work."""

from __future__ import annotations

import functools
import json
import logging
import re
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import click

from . import config as config_mod
from . import exits, private, readahead
from . import log as log_mod
from .config import Config, ConfigError
from .pathtext import shown
from .workers import WorkersFailing, start_forkserver

# The index, the scanner and the report (SQLAlchemy, numpy, Pillow: ~0.4 s to import)
# are imported by the commands that use them. Besides `--help` answering at once, this
# module is what a decoding worker pool's forkserver imports when watcherd runs as its
# console script, and every scan waited for that before its first file was read.
if TYPE_CHECKING:
    from .index import Index


# rich is imported where output is made, not at the top: the daemon (`watcherd run`)
# never prints a table or a bar and is 2 MB smaller without it.
def console(**kwargs):
    """A rich Console, rich imported at first use. Into a pipe, a file or a log its
    lines are never wrapped (rich would wrap them at 80 columns, mid-path)."""
    from rich.console import Console

    stream = kwargs.get("file") or (sys.stderr if kwargs.get("stderr") else sys.stdout)
    if not stream.isatty():
        kwargs.setdefault("soft_wrap", True)
    return Console(**kwargs)


@functools.cache
def err_console():
    return console(stderr=True)


class App:
    """What every subcommand needs: the configuration and the index, opened on demand."""

    def __init__(self, config_path: str | None, db_path: str | None) -> None:
        self.config_path = config_path
        self.db_option = db_path
        self._config: Config | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = config_mod.load(self.config_path)
        return self._config

    @property
    def db_path(self) -> Path | str:
        return config_mod.resolve_db_path(self.db_option)

    @property
    def db_shown(self) -> str:
        from .index_location import shown

        return shown(self.db_path)

    def global_options(self, always_db: bool = False) -> list[str]:
        """`--config` and `--db` as this command got them (absolute), for a command line
        that must reach the same configuration and index: the restore commands in the
        HTML report, the daemon's "Show" (which names the index even when it is the
        default, `always_db`)."""
        options = []
        if self.config_path:
            options += ["--config", str(Path(self.config_path).expanduser().absolute())]
        if self.db_option or always_db:
            options += ["--db", str(self.db_path)]  # absolute already, or a URL
        return options

    def open_index(self, writer: bool = False) -> Index:
        """Open the index; a writer first finishes any move whose process died.

        Only moves whose owner is gone are touched (see owners.py): a scan or restore
        running beside this command keeps its own. A reader (status, report, the
        quarantine list) never moves a file.
        """
        from .actions import Mover
        from .index import Index

        if writer:
            recovering = Index(self.db_path, writer=True, machine=self.config.machine)
            with recovering as index, index.unit():
                Mover(index, self.config).recover()
        return Index(self.db_path, writer=writer, machine=self.config.machine)


def fail(message: str, code: int = 2) -> None:
    err_console().print(f"[bold red]watcherd:[/] {message}", highlight=False)
    sys.exit(code)


# The options of `watcherd` itself, which users also put after the command
# (`watcherd scan --db X DIR`): those taking a value, and the flags.
_GLOBAL_VALUED = ("--config", "--db", "--log-format")
_GLOBAL_FLAGS = ("--verbose",)


def _global_option(arg: str) -> tuple[bool, bool]:
    """(is a global option, takes the next word as its value)."""
    if arg in _GLOBAL_VALUED:
        return True, True
    if arg.split("=", 1)[0] in _GLOBAL_VALUED or arg in _GLOBAL_FLAGS:
        return True, False
    return (len(arg) > 1 and arg[0] == "-" and arg[1:] == "v" * (len(arg) - 1)), False


def hoist_global_options(args: list[str], commands) -> list[str]:
    """`args` with the global options found after the command moved before it, where
    click looks for them."""
    i = 0
    while i < len(args) and args[i] not in commands:
        is_global, valued = _global_option(args[i])
        i += 2 if valued else 1
    if i >= len(args):
        return args
    before, rest, moved = args[: i + 1], [], []
    k = i + 1
    while k < len(args):
        arg = args[k]
        if arg == "--":
            rest += args[k:]
            break
        is_global, valued = _global_option(arg)
        if is_global:
            moved += args[k : k + (2 if valued else 1)]
            k += 2 if valued else 1
        else:
            rest.append(arg)
            k += 1
    return before[:i] + moved + before[i:] + rest


class Main(click.Group):
    """Turns the errors a user can fix into one clear line instead of a traceback."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, hoist_global_options(list(args), self.commands))

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            fail(str(exc), exits.CONFIG)
        except WorkersFailing as exc:
            fail(f"{exc}: check that Python can start worker processes here", 1)
        except Exception as exc:
            db = sys.modules.get("watcherd.db")  # loaded by any command that opened an index
            if db is not None and isinstance(exc, db.SchemaTooNew | db.NotAnIndex):
                fail(str(exc))
            if db is not None and db.unreachable(exc) and isinstance(ctx.obj, App):
                why = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
                fail(f"cannot reach the index {ctx.obj.db_shown}: {why}", exits.UNREACHABLE)
            if db is not None and db.is_damaged(exc) and isinstance(ctx.obj, App):
                fail(damaged_index_help(ctx.obj, exc), exits.DAMAGED_INDEX)
            raise


def quarantine_named(cfg: Config) -> str:
    """Where quarantined files go, in words."""
    if cfg.per_volume:
        return f"{shown(str(cfg.home_quarantine))} (or the top of their own volume)"
    return shown(str(cfg.quarantine_dir))


def damaged_index_help(app: App, exc: Exception) -> str:
    """What to do about an index SQLite cannot read, in a few lines."""
    path = app.db_path
    reason = str(getattr(exc, "orig", exc))
    try:
        quarantine = str(app.config.home_quarantine)
    except ConfigError:
        quarantine = "the quarantine folder"
    return (
        f"the index {path} is damaged ({reason}).\n"
        f"  Move it aside:   mv '{path}' '{path}.damaged'\n"
        "  then `watcherd scan` indexes your folders again (nothing in them is changed).\n"
        f"  Files already in quarantine stay in {quarantine}; the damaged index held the\n"
        "  record of where each came from, so look there and move back what you want."
    )


@click.group(cls=Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config", "config_path", metavar="PATH", help="Configuration file [env WATCHERD_CONFIG]."
)
@click.option("--db", "db_path", metavar="PATH", help="Index database file [env WATCHERD_DB].")
@click.option("-v", "--verbose", count=True, help="Log every decision (-v) or debug (-vv).")
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Log lines for people (text) or one JSON object per line (json).",
)
@click.version_option(package_name="watcherd")
@click.pass_context
def main(
    ctx: click.Context, config_path: str | None, db_path: str | None, verbose: int, log_format: str
) -> None:
    """Keep photo folders free of duplicate clutter."""
    level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    log_mod.setup(level, log_format)
    ctx.obj = App(config_path, db_path)


def json_output(what: str):
    """`--format text|json` on a command, and the older spelling `--json`: the command
    gets one `as_json` either way (issue 28: one spelling on every command)."""

    def decorate(command):
        @functools.wraps(command)
        def both(*args, fmt: str, as_json: bool, **kwargs):
            return command(*args, as_json=as_json or fmt == "json", **kwargs)

        both = click.option(
            "--json", "as_json", is_flag=True, help=f"Print {what} as JSON (as --format json)."
        )(both)
        return click.option(
            "--format", "fmt", type=click.Choice(["text", "json"]), default="text",
            help=f"Print {what} as text or JSON.",
        )(both)  # fmt: skip

    return decorate


class RichProgress:
    """A rich progress bar (files, rate, time left) on stderr; silent when not a terminal."""

    def __init__(self, console) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.bar = Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("[cyan]{task.fields[rate]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            disable=not console.is_terminal,
        )
        self.task: int | None = None  # rich's TaskID
        self._start = 0.0

    def start(self, total: int) -> None:
        self._start = time.monotonic()
        self.bar.start()
        self.task = self.bar.add_task("Fingerprinting", total=total, rate="")
        if not self.bar.disable:  # log lines go above the bar, not glued to its end
            self._streams = log_mod.write_through(self.bar.console)

    def advance(self, n: int = 1) -> None:
        if self.task is None:
            return
        done = self.bar.tasks[0].completed + n
        rate = done / max(time.monotonic() - self._start, 1e-6)
        self.bar.update(self.task, advance=n, rate=f"{rate:.1f} files/s")

    def stop(self) -> None:
        self.bar.stop()
        if getattr(self, "_streams", None) is not None:
            log_mod.restore_streams(self._streams)
            self._streams = None


@main.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--dry-run", is_flag=True, help="Decide everything, write nothing.")
@json_output("the summary")
@click.option(
    "--rehash", is_flag=True,
    help="Read unchanged files again too (after an upgrade adds new fingerprints).",
)  # fmt: skip
@click.pass_obj
def scan(app: App, paths: tuple[Path, ...], dry_run: bool, as_json: bool, rehash: bool) -> None:
    """Index every photo under PATHS (default: the configured roots) and find duplicates."""
    cfg = app.config
    targets = list(paths) or [r.path for r in cfg.roots]
    if not targets:
        fail("nothing to scan: name a folder, or set `roots` in the configuration")
    existing = []
    for t in targets:
        if t.exists():
            existing.append(t)
        else:
            err_console().print(f"[yellow]watcherd:[/] folder not found, skipped: {t}")
    if not existing:
        fail("none of the folders to scan exist", 1)
    if logging.getLogger("watcherd").level >= logging.WARNING:
        log_mod.leave_to_summary()  # each error and failed move is listed at the end
    start_forkserver(["watcherd.preload"])  # warms up while the scanner is imported
    ahead = readahead.start(existing, cfg, app.db_path)  # reading while it is imported too
    try:
        from .pipeline import arrays_path
        from .scanner import scan as run_scan

        progress = RichProgress(err_console())
        with app.open_index(writer=True) as index:
            try:
                stats = run_scan(
                    existing,
                    cfg,
                    index,
                    dry_run=dry_run,
                    progress=progress,
                    rehash=rehash,
                    ahead=ahead,
                    arrays=arrays_path(app.db_path),
                )
            finally:
                progress.stop()
    finally:
        if ahead is not None:
            ahead.close()  # a no-op once the scan took it over
    if as_json:
        click.echo(json.dumps({**stats.as_dict(), "dry_run": dry_run}))
    else:
        print_scan_summary(stats, cfg, dry_run)
    if stats.interrupted:
        sys.exit(exits.INTERRUPTED)


def print_scan_summary(stats, cfg: Config, dry_run: bool) -> None:
    out = console()
    if stats.interrupted:
        out.print(
            "Interrupted: what was decided is kept; `watcherd scan` again goes on from here.",
            highlight=False,
        )
    prefix = "Dry run: would have found" if dry_run else "Found"
    out.print(
        f"Scanned {stats.seen} files in {stats.seconds:.1f} s: {stats.new} new, "
        f"{stats.changed} changed, {stats.skipped} unchanged, {stats.moved} moved, "
        f"{stats.missing} missing.",
        highlight=False,
    )
    out.print(
        f"{prefix} {stats.exact} exact and {stats.near} near duplicates, "
        f"{stats.similar} similar shots; {stats.errors} errors.",
        highlight=False,
    )
    if cfg.action == "quarantine" or any(r.action == "quarantine" for r in cfg.roots):
        verb = "would move" if dry_run else "moved"
        failed = f"; {len(stats.move_failures)} could not be moved" if stats.move_failures else ""
        out.print(
            f"Quarantine: {verb} {stats.quarantined} files to {quarantine_named(cfg)}{failed}.",
            highlight=False,
        )
        for path, reason in stats.move_failures:  # every one: each is a copy still in place
            out.print(f"  not moved: {shown(path)}: {reason}", highlight=False, soft_wrap=True)
    if cfg.action == "link" or any(r.action == "link" for r in cfg.roots):
        verb = "would link" if dry_run else "linked"
        out.print(f"Links: {verb} {stats.linked} exact copies to the kept file.", highlight=False)
    for path, reason in stats.error_paths[:20]:
        out.print(f"  error: {shown(path)}: {reason}", highlight=False, soft_wrap=True)
    if len(stats.error_paths) > 20:
        out.print(f"  … and {len(stats.error_paths) - 20} more errors", highlight=False)


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(value: str) -> datetime:
    """`7d`, `12h`, `30m`, `2w` ago, or an ISO date/time."""
    m = _DURATION.match(value)
    if m:
        return datetime.now(timezone.utc) - timedelta(**{_UNITS[m.group(2)]: float(m.group(1))})
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r}: use e.g. 7d, 12h, 30m or 2026-01-31") from None
    return dt if dt.tzinfo else dt.astimezone()


@main.command()
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json", "csv", "html"]), default="table",
    show_default=True, help="A table, JSON or CSV rows for scripts, or an HTML page.",
)  # fmt: skip
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
    help="Write the report to this file instead of the terminal.",
)  # fmt: skip
@click.option("--open", "open_it", is_flag=True, help="Open the HTML report (xdg-open).")
@click.option("--since", help="Only decisions newer than this (7d, 12h, or a date).")
@click.option("--root", type=click.Path(path_type=Path), help="Only files under this folder.")
@click.option("--kind", type=click.Choice(["exact", "near", "similar"]), help="Only this kind.")
@click.option(
    "--action",
    type=click.Choice(["flagged", "quarantined", "linked"]),
    help="Only copies so handled.",
)
@click.option("--limit", type=click.IntRange(min=1), help="At most this many, newest first.")
@click.option("--fail-on-duplicates", is_flag=True, help="Exit 1 when any duplicate is listed.")
@click.pass_obj
def report(
    app: App,
    fmt: str,
    output: Path | None,
    open_it: bool,
    since: str | None,
    root: Path | None,
    kind: str | None,
    action: str | None,
    limit: int | None,
    fail_on_duplicates: bool,
) -> None:
    """Show the duplicates found so far."""
    from . import report as report_mod

    filters = report_mod.Filters(
        since=parse_since(since) if since else None,
        root=str(root.expanduser().absolute()) if root else None,
        kind=kind,
        action=action,
        limit=limit,
    )
    if open_it and fmt != "html":
        fail("--open is for the HTML report: add --format html")
    with app.open_index() as index:
        data = report_mod.build(index, filters)
        if fmt == "html":
            from .fingerprint import is_image_name
            from .models import ACTIVE
            from .report_html import pictured, render

            pictures = pictured(data)
            stored = index.thumbnails(pictures)
            # photos still in their folders get thumbnails from a rehash (those in
            # quarantine are not scanned, and are few: they are read quietly); a video
            # has none to store, and a rehash would not give it one
            files = data.files
            unstored = sum(
                1
                for i in pictures
                if files[i].status == ACTIVE and i not in stored and is_image_name(files[i].path)
            )
            if unstored:
                err_console().print(
                    f"{unstored} photos were indexed before thumbnails were stored: reading "
                    "them now. `watcherd scan --rehash` once stores theirs.",
                    highlight=False,
                )

            text = render(data, stored, ["watcherd", *app.global_options()])
    if fmt == "json":
        text = json.dumps(report_mod.to_json_data(data), indent=2) + "\n"
    elif fmt == "csv":
        text = report_mod.to_csv(data)
    elif fmt == "table":
        if output is None:
            report_mod.print_table(data, console())
        else:
            with open(private.create(output), "w") as fh:
                report_mod.print_table(data, console(file=fh))
    if fmt == "html" and output is None and open_it:
        from platformdirs import user_cache_path

        output = user_cache_path("watcherd") / "report.html"
        private.folder(output.parent)
    if fmt != "table":
        if output is None:
            click.echo(text, nl=False)
        else:
            private.write(output, text)  # thumbnails of private photos: for the user alone
    if output is not None:
        click.echo(f"report written to {output}", err=True)
    if open_it:
        from .notifications import open_with_desktop

        open_with_desktop(str(output))
    if fail_on_duplicates and data["summary"]["duplicates"]:
        sys.exit(1)


@main.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--dry-run", is_flag=True, help="Decide and log, but move nothing.")
@click.pass_obj
def run(app: App, paths: tuple[Path, ...], dry_run: bool) -> None:
    """Watch PATHS (default: the configured roots) and decide each file as it arrives.

    Runs in the foreground: systemd (see `watcherd service install`) does the rest.
    SIGHUP reloads the configuration; SIGTERM or SIGINT stops cleanly.
    """
    from .daemon import Daemon
    from .daemon_files import AlreadyRunning

    for p in paths:
        if p.exists() and not p.is_dir():
            fail(f"{p} is a file: `watcherd run` watches folders (name the folder it is in)")
    if logging.getLogger("watcherd").level > logging.INFO:
        logging.getLogger("watcherd").setLevel(logging.INFO)  # the daemon logs every decision
    # "Show" on a notification opens the HTML report of this very index and config.
    show = [sys.executable, "-m", "watcherd", *app.global_options(always_db=True)]
    daemon = Daemon(
        app.config,
        app.db_path,
        list(paths),
        reload_config=lambda: config_mod.load(app.config_path),
        dry_run=dry_run,
        show_command=[*show, "report", "--format", "html", "--open"],
    )
    try:
        code = daemon.run()
    except AlreadyRunning as exc:
        fail(str(exc), 1)
    sys.exit(code)


@main.command()
@json_output("it")
@click.pass_obj
def status(app: App, as_json: bool) -> None:
    """Whether a daemon is running on this index, what it watches, and the counts."""
    from . import report as report_mod
    from .daemon_files import daemon_running, read_status

    running = daemon_running(app.db_path)
    state = read_status(app.db_path) or {}
    with app.open_index() as index:
        counts = index.counts()
        data = report_mod.build(index)["summary"]
        machines, this = index.files_per_machine(), index.machine
    result = {
        "running": running,
        "pid": state.get("pid") if running else None,
        "db": app.db_shown,
        "roots": state.get("roots", []) if running else [str(r.path) for r in app.config.roots],
        "files": counts["files"],
        "active": counts["active"],
        "errors": counts["errors"],
        "missing": counts["missing"],
        "duplicates": data["duplicates"],
        "last_event": state.get("last_event") or None,
        # root -> the sync client keeping it in step (a quarantine move deletes everywhere)
        "synced": state.get("synced", {}) if running else _synced(app.config.roots),
        "machine": this,  # this machine's name in the index
        "machines": machines,  # every machine's files (an index several machines share)
    }
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    out = console()
    if running:
        out.print(f"watcherd is running (pid {result['pid']}) on {result['db']}", highlight=False)
    else:
        out.print(f"watcherd is not running on {result['db']}", highlight=False)
    for root in result["roots"]:
        by = f" (kept in step by {result['synced'][root]})" if root in result["synced"] else ""
        out.print(f"  watching: {root}{by}" if running else f"  root: {root}{by}", highlight=False)
    out.print(
        f"{result['files']} files indexed, {result['duplicates']} duplicates, "
        f"{result['errors']} errors, {result['missing']} missing",
        highlight=False,
    )
    if set(machines) - {this}:
        mark = {this: " (this one)"}
        each = ", ".join(f"{m} {n}{mark.get(m, '')}" for m, n in machines.items())
        out.print(f"files per machine: {each}", highlight=False)
    last = result["last_event"]
    if last:
        when = datetime.fromtimestamp(last.get("ts", 0)).strftime("%Y-%m-%d %H:%M:%S")
        out.print(
            f"last event: {last.get('event')} {last.get('path', '')} at {when}", highlight=False
        )


def _synced(roots) -> dict[str, str]:
    from .synced import sync_client

    return {str(r.path): client for r in roots if (client := sync_client(r.path))}


@main.command("notify-test")
@click.pass_obj
def notify_test(app: App) -> None:
    """Send one desktop notification, to check that they reach this session."""
    from .notifications import NotifyError, send_test

    try:
        shown = send_test()
    except NotifyError as exc:
        fail(f"no notification sent: {exc}", 1)
    click.echo(shown)
    if not app.config.notifications:
        click.echo("note: `notifications = false` in the configuration: the daemon sends none")


@main.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script for SHELL (e.g. add
    `eval "$(watcherd completion bash)"` to ~/.bashrc)."""
    from click.shell_completion import get_completion_class

    complete = get_completion_class(shell)(main, {}, "watcherd", "_WATCHERD_COMPLETE")
    click.echo(complete.source())


@main.group("quarantine")
def quarantine_group() -> None:
    """List, apply, or purge the files watcherd moves to quarantine."""


@quarantine_group.command("list")
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", help="table or json."
)
@click.pass_obj
def quarantine_list(app: App, fmt: str) -> None:
    """What is in quarantine: from where, why, when, and how big."""
    from . import quarantine as q

    with app.open_index() as index:
        entries = q.entries(index)
    if fmt == "json":
        click.echo(json.dumps([e.as_dict() for e in entries], indent=2))
        return
    q.print_table(entries, console())


@quarantine_group.command("apply")
@click.option("--dry-run", is_flag=True, help="Say what would move, and move nothing.")
@click.option("--kind", type=click.Choice(["exact", "near"]), help="Only copies of this kind.")
@click.option("--root", type=click.Path(path_type=Path), help="Only copies under this folder.")
@click.pass_obj
def quarantine_apply(app: App, dry_run: bool, kind: str | None, root: Path | None) -> None:
    """Move the duplicates flagged so far to quarantine, as the daemon would."""
    from .apply_flagged import apply_flagged

    with app.open_index(writer=True) as index:
        done = apply_flagged(index, app.config, kind=kind, root=root, dry_run=dry_run)
    out = console()
    for a in done:
        if a.moved_to:
            out.print(f"moved {shown(a.path)} -> {shown(a.moved_to)}", highlight=False)
        else:
            out.print(f"{a.note}: {shown(a.path)}", highlight=False)
    if dry_run:
        count = sum(a.note == "would move" for a in done)
        out.print(f"Would move {count} of {len(done)} flagged duplicates.", highlight=False)
        return
    moved = sum(1 for a in done if a.moved_to)
    out.print(f"Moved {moved} of {len(done)} flagged duplicates.", highlight=False)
    if any(a.failed for a in done):
        sys.exit(1)


@quarantine_group.command("purge")
@click.option("--older-than", "older", required=True, help="e.g. 30d: quarantined before then.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_obj
def quarantine_purge(app: App, older: str, yes: bool) -> None:
    """Send files quarantined before --older-than to the desktop trash."""
    from . import quarantine as q
    from .report import human_size

    cutoff = parse_since(older)
    with app.open_index(writer=True) as index:
        victims = [e for e in q.entries(index) if e.quarantined_at < cutoff and not e.linked]
        if not victims:
            click.echo("Nothing in quarantine is that old.")
            return
        total = sum(e.size for e in victims)
        click.echo(f"{len(victims)} files ({human_size(total)}) to the trash:")
        for e in victims[:20]:
            click.echo(f"  {e.path}")
        if not yes and not click.confirm("Move them to the trash?", default=False):
            click.echo("Nothing purged.")
            return
        done, failed = q.purge(index, victims)
    click.echo(f"Moved {done} files to the trash.")
    for path, reason in failed:
        click.echo(f"  not purged: {path}: {reason}", err=True)
    if failed:
        sys.exit(1)


@main.command()
@click.argument("targets", nargs=-1)
@click.option("--all", "everything", is_flag=True, help="Restore everything in quarantine.")
@click.option("--since", help="Restore what was quarantined since then (e.g. 2h).")
@click.option("--dry-run", is_flag=True, help="Say what would come back, and move nothing.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask before restoring many files.")
@click.pass_obj
def restore(
    app: App,
    targets: tuple[str, ...],
    everything: bool,
    since: str | None,
    dry_run: bool,
    yes: bool,
) -> None:
    """Bring quarantined files back (by id, original path or quarantine path)."""
    from . import quarantine as q
    from .actions import ActionError, Mover

    if not targets and not everything and not since:
        fail("say what to restore: IDs or paths, --all, or --since")
    with app.open_index(writer=True) as index:
        try:
            chosen = q.select(index, targets, everything, parse_since(since) if since else None)
        except LookupError as exc:
            fail(str(exc), 1)
        if dry_run:
            for e in chosen:
                if e.linked:
                    click.echo(f"would give {shown(e.path)} its own bytes back (linked)")
                else:
                    click.echo(f"would restore {shown(e.original)} (from {shown(e.path)})")
            click.echo(f"Would restore {len(chosen)} files.")
            return
        many = (everything or since) and len(chosen) > ASK_ABOVE
        if many and not yes and sys.stdin.isatty():  # a script or a pipe is not asked
            click.echo(f"{len(chosen)} files would come back out of quarantine.")
            if not click.confirm("Restore them all?", default=False):
                click.echo("Nothing restored.")
                return
        mover = Mover(index, app.config)
        failures = 0
        for e in chosen:
            f = index.get(e.file_id)
            try:
                with index.unit():
                    out = mover.restore(f)
            except ActionError as exc:  # rolled back
                failures += 1
                click.echo(f"not restored: {e.path}: {exc}", err=True)
                continue
            click.echo(f"restored {out.path}" + (f" ({out.note})" if out.note else ""))
    if failures:
        sys.exit(1)


ASK_ABOVE = 5  # restore --all or --since asks first when more files would come back


@main.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--list", "listing", is_flag=True, help="List the pairs said not to be copies.")
@click.option("--remove", is_flag=True, help="Forget that the two files are not copies.")
@click.pass_obj
def ignore(app: App, paths: tuple[Path, ...], listing: bool, remove: bool) -> None:
    """Remember that two files (PATH PATH) are not duplicates: never flagged again."""
    from . import ignored

    if listing:
        with app.open_index() as index:
            for a, b in ignored.pairs(index):
                click.echo(f"{shown(a)}\t{shown(b)}")
        return
    if len(paths) != 2:
        fail("name two files: watcherd ignore PATH PATH (or --list)")
    first, second = (p.expanduser().absolute() for p in paths)
    if first == second:
        fail(f"a file is never a duplicate of itself: {first}")
    with app.open_index(writer=True) as index:
        try:
            done = (ignored.forget if remove else ignored.remember)(
                index, app.config, first, second
            )
        except LookupError as exc:
            fail(str(exc), 1)
    if remove:
        click.echo(f"forgot: {first} and {second} may be called duplicates again."
                   if done else f"{first} and {second} were not ignored.")  # fmt: skip
    else:
        click.echo(f"{first} and {second} will not be called duplicates again.")


@main.group("service")
def service_group() -> None:
    """Install or remove the systemd user service."""


@service_group.command("install")
@click.option("--enable", is_flag=True, help="Start it at every login.")
@click.option("--now", is_flag=True, help="Start it now.")
@click.pass_obj
def service_install(app: App, enable: bool, now: bool) -> None:
    """Write the user unit for this installation and tell systemd about it."""
    from . import service

    if not app.config.roots:
        where = config_mod.config_path(app.config_path)[0]
        fail(
            f"nothing to watch: set `roots` in {where} first (`watcherd config init` "
            "writes one); a service with no folder would only stop again",
            exits.CONFIG,
        )
    result = service.install(app.config_path, app.db_option, enable=enable, now=now)
    for line in result.done:
        click.echo(line)
    for line in result.notes:
        click.echo(f"note: {line}", err=True)
    if (enable or now) and not result.enabled:
        sys.exit(1)  # asked to enable or start it, and systemd did not
    click.echo("To keep watching after you log out: loginctl enable-linger $USER", err=True)


@service_group.command("uninstall")
def service_uninstall() -> None:
    """Stop and disable the service and remove its unit file."""
    from . import service

    result = service.uninstall()
    for line in result.done:
        click.echo(line)
    for line in result.notes:
        click.echo(f"note: {line}", err=True)


@main.group("config")
def config_group() -> None:
    """Create or inspect the configuration file."""


@config_group.command("init")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@click.option(
    "--root", "roots", multiple=True, type=click.Path(file_okay=False, path_type=Path),
    help="A folder to watch (again for more); asked for at a terminal when not given.",
)  # fmt: skip
@click.pass_obj
def config_init(app: App, force: bool, roots: tuple[Path, ...]) -> None:
    """Write a commented configuration file with every default and the folders to watch."""
    target, _ = config_mod.config_path(app.config_path)
    if target.exists() and not force:
        fail(f"{target} already exists (use --force to overwrite)", 1)
    chosen = list(roots)
    if not chosen and sys.stdin.isatty():
        answer = click.prompt(
            "Folders to watch (separated by commas)", default="~/Pictures", show_default=True
        )
        chosen = [Path(p.strip()).expanduser() for p in answer.split(",") if p.strip()]
    for folder in chosen:
        if not folder.expanduser().is_dir():
            err_console().print(f"[yellow]watcherd:[/] not a folder (yet): {folder}")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(config_mod.default_file_text(chosen))
    click.echo(f"Wrote {target}" + ("" if chosen else " (no folders to watch yet: set `roots`)"))


@config_group.command("show")
@json_output("them")
@click.pass_obj
def config_show(app: App, as_json: bool) -> None:
    """Print the effective settings and where they came from."""
    cfg = app.config
    data = {
        "config_file": str(cfg.source) if cfg.source else None,
        "db": app.db_shown,
        **cfg.to_dict(),
    }
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(f"# configuration file: {data.pop('config_file') or '(none, defaults)'}")
    click.echo(f"# index: {data.pop('db')}")
    for line in config_mod.dump_toml(data):
        click.echo(line)
    missing = [r.path for r in cfg.roots if not r.path.is_dir()]
    for p in missing:
        click.echo(f"# warning: root does not exist: {p}", err=True)


def entry() -> None:
    """The `watcherd` command (console script and `python -m watcherd`): `main`, then
    an exit that skips tearing the interpreter down.

    Once a command is done, freeing every module and object it loaded (SQLAlchemy,
    numpy) took another 0.15 s before the shell got its prompt back: a tenth of a quick
    `report`, 4% of a scan of a thousand photos. Everything that matters at exit still
    runs first: the atexit handlers (logging's flush, multiprocessing's clean-up of its
    forkserver and temporary folder) and the flush of stdout and stderr; the index was
    committed and closed by the command itself. If any other thread is still running,
    the normal exit waits for it as usual.
    """
    import atexit
    import os
    import threading

    try:
        # one name however it is started (console script, `python -m watcherd`): in its
        # usage lines, and in the variable shell completion calls it with
        main(prog_name="watcherd")
        code: object = 0
    except SystemExit as done:
        code = done.code
    if threading.active_count() > 1:
        sys.exit(code)
    if code is None:
        code = 0
    elif not isinstance(code, int):
        print(code, file=sys.stderr)  # what the interpreter does with a message
        code = 1
    atexit._run_exitfuncs()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):  # a closed pipe: the interpreter's own code for it
        code = code or 120
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    entry()
