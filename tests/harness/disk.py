"""What the tests may ask of the file system: which files hold a secret."""

from __future__ import annotations

import os
import stat


def files_containing(secret: bytes, root: str) -> list[str]:
    """Regular files under ``root`` (up to 1 MiB each) whose bytes contain ``secret``."""
    found = []
    for directory, _, names in os.walk(root):
        for name in names:
            path = os.path.join(directory, name)
            try:
                info = os.lstat(path)
                if not stat.S_ISREG(info.st_mode) or info.st_size > 1 << 20:
                    continue
                with open(path, "rb") as handle:
                    if secret in handle.read():
                        found.append(path)
            except OSError:
                continue
    return found
