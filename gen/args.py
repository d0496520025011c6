"""Argument types of the ``mensa`` command: each checks its value before any work starts.

An ``argparse`` type that raises :class:`argparse.ArgumentTypeError` becomes the one-line
``mensa COMMAND: error: argument --flag: ...`` and exit status 2 of :mod:`mensa.gen.cli`, so a
bad path, seed or number is refused before a config is elaborated or a tool started.
"""

import argparse
import math
import os
from pathlib import Path

__all__ = ["out_dir", "out_file", "seed", "positive_int", "probability", "SEED_MAX", "NAME_MAX", "PATH_MAX"]

SEED_MAX = 2**32 - 1    # numpy, scikit-learn and cocotb all take seeds of 32 bits
NAME_MAX = 255          # bytes of one path component (Linux, macOS)
PATH_MAX = 4096         # bytes of a whole path (Linux)


def _check_length(path):
    if len(os.fsencode(str(path))) >= PATH_MAX:
        raise argparse.ArgumentTypeError(f"{str(path)[:40]}...: the path is longer than {PATH_MAX - 1} bytes")
    for part in path.parts:
        if len(os.fsencode(part)) > NAME_MAX:
            raise argparse.ArgumentTypeError(f"{part[:40]}...: a path component longer than {NAME_MAX} bytes")


def _check_creatable(path):
    """``path`` does not exist yet: its nearest existing ancestor must be a folder we can write."""
    parent = path.parent
    while not parent.exists() and not parent.is_symlink() and parent != parent.parent:
        parent = parent.parent
    if parent.is_symlink() and not parent.exists():
        raise argparse.ArgumentTypeError(f"{path}: {parent} is a broken symbolic link")
    if not parent.is_dir():
        raise argparse.ArgumentTypeError(f"{path}: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"{path}: folder {parent} is not writable")


def out_dir(text):
    """An output folder: an existing writable folder, or one that can be created."""
    path = Path(text)
    if not text:
        raise argparse.ArgumentTypeError("an empty path; allowed: a folder to write into")
    _check_length(path)
    try:
        if path.exists():
            if not path.is_dir():
                raise argparse.ArgumentTypeError(f"{path}: exists and is not a folder; allowed: a folder")
            if not os.access(path, os.W_OK | os.X_OK):
                raise argparse.ArgumentTypeError(f"{path}: the folder is not writable")
        else:
            _check_creatable(path)
    except OSError as e:      # a symlink loop, a name the file system refuses
        raise argparse.ArgumentTypeError(f"{path}: {e.strerror or e}") from None
    return path


def out_file(text):
    """An output file: a writable regular file to replace, or a new file in an existing writable folder."""
    path = Path(text)
    if not text:
        raise argparse.ArgumentTypeError("an empty path; allowed: a file to write")
    _check_length(path)
    try:
        if path.exists():
            if not path.is_file():
                raise argparse.ArgumentTypeError(f"{path}: exists and is not a regular file; allowed: a file")
            if not os.access(path, os.W_OK) or not os.access(path.parent, os.W_OK | os.X_OK):
                raise argparse.ArgumentTypeError(f"{path}: not writable")
        else:
            parent = path.parent
            if not parent.is_dir():
                raise argparse.ArgumentTypeError(f"{path}: folder {parent} does not exist; allowed: a file in an "
                                                 f"existing folder")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise argparse.ArgumentTypeError(f"{path}: folder {parent} is not writable")
    except OSError as e:
        raise argparse.ArgumentTypeError(f"{path}: {e.strerror or e}") from None
    return path


def _int(text):
    try:
        return int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


def seed(text):
    """A random seed: an integer in 0 .. 2**32 - 1."""
    value = _int(text)
    if not 0 <= value <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"{value} is out of range; allowed: an integer in 0..{SEED_MAX}")
    return value


def positive_int(hi):
    """A type for an integer in 1 .. ``hi``."""
    def parse(text):
        value = _int(text)
        if not 1 <= value <= hi:
            raise argparse.ArgumentTypeError(f"{value} is out of range; allowed: an integer in 1..{hi}")
        return value
    parse.__name__ = "integer"
    return parse


def probability(text):
    """A probability: a number in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and 0 <= value < 1):
        raise argparse.ArgumentTypeError(f"{text} is out of range; allowed: a number in [0, 1)")
    return value


def positive_float(text):
    """A finite number above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text} is out of range; allowed: a positive number")
    return value
