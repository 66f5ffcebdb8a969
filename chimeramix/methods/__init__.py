"""Training methods for the classifier: the baseline, ChimeraMix, and what the field compares against."""

from __future__ import annotations

from ..errors import ChimeraMixError
from .base import Chain, Method, StepContext
from .chimeramix import ChimeraMix
from .cosine import CosineLoss
from .erasing import Cutout, RandomErasing
from .mixing import CutMix, MixUp, SamplePairing, ZetaMixup, pairing_on
from .pixelmix import GridMix, SegMix
from .policies import AutoAugment, TrivialAugment

METHODS: dict[str, type[Method]] = {
    m.name: m
    for m in [Method, ChimeraMix, Cutout, RandomErasing, MixUp, CutMix, CosineLoss, AutoAugment, TrivialAugment,
              GridMix, SegMix, SamplePairing, ZetaMixup]
}

# Combinations the paper reports (its Table 2): ChimeraMix's compositions, then the policy on top.
COMBINATIONS = ("chimeramix+autoaugment", "chimeramix+trivialaugment")


def known_methods() -> list[str]:
    return list(METHODS) + [c for c in COMBINATIONS if all(p in METHODS for p in c.split("+"))]


def check_options(name: str, user_options: dict) -> None:
    """Refuse option names no part of the method knows (a typo would otherwise be silently ignored)."""
    known = {k for part in name.split("+") if part in METHODS for k in METHODS[part].defaults}
    unknown = sorted(set(user_options) - known)
    if unknown:
        hint = f"its options are {', '.join(sorted(known))}" if known else "it takes no options"
        raise ChimeraMixError(f"method '{name}' has no option {', '.join(unknown)}: {hint}")


def build_method(name: str, options: dict | None = None) -> Method:
    """A method by name; 'a+b' chains methods (ChimeraMix + AutoAugment, as the paper's Table 2)."""
    options = options or {}
    parts = []
    for part in name.split("+"):
        if part not in METHODS:
            raise ChimeraMixError(f"unknown method '{part}': choose one of {', '.join(known_methods())}")
        cls = METHODS[part]
        opts = {k: v for k, v in options.items() if k in cls.defaults}
        parts.append(cls(**opts))
    return parts[0] if len(parts) == 1 else Chain(parts)


__all__ = [
    "COMBINATIONS", "METHODS", "AutoAugment", "Chain", "ChimeraMix", "CosineLoss", "CutMix", "Cutout", "GridMix",
    "Method", "MixUp", "RandomErasing", "SamplePairing", "SegMix", "StepContext", "TrivialAugment", "ZetaMixup",
    "build_method", "check_options", "known_methods", "pairing_on",
]
