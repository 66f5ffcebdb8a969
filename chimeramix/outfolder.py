"""Image folders a command writes as a whole (export, curate): built beside --out, renamed into place at the end.

DIR/train/<class>/*.png, DIR/test/<class>/* (the source's test set, so `fit-classifier --data DIR` evaluates on it),
DIR/manifest.json. DIR is either a whole folder of its kind or absent: an interrupted run leaves only a hidden
temp folder beside it, which the next run removes.
"""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import torch
from PIL import Image

from . import records as R
from .data.folder import list_classes
from .errors import ChimeraMixError
from .fileio import check_name_fits, existing_ancestor, read_json
from .runs import config_diff

MANIFEST = "manifest.json"
KINDS = {"export": "a chimeramix export", "curate": "a chimeramix curation"}  # manifest kinds, for messages


# What an export or a curation writes at the top of its folder; anything else there is the user's, and a folder
# holding it is never replaced (--force included).
OWN_ENTRIES = frozenset({MANIFEST, "train", "test", "samples.png", "report.md", "changes.png"})


# What side() adds to --out's name for the hidden folder beside it: ".<name>.curate-partial"
SIDE_EXTRA = len(".") + len(".curate-partial")


def check_out(out: Path, what: str) -> Path:
    """--out as an absolute folder path; refuses a file, a device or a root. A symlink to a folder is written
    through: the folder it points to is what gets built (the link itself stays as the user made it)."""
    out = Path(os.path.abspath(Path(out).expanduser()))
    check_name_fits(out, "--out", SIDE_EXTRA)  # first: stat itself fails on a name too long
    if out.is_symlink():
        target = Path(os.path.realpath(out))
        if not target.is_dir() and target.exists():
            raise ChimeraMixError(f"--out {out} is a link to {target}, which is not a folder: choose another --out")
        if not target.exists():
            raise ChimeraMixError(f"--out {out} is a link to {target}, which does not exist: make that folder, or choose another --out")
        out = target
        check_name_fits(out, "--out", SIDE_EXTRA)
    if not out.name:
        raise ChimeraMixError(f"--out {out} cannot hold {what}: choose a new folder, e.g. exports/<name>")
    if out.exists() and not out.is_dir():
        raise ChimeraMixError(f"--out {out} is a file, not a folder: choose another --out")
    return out


def is_ours(manifest) -> bool:
    """A manifest chimeramix wrote: a JSON object with its version, format and request (a web app's manifest.json
    has none of these)."""
    return (isinstance(manifest, dict) and isinstance(manifest.get("chimeramix"), str) and "format" in manifest
            and isinstance(manifest.get("request"), dict))


def side(out: Path, tag: str, kind: str = "export") -> Path:
    """The hidden folder beside `out` a build of `kind` uses (tag 'partial': being written; 'old': mid-swap)."""
    return out.parent / f".{out.name}.{kind}-{tag}"


def recover(out: Path, tmp: Path, old: Path) -> None:
    """Clean what an interrupted build left: its temp folder, and the previous folder if it was mid-swap."""
    if tmp.exists():
        shutil.rmtree(tmp)
    if old.exists():
        if out.exists():
            shutil.rmtree(old)
        else:
            old.rename(out)


def damaged_advice(kind: str) -> str:
    return f"the {KINDS[kind].split()[-1]}'s record is damaged: rebuild it with the same `chimeramix {kind}` command and --force"


def read_manifest(out: Path, kind: str, complete: bool = True) -> dict:
    """The manifest.json of a folder chimeramix wrote as `kind` ('export' or 'curate'); a manifest without chimeramix's
    mark is refused as someone else's, one of another kind as such, and (complete) one with a field missing or of
    the wrong kind as damaged, in one line naming the field. A manifest without 'kind' is an export's (exports
    written before curate existed)."""
    f = out / MANIFEST
    if not f.is_file():
        raise ChimeraMixError(f"{out} is not {KINDS[kind]} (no {MANIFEST}): pass the folder `chimeramix {kind}` wrote")
    try:
        manifest = read_json(f)
    except (ValueError, UnicodeDecodeError):
        manifest = None
    if not is_ours(manifest):  # --force too: a folder chimeramix did not write is never replaced
        raise ChimeraMixError(f"{out} holds a {MANIFEST} that chimeramix did not write: choose another --out "
                              "(a new or empty folder)")
    found = manifest.get("kind", "export")
    if isinstance(found, str) and found != kind:
        raise ChimeraMixError(f"{out} holds {KINDS.get(found, 'another kind of chimeramix folder')}, not {KINDS[kind]}: "
                              "choose another --out")
    if complete:
        fields, required = R.MANIFEST_FIELDS[kind]
        R.check_fields(f, manifest, fields, required, damaged_advice(kind))
    return manifest


