"""The README names every command, option and configuration key the code has, so the
documentation cannot drift from it (in the manner of sqlite-utils' and datasette's
documentation tests)."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import click
import pytest

from watcherd.cli import main
from watcherd.config import NEAR_KEYS, Config

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def commands(group: click.Group, prefix: str = "watcherd") -> list[tuple[str, click.Command]]:
    out = []
    for name, command in sorted(group.commands.items()):
        full = f"{prefix} {name}"
        out.append((full, command))
        if isinstance(command, click.Group):
            out += commands(command, full)
    return out


ALL = commands(main)


@pytest.mark.parametrize("name", [name for name, _ in ALL])
def test_every_command_is_in_the_readme(name):
    words = name.split()[1:]
    # the command with its parent group(s), as a user types it
    assert re.search(r"\b" + r"\s+".join(map(re.escape, words)) + r"\b", README), name


@pytest.mark.parametrize(
    ("name", "option"),
    [
        (name, opt)
        for name, command in [("watcherd", main), *ALL]
        for param in command.params
        if isinstance(param, click.Option)
        for opt in param.opts
        if opt.startswith("--") and opt not in ("--help", "--version")
    ],
)
def test_every_option_is_in_the_readme(name, option):
    assert f"`{option}" in README or f" {option}" in README, f"{name} {option}"


@pytest.mark.parametrize("key", sorted({f.name for f in fields(Config)} - {"source"}))
def test_every_configuration_key_is_in_the_readme(key):
    assert re.search(rf"^{key} = ", README, re.M) or f"`{key}" in README, key


@pytest.mark.parametrize("key", NEAR_KEYS)
def test_every_near_key_is_in_the_readme_configuration_example(key):
    assert re.search(rf"^{key} = ", README, re.M), key


def test_the_manual_page_is_made_from_the_commands_as_they_are():
    """docs/watcherd.1, installed with the package, is what `python -m watcherd.manpage`
    makes now: every command with its options (regenerate it when they change)."""
    import click

    from watcherd import manpage
    from watcherd.cli import main

    page = (ROOT / "docs" / "watcherd.1").read_text()
    # made in a process of its own, as it is made for the package: click keeps each
    # command's help option once made, and the commands this test process has run in
    # it (conftest.invoke) may have made it with other names
    made = subprocess.run(
        [sys.executable, "-m", "watcherd.manpage"], capture_output=True, text=True, check=True
    ).stdout
    assert page == made, "run: python -m watcherd.manpage > docs/watcherd.1"
    assert manpage.render().startswith(".TH WATCHERD 1")
    ctx = click.Context(main, info_name="watcherd")
    for name in main.list_commands(ctx):
        assert f'.SS "watcherd {name.replace("-", chr(92) + "-")} ' in page
