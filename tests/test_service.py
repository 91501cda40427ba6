"""The systemd user unit: rendered for this install, verified by systemd-analyze."""

import os
import shutil
import subprocess
import sys

import pytest
from conftest import run_cli

from watcherd import service


def analyze_env(home) -> dict:
    runtime = home / "run"
    runtime.mkdir(mode=0o700, exist_ok=True)
    return {**os.environ, "HOME": str(home), "XDG_RUNTIME_DIR": str(runtime)}


@pytest.fixture
def analyze():
    exe = shutil.which("systemd-analyze")
    if exe is None:
        pytest.skip("systemd-analyze not installed (Debian package: systemd)")
    return exe


def test_rendered_unit_points_at_this_python():
    text = service.render()
    exec_line = next(ln for ln in text.splitlines() if ln.startswith("ExecStart="))
    assert exec_line == f"ExecStart={sys.executable} -m watcherd run"
    for needed in ("Type=notify", "Restart=on-failure", "WatchdogSec=", "NoNewPrivileges=yes"):
        assert needed in text


def test_exec_start_quotes_for_systemd(tmp_path):
    line = service.exec_start(config_path=str(tmp_path / "my conf%.toml"), db_path="/d/$x.db")
    assert '"' + str(tmp_path / "my conf%%.toml") + '"' in line
    assert "/d/$$x.db" in line


def test_a_server_index_goes_into_the_unit_never_a_password():
    """The unit names a PostgreSQL index by its URL (with the driver the postgres extra
    installs); a URL carrying a password is refused: the unit file is readable by any
    process of the user and shows in `systemctl cat` (libpq reads ~/.pgpass instead)."""
    from watcherd.config import ConfigError

    line = service.exec_start(db_path="postgresql://me@nas/watcherd")
    assert line.endswith("--db postgresql+psycopg://me@nas/watcherd run")
    with pytest.raises(ConfigError, match="password"):
        service.exec_start(db_path="postgresql://me:hunter2@nas/watcherd")


def test_install_writes_unit_and_verify_passes(isolated_env, analyze):
    (isolated_env / "Pictures").mkdir()
    config = isolated_env / ".config" / "watcherd" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(f'roots = ["{isolated_env / "Pictures"}"]\n')  # something to watch
    out = run_cli("--db", str(isolated_env / "i.sqlite3"), "service", "install")
    unit = isolated_env / ".config/systemd/user/watcherd.service"
    assert f"wrote {unit}" in out.stdout
    text = unit.read_text()
    assert f"--db {isolated_env / 'i.sqlite3'} run" in text
    proc = subprocess.run(
        [analyze, "--user", "verify", str(unit)],
        capture_output=True,
        text=True,
        env=analyze_env(isolated_env),
    )
    # verify exits 0 even for some parse warnings: any output at all is a failure
    assert proc.returncode == 0 and proc.stdout == "" and proc.stderr == "", proc.stderr
    run_cli("service", "uninstall")
    assert not unit.exists()


def test_verify_would_catch_a_broken_unit(isolated_env, analyze):
    unit = isolated_env / ".config/systemd/user/watcherd.service"
    unit.parent.mkdir(parents=True)
    unit.write_text(service.render().replace("Type=notify", "Type=notifyy"))
    proc = subprocess.run(
        [analyze, "--user", "verify", str(unit)],
        capture_output=True,
        text=True,
        env=analyze_env(isolated_env),
    )
    assert proc.stderr != ""


def test_security_exposure_is_reported(isolated_env, analyze):
    unit = isolated_env / "watcherd.service"
    unit.write_text(service.render())
    proc = subprocess.run(
        [analyze, "--user", "security", "--offline=true", str(unit)],
        capture_output=True,
        text=True,
        env=analyze_env(isolated_env),
    )
    assert "Overall exposure level for watcherd.service" in proc.stdout, proc.stderr
