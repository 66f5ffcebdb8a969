"""The JSON records chimeramix writes and reads back, checked field by field as they are read.

A hand-edited or damaged record (a key missing, a value of the wrong type) is refused where it is read, in one
line naming the file, the field and the way out, instead of as a KeyError or TypeError wherever the value is
first used. Each record kind has one reader and its field table here: run.json runs.read_run, result.json
runs.read_result, split.json Split.load (run.json's split Split.from_run), manifest.json outfolder.read_manifest,
metrics.jsonl plots.read_metrics, a recorded table report.load_recorded.

A field table maps paths to kinds: "split.seed" is a key of a nested object, "files[].file" the key of every
element of a list. A required path is missing only when its parent is there (so "result.accuracy" is required of
a run.json that has a result, and of no other).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .errors import ChimeraMixError


@dataclass(frozen=True)
class Kind:
    name: str  # for messages: "a number", "a list"
    test: Callable[[object], bool]


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


TEXT = Kind("a string", lambda v: isinstance(v, str))
INT = Kind("a whole number", _is_int)
COUNT = Kind("a whole number of 0 or more", lambda v: _is_int(v) and v >= 0)
NUMBER = Kind("a number", lambda v: _is_int(v) or isinstance(v, float))
OBJECT = Kind("an object", lambda v: isinstance(v, dict))
LIST = Kind("a list", lambda v: isinstance(v, list))
FILLED = Kind("a non-empty list", lambda v: isinstance(v, list) and len(v) > 0)
HEX = Kind("a hex string", lambda v: isinstance(v, str) and len(v) % 2 == 0 and re.fullmatch(r"[0-9a-fA-F]*", v) is not None)


def optional(kind: Kind) -> Kind:
    """`kind`, or null (a field chimeramix writes as None when it does not apply)."""
    return Kind(f"{kind.name} or null", lambda v: v is None or kind.test(v))


def _describe(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, list) and not v:
        return "an empty list"
    return {bool: "true/false", int: "a whole number", float: "a number", str: "a string", list: "a list",
            dict: "an object"}.get(type(v), type(v).__name__)


def _walk(obj, parts: list[str], where: str):
    """(path, present, value) of every value at `parts` under obj; nothing where a parent is absent."""
    if not parts:
        yield where, True, obj
        return
    head, rest = parts[0], parts[1:]
    if head == "[]":  # every element of a list
        if isinstance(obj, list):
            for i, v in enumerate(obj):
                yield from _walk(v, rest, f"{where}[{i}]")
        return
    if not isinstance(obj, dict):
        return
    name = f"{where}.{head}" if where else head
    if head not in obj:
        if not rest:  # an absent parent is its own field's business
            yield name, False, None
        return
    yield from _walk(obj[head], rest, name)


def _split_path(path: str) -> list[str]:
    return [p for p in re.split(r"\.|(\[\])", path) if p]


def check_fields(f: Path | str, record: dict, fields: dict[str, Kind], required, advice: str, where: str = "") -> None:
    """Refuse the first field of `fields` (in order: parents before children) that is missing though required, or
    of another kind; the message names `f`, the field (under `where`, the path of `record` in its file), and ends
    in `advice`."""
    for path, kind in fields.items():
        for name, present, value in _walk(record, _split_path(path), where):
            if not present:
                if path in required:
                    raise ChimeraMixError(f"{f}: field '{name}' is missing; {advice}")
            elif not kind.test(value):
                raise ChimeraMixError(f"{f}: field '{name}' is {_describe(value)}, not {kind.name}; {advice}")


def read_object(f: Path | str, what: str, advice: str):
    """The JSON object in `f`; anything else (not JSON, not an object, unreadable) is refused in one line."""
    try:
        with open(f, encoding="utf-8") as fh:
            data = json.load(fh)
    except (ValueError, UnicodeDecodeError):
        data = None
    except OSError as e:
        raise ChimeraMixError(f"cannot read {f} ({e.strerror}): {advice}") from None
    if not isinstance(data, dict):
        raise ChimeraMixError(f"{f} is not {what} (a JSON object); {advice}")
    return data


def read_record(f: Path | str, what: str, fields: dict[str, Kind], required, advice: str) -> dict:
    """A JSON object record read and checked (see check_fields)."""
    data = read_object(f, what, advice)
    check_fields(f, data, fields, required, advice)
    return data


def read_lines(f: Path | str, fields: dict[str, Kind], required, advice: str) -> list[tuple[str, dict]]:
    """A JSON-lines record: (text, object) of each line, every object checked (refusals name the line).

    A last line that does not parse is left out: it is what a kill during its append leaves, and lines are
    appended before the checkpoint that covers them, so it is never part of a state to resume.
    """
    lines = [ln for ln in Path(f).read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
    out = []
    for i, text in enumerate(lines, 1):
        try:
            row = json.loads(text)
        except ValueError:
            if i == len(lines):
                break
            raise ChimeraMixError(f"{f}: line {i} is not JSON; {advice}") from None
        if not isinstance(row, dict):
            raise ChimeraMixError(f"{f}: line {i} is {_describe(row)}, not an object; {advice}")
        check_fields(f"{f} line {i}", row, fields, required, advice)
        out.append((text, row))
    return out


def prefixed(prefix: str, fields: dict[str, Kind]) -> dict[str, Kind]:
    return {f"{prefix}.{k}": v for k, v in fields.items()}


# ---------------------------------------------------------------- the field tables of the record kinds

# The fields of a split (split.json, and run.json's "split"): what Split.from_dict and the stage checks read.
SPLIT_FIELDS = {"source": TEXT, "fingerprint": TEXT, "classes": LIST, "classes[]": TEXT, "image_size": FILLED,
                "image_size[]": INT, "spc": INT, "seed": INT, "indices": LIST, "indices[]": COUNT}

# A classifier's result (result.json, and run.json's "result" of a finished classifier run): what report groups by
# and what reuse, predict and curate read. Required: what a reader cannot do without; the rest is checked when there.
RESULT_REQUIRED = frozenset({"label", "accuracy", "split", "split.seed"})
RESULT_FIELDS = {
    "label": TEXT, "accuracy": NUMBER, "split": OBJECT, "split.seed": INT, "split.spc": INT,
    "split.image_size": FILLED, "split.image_size[]": INT, "config": OBJECT, "config.method_options": OBJECT,
    "classes": LIST, "classes[]": TEXT, "per_class": LIST, "test_size": COUNT,
    "generator_run": optional(TEXT), "generator_config": optional(OBJECT), "device": optional(TEXT),
    # each test image's predicted class index, in the order the source loads the test set, and that set's
    # fingerprint (older results have neither: the HTML report then leaves out the section that needs them)
    "test_predictions": LIST, "test_predictions[]": COUNT, "test_fingerprint": TEXT,
}

# run.json's layout version. 1: no "schema" key (everything before 2026-12-03). 2: "schema" and "config_tag" (the
# run folder's -c<hash>, setup.config_tag). What a reader needs of an older record in today's shape comes from one
# place per record part: a generator's config through config.generator_from_record (fields added later take the
# values older runs trained with); the stored dicts themselves stay as written, since reuse checks, export's config
# hash and report's recipe compare them with what older versions wrote.
RUN_SCHEMA = 2

# run.json's fields every reader relies on, and their kinds: a hand-edited or damaged record is refused here, in
# one line naming the field, instead of as a KeyError or TypeError wherever it is first used.
RUN_REQUIRED = frozenset({"kind", "config"} | {f"result.{k}" for k in RESULT_REQUIRED})
RUN_FIELDS = {
    "schema": INT, "config_tag": TEXT, "kind": TEXT, "config": OBJECT, "status": TEXT, "split": OBJECT, "step": INT, "total_steps": INT,
    "result": OBJECT, **prefixed("split", SPLIT_FIELDS),
    **prefixed("result", RESULT_FIELDS),
}

# An export's or a curation's manifest.json (outfolder.read_manifest): after chimeramix's mark (its version, format
# and request, outfolder.is_ours), what reuse, regenerate_file and the commands' summaries read.
_ENTRIES = {"files": LIST, "files[]": OBJECT, "files[].file": TEXT, "files[].kind": TEXT, "files[].label": COUNT,
            "files[].parents": OBJECT, "files[].parents.train": FILLED, "files[].parents.train[]": COUNT}
EXPORT_FIELDS = {
    "kind": TEXT, "counts": OBJECT, "counts.generated": COUNT, "counts.real": COUNT, "counts.test": COUNT, **_ENTRIES,
    "files[].batch": COUNT, "files[].mask": HEX, "generator": OBJECT, "generator.run": TEXT, "generator.sha256": TEXT,
    "mask": OBJECT, "mask.feature_size": COUNT, "mask.work_size": COUNT, "device": TEXT,
}
EXPORT_REQUIRED = frozenset(EXPORT_FIELDS) - {"kind", "files[].batch", "files[].mask"}
CURATE_FIELDS = {
    "kind": TEXT, "counts": OBJECT, "counts.real": COUNT, "counts.generated": COUNT, "counts.augmented": COUNT,
    "counts.test": COUNT, "per_class": FILLED, "per_class[]": COUNT, "history": FILLED, "history[]": NUMBER,
    "stop": TEXT, **_ENTRIES,
}
CURATE_REQUIRED = frozenset(CURATE_FIELDS)
MANIFEST_FIELDS = {"export": (EXPORT_FIELDS, EXPORT_REQUIRED), "curate": (CURATE_FIELDS, CURATE_REQUIRED)}

# A recorded table's rows (experiment's <prefix>.json, `report --json`): the accuracies per seed are what it keeps.
RECORDED_FIELDS = {"table[]": OBJECT, "table[].setting": TEXT, "table[].method": TEXT, "table[].seeds": LIST,
                   "table[].seeds[]": INT, "table[].accuracies": LIST, "table[].accuracies[]": NUMBER}

# metrics.jsonl, a line per log point (plots.read_metrics): what the loss curves and a resume's trimming read
METRICS_FIELDS = {"step": COUNT}