def finished_manifest(out: Path, kind: str, request: dict, force: bool) -> dict | None:
    """Decide about an existing --out before any work: the manifest of a finished `kind` folder with the same
    request (nothing to redo), None to build; refuses a folder of another kind, other settings without force,
    and anything that chimeramix did not write."""
    what = KINDS[kind]
    if (out / MANIFEST).is_file():
        # with --force only the mark and the kind matter: a damaged record of ours is what --force rebuilds
        manifest = read_manifest(out, kind, complete=not force)
        foreign = sorted(p.name for p in out.iterdir() if p.name not in OWN_ENTRIES)
        if foreign:
            raise ChimeraMixError(f"{out} holds {foreign[0]}, which {what.split(' ', 1)[-1]} does not write: move it out "
                                  "of the folder, or choose another --out")
        diff = config_diff(manifest.get("request", {}), request)
        if not diff and not force:
            return manifest
        if diff and not force:
            raise ChimeraMixError(
                f"a finished {what.split(' ', 1)[-1]} with other settings is in {out} ({'; '.join(diff[:4])}); "
                "choose another --out, or --force to replace it"
            )
    elif out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ChimeraMixError(f"{out} exists and is not {what}: choose another --out (an empty or new folder)")
    return None


# A file's line in manifest.json, on disk (indented JSON: about 300 bytes measured, taken low).
MANIFEST_LINE_BYTES = 256


def check_disk(out: Path, files: int, image_size, advice: str) -> None:
    """Refuse, before anything is planned or written, a folder of `files` images the disk beside `out` cannot hold.

    A PNG is taken at half its raw pixel bytes (chosen low, not measured): only what surely cannot fit is refused.
    """
    need = files * (int(image_size[0]) * int(image_size[-1]) * 3 // 2 + MANIFEST_LINE_BYTES)
    base = existing_ancestor(out)
    free = shutil.disk_usage(base).free
    if need > free:
        raise ChimeraMixError(f"{files:,} images need about {need / 2**30:.1f} GiB, but {base} has {free / 2**30:.1f} GiB "
                              f"free: {advice}")


def make_temp(tmp: Path, out: Path) -> None:
    try:
        tmp.mkdir(parents=True)
    except OSError as e:
        raise ChimeraMixError(f"cannot write beside {out} ({e.strerror}): choose a writable --out") from None


def publish(tmp: Path, out: Path, old: Path) -> None:
    """Swap the finished temp folder into place (the previous folder, if any, is removed after the rename)."""
    if hasattr(os, "sync"):
        os.sync()  # the PNGs reach the disk before the rename makes the folder visible
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def check_class_name(name: str, what: str = "exported") -> None:
    if not name or name in (".", "..") or name.startswith(".") or "/" in name or "\\" in name or "\0" in name:
        raise ChimeraMixError(f"class name {name!r} cannot be a folder name, so it cannot be {what} as train/<class>/")


def write_png(path: Path, image: torch.Tensor) -> None:
    """PNG without metadata (so equal pixels give equal bytes); the folder as a whole is what is atomic."""
    buf = io.BytesIO()
    Image.fromarray(image.permute(1, 2, 0).contiguous().numpy()).save(buf, format="PNG")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())


def plan_test_set(source, cfg) -> dict[str, list[Path]] | None:
    """The files to copy for a folder source read at its own size (cfg: the generator's GeneratorConfig); None:
    decode and write PNGs."""
    if source.kind == "folder" and cfg.image_size is None:
        return list_classes(Path(source.name) / "test")
    return None


def count_test_set(source, files: dict[str, list[Path]] | None) -> int:
    return sum(len(f) for f in files.values()) if files is not None else len(source.load("test"))


def write_test_set(dest: Path, source, files: dict[str, list[Path]] | None, tick) -> str:
    """The source's test set under dest/<class>/: its files copied, or decoded images as PNGs."""
    if files is not None:
        k = 0
        for c, paths in files.items():
            (dest / c).mkdir(parents=True, exist_ok=True)
            for p in paths:
                shutil.copyfile(p, dest / c / p.name)  # a copy, not a link: editing the folder never edits the source
                k += 1
                tick(k)
        return "copied"
    test = source.load("test")
    for i in range(len(test)):
        write_png(dest / test.classes[int(test.labels[i])] / f"{i:05d}.png", test.images[i])
        tick(i + 1)
    return "decoded"
