"""Writing outputs so that a rebuild does not retrigger downstream tools for nothing."""

import json
import os
import stat
import tempfile
from pathlib import Path

__all__ = ["write_atomic", "write_json", "write_if_changed", "read_bytes_file", "read_text_file"]


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path, text):
    """Write ``text`` to ``path`` whole or not at all: a temporary file beside it, renamed into place.

    The file gets the permissions a plain ``open`` would give it (0666 less the umask), not
    the 0600 of a temporary file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path, data):
    """Write ``data`` as JSON, whole or not at all."""
    write_atomic(path, json.dumps(data, indent=1))


def write_if_changed(path, text):
    """Write ``text`` to ``path`` atomically unless it already holds it; True if written."""
    path = Path(path)
    if path.is_file() and path.read_text() == text:
        return False
    write_atomic(path, text)
    return True


def read_bytes_file(path, what, max_bytes, error):
    """The bytes of a user's input file, or ``error`` (a UserError type) in one line.

    Only a regular file is read, so a FIFO with no writer cannot hang the reader and a
    device such as /dev/zero cannot exhaust memory; a file over ``max_bytes`` is refused.
    """
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise error(f"{path}: no such {what}") from None
    except OSError as e:          # a symlink loop, a name too long, a component that is not a folder
        raise error(f"{path}: cannot be read as a {what} ({e.strerror or e.__class__.__name__})") from None
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{path}: not a regular file; allowed: a {what}")
    if st.st_size > max_bytes:
        raise error(f"{path}: {st.st_size} bytes; allowed: a {what} of at most {max_bytes} bytes")
    try:
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as e:
        raise error(f"{path}: cannot be read as a {what} ({e.strerror or e.__class__.__name__})") from None
    if len(data) > max_bytes:
        raise error(f"{path}: more than {max_bytes} bytes; allowed: a {what} of at most {max_bytes} bytes")
    return data


def read_text_file(path, what, max_bytes, error):
    """The UTF-8 text of a user's input file (as :func:`read_bytes_file`), or ``error`` in one line."""
    data = read_bytes_file(path, what, max_bytes, error)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise error(f"{path}: not UTF-8 text; allowed: a {what}") from None
