"""The manual page, watcherd(1), made from the click commands themselves: every
command, its arguments and options with their help, so the page cannot drift from the
program. `python -m watcherd.manpage > docs/watcherd.1` writes the copy that is
installed with the package (pyproject: share/man/man1); a test checks it is current.
"""

from __future__ import annotations

import click

from . import __version__
from .cli import main as cli_main

FILES = (
    ("~/.config/watcherd/config.toml", "the configuration (platformdirs config folder)"),
    ("~/.local/share/watcherd/index.sqlite3", "the index (platformdirs data folder)"),
    ("~/.local/share/watcherd/quarantine", "where quarantined copies are moved"),
)
ENVIRONMENT = (
    ("WATCHERD_CONFIG", "the configuration file, as --config"),
    ("WATCHERD_DB", "the index, as --db"),
)


def _escape(text: str) -> str:
    """Text as troff shows it: backslashes doubled, a leading dot or quote guarded."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    lines = [("\\&" + line if line.startswith((".", "'")) else line) for line in text.split("\n")]
    return "\n".join(lines)


def _options(command: click.Command, ctx: click.Context) -> list[str]:
    out = []
    for param in command.get_params(ctx):
        record = param.get_help_record(ctx)
        if record is None:
            continue
        names, help_text = record
        out += [".TP", f"\\fB{_escape(names)}\\fR", _escape(help_text or "")]
    return out


def _command(name: str, command: click.Command, parent: click.Context) -> list[str]:
    ctx = click.Context(command, info_name=name, parent=parent)
    usage = " ".join(command.collect_usage_pieces(ctx))
    out = [f'.SS "{_escape(ctx.command_path)} {_escape(usage)}"']
    out.append(_escape(command.help or command.short_help or ""))
    out += _options(command, ctx)
    if isinstance(command, click.Group):
        for sub in command.list_commands(ctx):
            out += _command(sub, command.get_command(ctx, sub), ctx)
    return out


def render(group: click.Group = cli_main) -> str:
    """The page in troff (man macros)."""
    # as a run makes it: with the group's settings (`-h` as well as `--help`)
    ctx = click.Context(group, info_name="watcherd", **group.context_settings)
    lines = [
        f'.TH WATCHERD 1 "" "watcherd {__version__}" "User Commands"',
        ".SH NAME",
        "watcherd \\- keep photo folders free of duplicate clutter",
        ".SH SYNOPSIS",
        "\\fBwatcherd\\fR [\\fIOPTIONS\\fR] \\fICOMMAND\\fR [\\fIARGS\\fR]...",
        ".SH DESCRIPTION",
        _escape(group.help or ""),
        ".SH OPTIONS",
        *_options(group, ctx),
        ".SH COMMANDS",
    ]
    for name in group.list_commands(ctx):
        lines += _command(name, group.get_command(ctx, name), ctx)
    lines.append(".SH FILES")
    for path, what in FILES:
        lines += [".TP", f"\\fI{_escape(path)}\\fR", _escape(what)]
    lines.append(".SH ENVIRONMENT")
    for name, what in ENVIRONMENT:
        lines += [".TP", f"\\fB{name}\\fR", _escape(what)]
    lines += [".SH SEE ALSO", "systemctl(1), the README of watcherd"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    click.echo(render(), nl=False)
