"""Synced folders and actions of their own (issue 28): a root, or a file name, can be
only ever flagged; a folder a sync client keeps in step is named as such."""

from __future__ import annotations

import json
import logging

import pytest
from conftest import invoke
from helpers import busy_photo, save

from watcherd.config import ConfigError, from_mapping
from watcherd.index import Index
from watcherd.scanner import scan
from watcherd.synced import sync_client


def _pair(folder, name: str, seed: int) -> None:
    img = busy_photo(seed)
    save(img, folder / f"{name}-a.jpg")
    save(img.resize((400, 300)), folder / f"{name}-b.jpg")


def test_a_root_with_its_own_action_only_flags_while_others_quarantine(tmp_path):
    sync, pics = tmp_path / "Sync", tmp_path / "Pictures"
    _pair(sync, "s", 1)
    _pair(pics, "p", 2)
    cfg = from_mapping(
        {
            "roots": [{"path": str(sync), "action": "flag"}, str(pics)],
            "action": "quarantine",
            "quarantine_dir": str(tmp_path / "Q"),
            "workers": 1,
        }
    )
    with Index(tmp_path / "i.sqlite3") as index:
        stats = scan([sync, pics], cfg, index)
    assert (sync / "s-b.jpg").exists()  # flagged only: still where it was
    assert not (pics / "p-b.jpg").exists() and stats.quarantined == 1


def test_names_matching_flag_only_are_never_moved(tmp_path):
    pics = tmp_path / "Pictures"
    _pair(pics, "Screenshot_2026", 3)
    _pair(pics, "IMG", 4)
    cfg = from_mapping(
        {
            "roots": [str(pics)],
            "action": "quarantine",
            "flag_only": ["screenshot_*"],  # case-insensitive, as include is
            "quarantine_dir": str(tmp_path / "Q"),
            "workers": 1,
        }
    )
    with Index(tmp_path / "i.sqlite3") as index:
        scan([pics], cfg, index)
    assert (pics / "Screenshot_2026-b.jpg").exists() and not (pics / "IMG-b.jpg").exists()


def test_a_root_action_must_be_flag_or_quarantine():
    with pytest.raises(ConfigError, match=r"roots\[0\]\.action"):
        from_mapping({"roots": [{"path": "/x", "action": "delete"}]})


@pytest.mark.parametrize(
    ("marker", "client"),
    [(".stfolder", "Syncthing"), (".nextcloudsync.log", "Nextcloud"), (".sync_4f2a.db", None)],
)
def test_sync_clients_are_told_by_their_markers(tmp_path, marker, client):
    top = tmp_path / "Sync"
    (top / "WhatsApp Images").mkdir(parents=True)
    (top / marker).write_text("")
    expected = client or "Nextcloud or ownCloud"
    assert sync_client(top / "WhatsApp Images") == expected  # a root inside one too
    assert sync_client(tmp_path / "elsewhere") is None


def test_status_names_a_synced_root(tmp_path, caplog):
    sync = tmp_path / "Sync"
    sync.mkdir()
    (sync / ".stfolder").mkdir()
    conf = tmp_path / "c.toml"
    conf.write_text(f'roots = ["{sync}"]\n')
    env = {"WATCHERD_CONFIG": str(conf), "WATCHERD_DB": str(tmp_path / "i.sqlite3")}
    out = invoke("status", "--format", "json", env=env).stdout
    assert json.loads(out)["synced"] == {str(sync): "Syncthing"}
    assert "kept in step by Syncthing" in invoke("status", env=env).stdout


def test_the_daemon_says_once_that_a_root_is_synced(tmp_path, caplog):
    from watcherd.config import Root
    from watcherd.watched_roots import WatchedRoots
    from watcherd.watcher import Watcher

    sync = tmp_path / "Sync"
    (sync / ".stfolder").mkdir(parents=True)
    watcher = Watcher(lambda _event: None, 5.0)
    roots = WatchedRoots(watcher)
    try:
        with caplog.at_level(logging.WARNING, logger="watcherd"):
            assert roots.add(Root(sync))
            roots.replace([Root(sync)])  # a reload: said already
    finally:
        watcher.stop()
    said = [r for r in caplog.records if getattr(r, "event", None) == "synced"]
    assert len(said) == 1 and "Syncthing" in said[0].getMessage()
    assert roots.synced == {str(sync): "Syncthing"}
