"""`chimeramix methods`: every training method with its defaults and its source paper."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table


def _fmt(value) -> str:
    return "auto" if value is None else str(value)


def method_rows() -> list[tuple[str, str, str, str, str]]:
    """(name, stage, label, defaults, paper) for every method name fit-classifier lists, combinations included."""
    from chimeramix.methods import STAGE_TITLES, MethodSpec, known_methods

    rows = []
    for name in known_methods():
        parts = MethodSpec.parse(name).parts
        label = " + ".join(p.label for p in parts)
        defaults = "; ".join(", ".join(f"{k}={_fmt(v)}" for k, v in p.defaults.items()) or "-" for p in parts)
        paper = " + ".join(p.paper for p in parts)
        if any(p.needs_generator for p in parts):
            label += " (needs --generator)"
        stage = " + ".join(STAGE_TITLES[p.stage] for p in parts if p.stage) or "-"
        rows.append((name, stage, label, defaults, paper))
    return rows


def methods() -> None:
    """Print the table of methods (name for --method, label as in results tables, defaults, source)."""
    t = Table(title="training methods (fit-classifier --method NAME; options as -o KEY=VALUE)")
    for c in ("method", "stage", "label", "defaults", "source"):
        t.add_column(c, overflow="fold")
    for row in method_rows():
        t.add_row(*row)
    Console().print(t)
    from chimeramix.methods import EXAMPLE_CHAIN, stage_order_text

    Console().print(f"chains (a+b+c) run in stage order: {stage_order_text()}; at most one batch source and one loss, "
                    f"no method twice. Example: --method {EXAMPLE_CHAIN}", highlight=False)
    Console().print("defaults shown as 'auto' depend on the data: Cutout's size (16 px on CIFAR-10, 8 on CIFAR-100, "
                    "24 on STL-10, else half the image), AutoAugment's policy (CIFAR-10 up to 64x64, else ImageNet), "
                    "zeta-mixup's n (the batch size).", highlight=False)
