"""The data dir is owner-only: logged prompts, key hashes and the journal are nobody else's to read."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger("keel")

PRIVATE_UMASK = 0o077  # new files 0600, new folders 0700


def secure_data_dir(data_dir: Path) -> int:
    """Create `data_dir` owner-only, make this process (and its children) create owner-only files from
    now on, and take group/other access away from what is already there (a data dir from before was
    0755 with a 0644 database). Returns how many entries were tightened."""
    os.umask(PRIVATE_UMASK)
    data_dir.mkdir(parents=True, exist_ok=True)
    me = os.geteuid()
    tightened = 0

    def tighten(path: str) -> None:
        nonlocal tightened
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        # never through a link (its target may be anyone's), never someone else's file
        if stat.S_ISLNK(st.st_mode) or st.st_uid != me or not st.st_mode & 0o077:
            return
        os.chmod(path, stat.S_IMODE(st.st_mode) & ~0o077)
        tightened += 1

    tighten(str(data_dir))
    for root, dirs, files in os.walk(data_dir):
        for name in dirs + files:
            tighten(os.path.join(root, name))
    if tightened:
        log.warning(
            "made %d entries under %s owner-only (they were readable by other users)", tightened, data_dir
        )
    return tightened
