"""`chimeramix curate`: iterative diversity sampling over ChimeraMix compositions and classical augmentations.

Registered on the app in cli/app.py (wrapped in its `one_line_errors`); this file imports nothing from cli.app, so
`python -m cli.app` (where cli/app.py runs as __main__) does not load it twice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from .tables import note_reused, summary_table

out = Console()
err = Console(stderr=True)


def curate_cmd(
    data: Annotated[str, typer.Option("--data", "-d", help="The data the generator and classifier were trained on: a dataset name (see `chimeramix datasets`) or a folder with train/<class>/ and test/<class>/.")],
    spc: Annotated[int, typer.Option(help="Real training images per class (the generator's split; each one is kept).")],
    generator: Annotated[Path, typer.Option(help="A finished fit-generator run on this split (--data, --spc, --seed): the pool's compositions.")],
    classifier: Annotated[Path, typer.Option(help="A finished fit-classifier run on the same data, seed and image size, with --spc at most this one: its penultimate features are the embeddings.")],
    size: Annotated[int, typer.Option(help="Images per class in the curated set: the spc real ones plus size - spc from the pool (with --favour-difficult: on average).")],
    out_dir: Annotated[Path, typer.Option("--out", help="The curated folder: train/<class>/, test/<class>/, manifest.json, report.md, changes.png.")],
    seed: Annotated[int, typer.Option(help="Data split seed (as the runs'); also seeds the pool's draws and the sampling.")] = 0,
    pool: Annotated[Optional[int], typer.Option(help="Pool candidates per class. [default: 4 x the most non-real images a class gets]")] = None,
    classical_share: Annotated[float, typer.Option(help="Share of the pool that is classical augmentations of the real images (flip, rotation up to 15 degrees, blur, noise, pixelation); the rest are ChimeraMix compositions.")] = 0.25,
    k: Annotated[int, typer.Option("--k", help="Most similar pairs broken per iteration (the paper's K).")] = 10,
    iterations: Annotated[int, typer.Option(help="At most this many iterations.")] = 50,
    min_gain: Annotated[float, typer.Option(help="Stop when an iteration raises the mean nearest-neighbour distance by no more than this share of it.")] = 1e-3,
    tries: Annotated[int, typer.Option(help="Replacements tried per pair; one is accepted only if the mean nearest-neighbour distance does not fall.")] = 3,
    favour_difficult: Annotated[bool, typer.Option("--favour-difficult", help="Give classes with a lower F1 more images (share of the non-real images proportional to 2 - F1); F1 on the subset's real images the classifier did not train on (it needs a classifier trained with a smaller --spc), never the test set. [default: off]")] = False,
    seg_view: Annotated[str, typer.Option(help="What seg masks segment: 'classifier' (each image at its own size) or 'generator' (as the generator run did).")] = "classifier",
    data_dir: Annotated[Optional[Path], typer.Option(help="Where a named dataset is read from. [default: the generator run's --data-dir, else $CHIMERAMIX_DATA or ~/.cache/chimeramix]")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    force: Annotated[bool, typer.Option(help="Replace a finished curation with other settings in --out.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars. [default: off]")] = False,
):
    """Curate a diverse training set (Cavusoglu et al. 2021): drop near-duplicates, draw replacements from a pool.

    The pool holds ChimeraMix compositions and classical augmentations; similarity is the Euclidean distance in a
    trained classifier's penultimate features. `chimeramix fit-classifier --data <out>` trains on the result.
    """
    from chimeramix.curate import curate_dataset

    from .progress import RichProgress

    with RichProgress(err, quiet=quiet) as p:
        r = curate_dataset(data, spc, generator, classifier, size, out_dir, seed=seed, pool=pool, classical_share=classical_share,
                           k=k, iterations=iterations, min_gain=min_gain, tries=tries, favour_difficult=favour_difficult,
                           seg_view=seg_view, data_dir=data_dir, device=device, force=force, progress=p)
    if r.already_finished:
        note_reused(out, r.out)
    t = summary_table(f"curation {r.out}")
    c = r.counts
    t.add_row("train", f"{c['real']} real, {c['generated']} generated, {c['augmented']} augmented")
    t.add_row("per class", f"{min(r.per_class)} to {max(r.per_class)}")
    t.add_row("mean NN distance", f"{r.history[0]:.4g} -> {r.history[-1]:.4g} in {len(r.history) - 1} iterations")
    t.add_row("stopped", r.stop)
    t.add_row("test", str(c["test"]))
    t.add_row("manifest", str(r.manifest))
    t.add_row("report", str(r.report))
    out.print(t)
