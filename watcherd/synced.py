"""Synced folders: a folder a sync client keeps the same on several devices. Moving a
copy out of one (quarantine) is passed on to every device as a deletion; the copy is
still in watcherd's quarantine, but gone from the phone. watcherd says so, once, and a
root can carry its own `action = "flag"` (config.Root)."""

from __future__ import annotations

from pathlib import Path

# What a sync client leaves at the top of a folder it syncs, and the client's name.
MARKERS = {
    ".stfolder": "Syncthing",
    ".nextcloudsync.log": "Nextcloud",
    ".owncloudsync.log": "ownCloud",
    ".dropbox": "Dropbox",
    ".dropbox.cache": "Dropbox",
    ".sync": "Resilio Sync",
}
DATABASES = (("._sync_*.db", "Nextcloud or ownCloud"), (".sync_*.db", "Nextcloud or ownCloud"))


def sync_client(folder: Path) -> str | None:
    """The sync client that keeps `folder` (or a folder it is in) in step, if any."""
    for place in (folder, *folder.parents):
        try:
            for marker, client in MARKERS.items():
                if (place / marker).exists():
                    return client
            for pattern, client in DATABASES:
                if next(place.glob(pattern), None) is not None:
                    return client
        except OSError:  # a folder we may not look into says nothing
            continue
    return None
