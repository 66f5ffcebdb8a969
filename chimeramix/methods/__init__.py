"""Training methods for the classifier: the baseline, ChimeraMix, and what the field compares against."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ChimeraMixError
from .base import STAGE_TITLES, STAGES, Chain, Method, StepContext
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

# Combinations `chimeramix methods` and `--methods all` list: the paper's Table 2 (compositions, then the policy on top).
# Any chain in stage order is valid (chimeramix+mixup, cutmix+zeta-mixup, ...); `all` runs only these.
COMBINATIONS = ("chimeramix+autoaugment", "chimeramix+trivialaugment")
EXAMPLE_CHAIN = "chimeramix+trivialaugment+mixup"


def stage_members(stage: str) -> list[str]:
    """The method names of one stage, in the order `chimeramix methods` lists them."""
    return [n for n, c in METHODS.items() if c.stage == stage]


def stage_order_text() -> str:
    """'batch source (chimeramix, ...) + pixel policy (...) + label mixer (...) + loss (cosine)'."""
    return " + ".join(f"{STAGE_TITLES[st]} ({', '.join(stage_members(st))})" for st in STAGES)


def check_chain(name: str, classes: list[type[Method]]) -> None:
    """Refuse a chain that makes no sense, in one line naming the valid order: the baseline in a chain, a method
    twice, two batch sources or two losses, or stages out of order (a label mixer before a pixel policy, ...)."""
    if len(classes) == 1:
        return
    order = f"chain methods in stage order, {stage_order_text()}, e.g. {EXAMPLE_CHAIN}"
    names = [c.name for c in classes]
    if "none" in names:
        raise ChimeraMixError(f"method '{name}': 'none' is the baseline and chains with nothing; {order}")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ChimeraMixError(f"method '{name}' has '{twice[0]}' twice; {order}")
    for st in ("source", "loss"):
        same = [c.name for c in classes if c.stage == st]
        if len(same) > 1:
            raise ChimeraMixError(f"method '{name}' has two {STAGE_TITLES[st]}s ({' and '.join(same)}): "
                                  f"a chain takes at most one; {order}")
    ranks = [STAGES.index(c.stage) for c in classes]
    for a, b, ra, rb in zip(classes, classes[1:], ranks, ranks[1:]):
        if rb < ra:
            raise ChimeraMixError(f"method '{name}': {b.name} ({STAGE_TITLES[b.stage]}) cannot follow {a.name} "
                                  f"({STAGE_TITLES[a.stage]}); {order}")


# What the run supplies to a method (constructor arguments), never a user option: -o seed=3 is refused with this hint.
RUN_CONTEXT = {
    "seed": "it is the run's --seed",
    "work_size": "ChimeraMix takes it from the generator run",
    "needs_segments": "the method itself says whether it needs segment maps",
}


@dataclass(frozen=True)
class MethodSpec:
    """A method name parsed once: its parts ('a+b' chains them, as the paper's Table 2) and the options they take."""

    name: str
    parts: tuple[type[Method], ...]

    @classmethod
    def parse(cls, name: str) -> "MethodSpec":
        """Refuses an unknown name (or part) in one line."""
        classes = []
        for part in str(name).split("+"):
            if part not in METHODS:
                raise ChimeraMixError(f"unknown method '{part}': choose one of {', '.join(known_methods())}")
            classes.append(METHODS[part])
        check_chain(str(name), classes)
        return cls(str(name), tuple(classes))

    @property
    def defaults(self) -> dict:
        """Every user option (-o KEY=VALUE) of the parts, with its default."""
        return {k: v for c in self.parts for k, v in c.defaults.items()}

    @property
    def needs_generator(self) -> bool:
        return any(c.needs_generator for c in self.parts)

    def check_options(self, user_options: dict) -> None:
        """Refuse option names no part knows (a typo would otherwise be silently ignored) and run context given as -o."""
        known = self.defaults
        context = sorted(k for k in user_options if k in RUN_CONTEXT and k not in known)
        if context:
            k = context[0]
            raise ChimeraMixError(f"'{k}' is not an option of method '{self.name}': {RUN_CONTEXT[k]}"
                                  + (f" (use --seed {user_options[k]})" if k == "seed" else ""))
        unknown = sorted(set(user_options) - set(known))
        if unknown:
            hint = f"its options are {', '.join(sorted(known))}" if known else "it takes no options"
            raise ChimeraMixError(f"method '{self.name}' has no option {', '.join(unknown)}: {hint}")

    def build(self, options: dict | None = None, context: dict | None = None) -> Method:
        """The method with `options` (each part takes its own) and the run's `context` (seed, work_size, ...)."""
        options, context = options or {}, context or {}
        parts = [c(**{k: v for k, v in context.items() if k in c.context},
                   **{k: v for k, v in options.items() if k in c.defaults}) for c in self.parts]
        return parts[0] if len(parts) == 1 else Chain(parts)


def known_methods() -> list[str]:
    return list(METHODS) + [c for c in COMBINATIONS if all(p in METHODS for p in c.split("+"))]


def build_method(name: str, options: dict | None = None, context: dict | None = None) -> Method:
    """A method by name (see MethodSpec.build); 'a+b' chains methods (ChimeraMix + AutoAugment, as the paper's Table 2)."""
    return MethodSpec.parse(name).build(options, context)


__all__ = [
    "COMBINATIONS", "EXAMPLE_CHAIN", "STAGES", "STAGE_TITLES", "check_chain", "stage_members", "stage_order_text", "METHODS", "RUN_CONTEXT", "AutoAugment", "Chain", "ChimeraMix", "CosineLoss", "CutMix", "Cutout", "GridMix",
    "Method", "MethodSpec", "MixUp", "RandomErasing", "SamplePairing", "SegMix", "StepContext", "TrivialAugment", "ZetaMixup",
    "build_method", "known_methods", "pairing_on",
]
