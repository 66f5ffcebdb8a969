"""Training methods for the classifier: the baseline, ChimeraMix, and what the field compares against."""

from __future__ import annotations

from ..errors import ChimeraMixError
from .base import Chain, Method, StepContext
from .chimeramix import ChimeraMix

METHODS: dict[str, type[Method]] = {m.name: m for m in [Method, ChimeraMix]}


def known_methods() -> list[str]:
    return list(METHODS) + ["chimeramix+autoaugment", "chimeramix+trivialaugment"] * ("autoaugment" in METHODS)


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


__all__ = ["Chain", "ChimeraMix", "METHODS", "Method", "StepContext", "build_method", "known_methods"]
