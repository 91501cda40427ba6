from pathlib import Path

import pytest

from watcherd import config as config_mod
from watcherd.config import Config, ConfigError, from_mapping, load


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "config.toml"
    p.write_text(text)
    return p


def test_no_file_means_defaults():
    cfg = load()
    assert cfg == Config()
    assert cfg.action == "flag" and cfg.keep == "best"
    assert cfg.source is None


def test_default_paths_follow_platformdirs(isolated_env):
    assert config_mod.default_config_path() == isolated_env / ".config/watcherd/config.toml"
    assert config_mod.resolve_db_path() == isolated_env / ".local/share/watcherd/index.sqlite3"


def test_db_override_order(monkeypatch, tmp_path):
    monkeypatch.setenv("WATCHERD_DB", str(tmp_path / "env.db"))
    assert config_mod.resolve_db_path() == tmp_path / "env.db"
    assert config_mod.resolve_db_path(tmp_path / "opt.db") == tmp_path / "opt.db"


def test_env_var_names_the_file(monkeypatch, tmp_path):
    p = write(tmp_path, 'action = "quarantine"\n')
    monkeypatch.setenv("WATCHERD_CONFIG", str(p))
    cfg = load()
    assert cfg.action == "quarantine"
    assert cfg.source == p


def test_full_file(tmp_path):
    p = write(
        tmp_path,
        """
roots = ["~/Pictures", { path = "/srv/camera", protect = true }, { path = "/mnt/nas", poll = true }]
include = ["*.jpg"]
exclude = [".*"]
action = "quarantine"
keep = "first"
quarantine_dir = "~/q"
notifications = false
[near]
phash_distance = 8
dhash_distance = 12
crop_phash_distance = 6
similar_dhash_distance = 20
""",
    )
    cfg = load(p)
    home = Path.home()
    assert [r.path for r in cfg.roots] == [home / "Pictures", Path("/srv/camera"), Path("/mnt/nas")]
    assert cfg.roots[1].protect and not cfg.roots[0].protect
    assert cfg.roots[2].poll
    assert cfg.include == ("*.jpg",)
    assert cfg.keep == "first"
    assert cfg.quarantine_dir == home / "q"
    assert cfg.notifications is False
    assert (cfg.phash_distance, cfg.dhash_distance) == (8, 12)
    assert (cfg.crop_phash_distance, cfg.similar_dhash_distance) == (6, 20)
    assert cfg.turned_phash_distance == 6  # not given: the default


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('acton = "flag"', "unknown key 'acton'"),
        ('action = "delete"', '\'action\' must be "flag" or "quarantine"'),
        ("keep = 3", "'keep' must be"),
        ('roots = "~/Pictures"', "'roots' must be a list"),
        ('roots = [{ path = "/x", protekt = true }]', "unknown key 'roots[0].protekt'"),
        ('notifications = "yes"', "'notifications' must be true or false"),
        ("[near]\nphash_distance = 99", "'phash_distance' must be a whole number from 0 to 32"),
        ("[near]\nradius = 3", "unknown key 'near.radius'"),
        (
            "[near]\nturned_phash_distance = -1",
            "'turned_phash_distance' must be a whole number from 0 to 32",
        ),
        ('include = "*.jpg"', "'include' must be a list"),
        ("action = ", "not valid TOML"),
    ],
)
def test_bad_values_name_key_and_file(tmp_path, text, needle):
    p = write(tmp_path, text + "\n")
    with pytest.raises(ConfigError) as exc:
        load(p)
    assert needle in str(exc.value)
    assert str(p) in str(exc.value)


def test_explicit_missing_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load(tmp_path / "nope.toml")


def test_default_file_text_loads_to_defaults(tmp_path):
    p = write(tmp_path, config_mod.default_file_text())
    cfg = load(p)
    assert cfg == Config(source=p)


def test_dump_toml_round_trips(tmp_path):
    cfg = from_mapping({"roots": ["/a", {"path": "/b", "protect": True}], "keep": "first"})
    p = write(tmp_path, "\n".join(config_mod.dump_toml(cfg.to_dict())))
    assert load(p) == Config(**{**cfg.__dict__, "source": p})


@pytest.mark.parametrize(
    ("path", "included"),
    [
        ("IMG_0001.JPG", True),
        ("photo.heic", True),
        ("clip.MP4", True),
        ("notes.txt", False),
        (".hidden.jpg", False),
        ("download.jpg.part", False),
        ("photo.jpg.crdownload", False),
        ("backup.jpg~", False),
    ],
)
def test_include_exclude(path, included):
    assert Config().is_included(path) is included


def test_hidden_folders_below_root_excluded_but_root_may_be_hidden():
    cfg = Config()
    assert not cfg.is_included("/r/.thumbnails/a.jpg", root="/r")
    assert cfg.is_included("/home/u/.var/photos/a.jpg", root="/home/u/.var/photos")
    assert not cfg.is_included_dir(".trash")
    assert cfg.is_included_dir("2024")


def test_root_for_picks_deepest(tmp_path):
    cfg = from_mapping({"roots": [str(tmp_path), str(tmp_path / "sub")]})
    assert cfg.root_for(tmp_path / "sub" / "a.jpg").path == tmp_path / "sub"
    assert cfg.root_for(tmp_path / "b.jpg").path == tmp_path
    assert cfg.root_for(Path("/elsewhere/c.jpg")) is None


def test_a_database_url_is_never_taken_for_a_file_name(tmp_path, monkeypatch):
    """`--db postgresql+psycopg://...` once made a SQLite file named after the URL in the
    current folder and exited 0. A server that cannot be reached is said in one line
    (exit 69: systemd tries again later); an unknown scheme or a password in the URL
    is refused (exit 78); nothing is ever written in the current folder."""
    from conftest import run_cli

    monkeypatch.chdir(tmp_path)
    (tmp_path / "pics").mkdir()
    url = f"postgresql+psycopg://me@/db?host={tmp_path}/nowhere"
    out = run_cli("--db", url, "scan", "pics", check=False)
    assert out.returncode == 69 and "cannot reach the index" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) <= 2
    for bad, said in [("mysql://me@host/db", "SQLite (a path) or PostgreSQL"),
                      ("postgresql://me:secret@host/db", "password")]:  # fmt: skip
        out = run_cli("--db", bad, "scan", "pics", check=False)
        assert out.returncode == 78 and said in out.stderr, out.stderr
        assert "secret" not in out.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pics"]  # nothing written
    assert config_mod.resolve_db_path("postgresql://me@h/db") == "postgresql+psycopg://me@h/db"
    assert config_mod.resolve_db_path("sqlite:////abs/i.sqlite3") == Path("/abs/i.sqlite3")
    assert config_mod.resolve_db_path("sqlite:///rel.sqlite3") == tmp_path / "rel.sqlite3"
    with pytest.raises(ConfigError):
        config_mod.resolve_db_path("sqlite://")  # in memory: nothing would be kept
