"""Writing outputs so that a rebuild does not retrigger downstream tools for nothing."""

import os
import tempfile
from pathlib import Path

__all__ = ["write_if_changed"]


def write_if_changed(path, text):
    """Write ``text`` to ``path`` atomically unless it already holds it; True if written."""
    path = Path(path)
    if path.exists() and path.read_text() == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)
    return True
