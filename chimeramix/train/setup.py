"""What both stages do before their first step: data, split, run folder, seeds."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import MISSING, dataclass, fields
from pathlib import Path

import torch

from ..config import CLASSIFIER_PRESETS, GENERATOR_PRESETS, RUNTIME_FIELDS, GeneratorConfig
from ..data import ImageSet, Source, Split, make_split, open_source
from ..data.device import resolve_device
from ..runs import DEFAULT_ROOT


@dataclass
class StageData:
    """A stage's data, opened once: the source, its full training set, the drawn split, its subset and the device."""

    source: Source
    train: ImageSet
    split: Split
    subset: ImageSet
    device: torch.device


def prepare_data(cfg) -> StageData:
    """Open the source, draw the per-class subset (checks --spc), pick the device."""
    device = resolve_device(cfg.device)
    source = open_source(cfg.data, cfg.data_dir, cfg.image_size)
    train = source.load("train")
    split = make_split(train, source.name, cfg.spc, cfg.seed)
    return StageData(source, train, split, split.apply(train), device)


def source_label(name: str) -> str:
    """A short, file-name-safe label for a source (a folder's last part)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(name).name or "data")


# Generator settings whose non-default value gets a run-folder tag and a report label, so that the variants
# of docs/fidelity.md land in their own folders and rows beside the default (the public code's procedure).
# (field, value that departs or a test of the value, folder tag, label, applies to mask kind or None for both);
# tags and labels may name the value as {v}.
VARIANTS = (
    ("parents", lambda v: v not in (None, 2), "k{v}", "{v} parents", None),
    ("decoder_res_blocks", True, "decres", "decoder res blocks", None),
    ("seg_mask", "bernoulli", "bern", "Bernoulli segments", "seg"),
    ("grid_offset", "sample", "cellsample", "per-sample grid offset", "grid"),
    ("mask_resize", "majority", "majority", "majority-resized mask", None),
    ("seg_input", "uint8", "u8", "uint8 segmentation", "seg"),
    ("d_step", "reuse", "dreuse", "D reuses G's composition", None),
)


def _variants(gen_cfg: GeneratorConfig) -> list[tuple[str, str]]:
    kind = gen_cfg.mask
    hits = []
    for field, value, tag, label, only in VARIANTS:
        v = getattr(gen_cfg, field)
        if (value(v) if callable(value) else v == value) and (only is None or only == kind):
            hits.append((tag.format(v=v), label.format(v=v)))
    return hits


def variant_suffix(gen_cfg) -> str:
    """Run-folder tag of a generator's departures from the default procedure ('' for the default)."""
    return "".join(f"-{tag}" for tag, _ in _variants(gen_cfg))


def variant_label(gen_cfg) -> str:
    """Report-label suffix of the same departures, e.g. ' (Bernoulli segments)'."""
    labels = [label for _, label in _variants(gen_cfg)]
    return f" ({', '.join(labels)})" if labels else ""


def generator_tag(cfg) -> str:
    """A generator run's folder tag: its mask kind and its departures from the default procedure (one rule, for
    fit-generator and the launcher's job graph)."""
    return cfg.mask + variant_suffix(cfg)


@dataclass(frozen=True)
class ClassifierIdentity:
    """What names a classifier run: its run-folder tag, and what its report label adds to the method's own."""

    suffix: str
    label: str


_FOLDER_WORDS = {"mask": "kind", "seg_mask": "seg_rule", "mask_resize": "resize"}


def classifier_identity(cfg, gen_cfg=None, gen_tag: str = "") -> ClassifierIdentity:
    """The one rule for a classifier run's folder tag and label additions, from its config and its generator's
    config (a GeneratorConfig: config.generator_from_record of a run.json; None without a generator) and config tag (`config_tag`, what
    the generator's folder carries; '' for none). fit-classifier and the launcher's job graph, which names runs
    before their generators have trained, both call it.

    The tag: the method's parts, the generator's mask kind and departures from the default procedure
    (`VARIANTS`), `-g<hash>` of the generator's other settings away from its preset, any -o override of the
    generator's mask rules, `-genseg` for segments of the generator's view, and `-o<hash>` of the user's method
    options. (The classifier's own settings away from its preset are the folder's last part, `-c<hash>`.)
    """
    from ..config import method_name
    from ..masks import MaskSpec
    from ..methods import build_method

    method = build_method(method_name(cfg))
    suffix, label = method.name.replace("+", "-"), ""
    segments = method.needs_segments
    if method.needs_generator and gen_cfg is not None:
        theirs = MaskSpec.from_config(gen_cfg)
        suffix += f"-{theirs.mask}" + variant_suffix(gen_cfg) + (f"-g{gen_tag}" if gen_tag else "")
        label += variant_label(gen_cfg)
        # an explicit -o override of the generator's mask rules: visible in the row and the folder
        asked = theirs.as_options()
        asked.update({k: v for k, v in cfg.method_options.items() if k in asked})
        asked["parents"] = theirs.parents
        own = MaskSpec.from_config(asked)
        trained = theirs.to_dict()
        diff = [(k, v) for k, v in own.to_dict().items() if trained[k] != v]
        if diff:
            label += f" (classifier masks: {', '.join(f'{k}={v}' for k, v in diff)})"
            # folders keep the words MaskSpec's fields had when such runs were first named, so they are found again
            suffix += "-" + "-".join(f"{_FOLDER_WORDS.get(k, k)}_{v}" for k, v in diff)
        segments = segments or theirs.mask == "seg"
    if segments and cfg.seg_view == "generator":
        label += " (generator-view segments)"
        suffix += "-genseg"
    return ClassifierIdentity(suffix + options_tag(named_options(cfg)), label)


