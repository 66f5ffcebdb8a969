"""Atomic writes: a crash leaves either the old file or the new one, never half of one."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

from .errors import ChimeraMixError


def _umask() -> int:
    try:  # Linux reports it without changing it
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere the only way to read it is to set it (briefly)
    os.umask(mask)
    return mask


def _file_target(path: Path, option: str | None = None) -> Path:
    """Where writing `path` should land: through a symlink to its target; a device, FIFO or socket is refused
    (the rename would replace it with a regular file: as root, `--out /dev/null` would replace the real one)."""
    if path.is_symlink():
        path = Path(os.path.realpath(path))
    if path.exists() and not path.is_file():
        kind = "a folder" if path.is_dir() else "not a regular file (a device, FIFO or socket)"
        where = f"{option} {path}" if option else str(path)
        raise ChimeraMixError(f"{where} is {kind}: chimeramix writes only regular files; choose another path")
    return path


def existing_ancestor(path: Path) -> Path:
    """The nearest folder above `path` (or `path` itself) that exists: where a probe or a free-space check can look."""
    base = path
    while not os.path.exists(base) and base.parent != base:  # os.path's: a name too long to stat is not there either
        base = base.parent
    return base


# What atomic_path adds to a file's name for its temporary file beside it: ".<name>.<8 random characters>.tmp"
TEMP_EXTRA = len("..") + 8 + len(".tmp")


def check_name_fits(path: str | Path, option: str, extra: int = 0, fix: str | None = None) -> None:
    """Refuse in one line a path with a name longer than its file system allows, counting `extra` characters that
    chimeramix adds to the last name (a temporary file or folder beside it), before anything is made.

    option: what the message names (e.g. '--out'); fix: its way out (default: choose a shorter `option`).
    """
    path = Path(os.path.abspath(Path(path).expanduser()))
    base = existing_ancestor(path)
    try:
        limit = os.pathconf(base if base.is_dir() else base.parent, "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = 255
    new = path.parts[len(base.parts):] if path != base else (path.name,)  # what exists has a name that fits
    for i, part in enumerate(new):
        n = len(os.fsencode(part))
        added = extra if i == len(new) - 1 else 0
        if n + added <= limit:
            continue
        shown = part if len(part) <= 40 else f"{part[:20]}...{part[-12:]}"
        if n > limit:
            why = f"is {n} bytes long, more than the {limit} its file system allows"
        else:
            why = (f"is {n} bytes long: with the {added} characters of the temporary name chimeramix makes beside it, "
                   f"more than the {limit} its file system allows")
        raise ChimeraMixError(f"{option}: the name '{shown}' {why}: {fix or f'choose a shorter {option}'}")


@contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path beside `path` (a symlink's target); on success it is renamed over it."""
    path = _file_target(Path(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    # mkstemp makes the file 0600; the renamed file should have the mode any other new file gets
    mode = 0o666 & ~_umask()
    os.close(fd)
    try:
        yield Path(tmp)
        # set after the write: a writer that makes its own file at `tmp` (safetensors' save_file does) gets 0600 too
        os.chmod(tmp, mode)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)


def write_json(path: str | Path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path: str | Path):
    with open(path) as f:
        return json.load(f)


def check_writable(path: str | Path, option: str, extra: int = 0) -> None:
    """Refuse in one line, before any work, a file path that cannot be written; leaves nothing behind.

    extra: how much longer than path's name the names of files written beside it get (tables: <stem>-12.png).
    """
    path = Path(path)
    check_name_fits(path, option, TEMP_EXTRA + extra)  # first: stat itself fails on a name too long
    if path.is_dir():
        raise ChimeraMixError(f"{option} {path} is a folder: give a file name stem, e.g. {option} {path / 'table'}")
    path = _file_target(path, option)
    base = existing_ancestor(path.parent)
    if not base.is_dir():
        raise ChimeraMixError(f"cannot write {path}: {base} is a file, not a folder; choose another {option}")
    try:  # a real probe: permission bits say nothing for root or on a read-only mount
        fd, probe = tempfile.mkstemp(dir=base, prefix=".chimeramix-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ChimeraMixError(f"cannot write {path} ({e.strerror}): choose a writable {option}") from None


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in 1 MiB blocks (large archives and weight files stay out of memory)."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()

