"""What a new user meets in the first hour must do what it says (issue 24)."""

from __future__ import annotations

import json

from conftest import run_cli
from helpers import photo, save


def test_a_protected_root_keeps_its_photo_against_a_better_copy_elsewhere(tmp_path):
    """keep = "best" preferred more pixels, so a PNG export in Downloads beat the camera
    original: the "duplicate" sat in the protected root, nothing moved, the clutter
    stayed. A file in a protected root is always the kept one."""
    camera, downloads, q = tmp_path / "Camera", tmp_path / "Downloads", tmp_path / "Q"
    img = photo(4, (640, 480))
    save(img, camera / "IMG_0001.jpg")
    save(img.resize((1280, 960)), downloads / "export.png")  # more pixels, larger file
    save(photo(5), camera / "IMG_0002.jpg")
    save(photo(5), camera / "IMG_0002 copy.jpg", quality=80)  # both protected: none moves
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        f'roots = [{{ path = "{camera}", protect = true }}, "{downloads}"]\n'
        f'action = "quarantine"\nquarantine_dir = "{q}"\n'
    )
    common = ["--config", str(cfg), "--db", str(tmp_path / "index.sqlite3")]
    run_cli(*common, "scan")
    rows = json.loads(run_cli(*common, "report", "--format", "json").stdout)["duplicates"]
    by_path = {r["path"]: r for r in rows}
    assert by_path[str(downloads / "export.png")]["original"] == str(camera / "IMG_0001.jpg")
    assert by_path[str(downloads / "export.png")]["action"] == "quarantined"
    assert not (downloads / "export.png").exists()
    assert (camera / "IMG_0001.jpg").exists()
    assert (camera / "IMG_0002.jpg").exists() and (camera / "IMG_0002 copy.jpg").exists()
