"""The systemd user unit: rendering it for this installation, installing, removing.

The unit template ships in the package (`watcherd/data/watcherd.service`, also linked
as `systemd/watcherd.service`); installing fills in ExecStart with the Python that runs
this watcherd, so a virtualenv install works without being on PATH.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

UNIT_NAME = "watcherd.service"


def unit_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "systemd" / "user"


def template() -> str:
    return resources.files("watcherd").joinpath("data", UNIT_NAME).read_text()


def _quote(arg: str) -> str:
    """Quote one ExecStart argument for systemd (its own rules, close to the shell's).

    `%` starts a specifier and `$` a variable in unit files, so both are doubled.
    """
    arg = arg.replace("%", "%%").replace("$", "$$")
    if arg and not any(c in arg for c in " \t\n\"'\\;"):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def exec_start(config_path: str | None = None, db_path: str | None = None) -> str:
    args = [sys.executable, "-m", "watcherd"]
    if config_path:
        args += ["--config", str(Path(config_path).expanduser().absolute())]
    if db_path:
        from .config import resolve_db_path

        args += ["--db", str(resolve_db_path(db_path))]  # a URL with a password is refused
    args.append("run")
    return " ".join(_quote(a) for a in args)


def render(config_path: str | None = None, db_path: str | None = None) -> str:
    return template().replace("@EXEC_START@", exec_start(config_path, db_path))


@dataclass
class Result:
    done: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    enabled: bool = False  # the enable or start asked for was done


def _systemctl(*args: str) -> subprocess.CompletedProcess | None:
    """Run `systemctl --user ...`; None when there is no user manager to talk to."""
    exe = shutil.which("systemctl")
    if exe is None:
        return None
    try:
        probe = subprocess.run(
            [exe, "--user", "show-environment"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if probe.returncode != 0:
        return None
    return subprocess.run([exe, "--user", *args], capture_output=True, text=True, timeout=60)


def install(
    config_path: str | None = None,
    db_path: str | None = None,
    enable: bool = False,
    now: bool = False,
) -> Result:
    target = unit_dir() / UNIT_NAME
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render(config_path, db_path))
    result = Result(done=[f"wrote {target}"])
    reload = _systemctl("daemon-reload")
    if reload is None:
        result.notes.append(
            "no systemd user manager reachable: run `systemctl --user daemon-reload` "
            "and `systemctl --user enable --now watcherd` in your desktop session"
        )
        return result
    result.done.append("systemctl --user daemon-reload")
    if enable or now:
        args = ["enable"] if enable else ["start"]
        if enable and now:
            args.append("--now")
        proc = _systemctl(*args, UNIT_NAME)
        if proc is not None and proc.returncode == 0:
            result.done.append(f"systemctl --user {' '.join(args)} {UNIT_NAME}")
            result.enabled = True
        else:
            err = (proc.stderr.strip() if proc else "") or "systemctl failed"
            result.notes.append(f"systemctl --user {' '.join(args)} failed: {err}")
    return result


def uninstall() -> Result:
    target = unit_dir() / UNIT_NAME
    result = Result()
    stop = _systemctl("disable", "--now", UNIT_NAME)
    if stop is not None and stop.returncode == 0:
        result.done.append(f"systemctl --user disable --now {UNIT_NAME}")
    if target.exists():
        target.unlink()
        result.done.append(f"removed {target}")
    else:
        result.notes.append(f"{target} was not installed")
    if stop is not None:
        _systemctl("daemon-reload")
        result.done.append("systemctl --user daemon-reload")
    return result
