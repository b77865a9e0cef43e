"""Small file-system rules shared by the config store and the job store."""

from __future__ import annotations

import os
import stat
from pathlib import Path


def tighten_dir(directory: Path) -> None:
    """Make `directory` 0o700 unless it is shared: a sticky directory such as /tmp, one owned by
    someone else, the home directory itself, or /. Private files inside stay 0o600 either way."""
    st = directory.stat()
    if stat.S_IMODE(st.st_mode) == 0o700 or st.st_mode & stat.S_ISVTX or st.st_uid != os.geteuid():
        return
    if os.path.realpath(directory) in (os.path.realpath(Path.home()), "/"):
        return
    os.chmod(directory, 0o700)