def options_tag(options: dict) -> str:
    """Run-folder tag of a classifier's method options: '' without any (today's names stay valid), else
    '-o<8 hex digits>' of their sorted values, so a run with other -o values does not land on a finished one."""
    if not options:
        return ""

    return "-o" + _digest(options)


def _norm(v):
    """One value, one spelling: 2 and 2.0 are one value to a run (one folder), and so are a tuple and a list."""
    if isinstance(v, (list, tuple)):
        return [_norm(x) for x in v]
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v


def _digest(values: dict) -> str:
    text = json.dumps({k: _norm(v) for k, v in values.items()}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


# What a run folder's name already says (its kind, data, split, preset and mask; a classifier's method, generator
# and options; the generator variants' own tags), and RUNTIME_FIELDS, which change where and how fast a run trains,
# not what it trains: the fields config_overrides leaves out.
_NAMED_FIELDS = frozenset({"data", "spc", "seed", "preset", "mask", "method", "generator", "method_options",
                           "p_generated", "parents", "seg_view", *(v[0] for v in VARIANTS), *RUNTIME_FIELDS})


def config_overrides(cfg) -> dict:
    """The settings of an unresolved config (as make_config gives it) that differ from its preset's, less what the
    folder name says already: {field: value}, empty for a preset run. `--gen-steps 4000` is {'steps': 4000}."""
    table = GENERATOR_PRESETS if isinstance(cfg, GeneratorConfig) else CLASSIFIER_PRESETS
    preset = table[cfg.preset]
    out = {}
    for f in fields(cfg):
        if f.name in _NAMED_FIELDS:
            continue
        base = preset.get(f.name, f.default_factory() if f.default is MISSING else f.default)
        v = getattr(cfg, f.name)
        if _norm(v) != _norm(base):
            out[f.name] = v
    return out


def config_tag(overrides: dict) -> str:
    """8 hex digits of a run's config_overrides, '' for none: two budgets of one run get two folders, and the
    preset's run keeps the name it always had."""
    return _digest(overrides) if overrides else ""


def named_options(cfg) -> dict:
    """What the user chose for a classifier's method: its -o options and a replacement rate other than the default."""
    from ..config import P_GENERATED, replacement_rate

    opts = dict(cfg.method_options)
    opts.pop("p_generated", None)
    p = replacement_rate(cfg)
    if p != P_GENERATED:
        opts["p_generated"] = p
    return opts


def run_path(cfg, kind: str, suffix: str, root: str | Path = DEFAULT_ROOT, overrides: dict | None = None) -> Path:
    """A run's folder: --out, else <root>/<kind>-<data>-spc<N>-seed<S>-<suffix>-<preset>, and -c<config_tag> when
    the run departs from its preset in `overrides` (fit-* and the launcher's job graph both name runs here)."""
    return run_folder(cfg, kind, suffix, root, overrides)[0]


def run_folder(cfg, kind: str, suffix: str, root: str | Path = DEFAULT_ROOT,
               overrides: dict | None = None) -> tuple[Path, str]:
    """run_path, and the config tag its name carries ('' for none, and for a run of the older name).

    Before config tags, a run with settings away from its preset had the preset run's name. Such a folder, when
    its run.json records every one of `overrides`, is still this run's (reused or resumed) as long as no folder
    of the tagged name exists.
    """
    if cfg.out:
        return Path(cfg.out), config_tag(overrides or {})
    stem = Path(root) / f"{kind}-{source_label(cfg.data)}-spc{cfg.spc}-seed{cfg.seed}-{suffix}-{cfg.preset}"
    tag = config_tag(overrides or {})
    tagged = stem.with_name(f"{stem.name}-c{tag}") if tag else stem
    if tag and not tagged.exists() and _records_overrides(stem, overrides):
        return stem, ""
    return tagged, tag


def _records_overrides(folder: Path, overrides: dict) -> bool:
    """Whether `folder` holds a run from before config tags whose config has every one of `overrides`."""
    try:
        info = json.loads((folder / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(info, dict) or "config_tag" in info or not isinstance(info.get("config"), dict):
        return False
    have = info["config"]
    return all(k in have and _norm(have[k]) == _norm(v) for k, v in overrides.items())


def seeded_generator(device: torch.device, seed: int, stream: int) -> torch.Generator:
    """One generator per stage for everything sampled on the device; the global RNG (dropout) is seeded too."""
    torch.manual_seed(seed * 7919 + stream)
    return torch.Generator(device=device).manual_seed(seed * 1_000_033 + stream)
