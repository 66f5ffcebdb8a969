"""What both stages do before their first step: data, split, run folder, seeds."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch

from ..data import ImageSet, Source, Split, make_split, open_source
from ..data.device import resolve_device
from ..runs import DEFAULT_ROOT


@dataclass
class Prepared:
    source: Source
    train: ImageSet
    split: Split
    subset: ImageSet
    device: torch.device


def prepare_data(cfg) -> Prepared:
    """Open the source, draw the per-class subset (checks --spc), pick the device."""
    device = resolve_device(cfg.device)
    source = open_source(cfg.data, cfg.data_dir, cfg.image_size)
    train = source.load("train")
    split = make_split(train, source.name, cfg.spc, cfg.seed)
    return Prepared(source, train, split, split.apply(train), device)


def source_label(name: str) -> str:
    """A short, file-name-safe label for a source (a folder's last part)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(name).name or "data")


def decoder_suffix(decoder_res_blocks: bool) -> str:
    """Run-folder tag of generators (and their classifiers) with the public code's decoder, so both variants coexist."""
    return "" if decoder_res_blocks else "-pubdec"


def run_path(cfg, kind: str, suffix: str, root: str | Path = DEFAULT_ROOT) -> Path:
    if cfg.out:
        return Path(cfg.out)
    name = f"{kind}-{source_label(cfg.data)}-spc{cfg.spc}-seed{cfg.seed}-{suffix}-{cfg.preset}"
    return Path(root) / name


def seeded_generator(device: torch.device, seed: int, stream: int) -> torch.Generator:
    """One generator per stage for everything sampled on the device; the global RNG (dropout) is seeded too."""
    torch.manual_seed(seed * 7919 + stream)
    return torch.Generator(device=device).manual_seed(seed * 1_000_033 + stream)
