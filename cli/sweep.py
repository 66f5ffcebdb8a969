"""`chimeramix sweep`: the paper's grid (datasets x samples per class x seeds x methods) in one command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from chimeramix.config import TABLE_PRESET
from .launch import Launcher, SlurmCpus, SlurmGpus, SlurmMem, SlurmParallel, SlurmPartition, SlurmTime, Wait, job_progress, \
    slurm_options, submitted_note


def register(app: typer.Typer, *, one_line_errors, progress, console) -> None:
    """Add the command to the app (cli/app.py passes its error handling, progress bars and console)."""

    @app.command("sweep")
    @one_line_errors
    def sweep_cmd(
        datasets: Annotated[str, typer.Option(help="Comma-separated dataset names or folders, e.g. cifair10,stl10.")] = "cifair10",
        spc: Annotated[str, typer.Option(help="Comma-separated samples per class, e.g. 5,10,20.")] = "5,10,20",
        seeds: Annotated[str, typer.Option(help="Seeds (data splits): a range 0-4 or a list 0,1,2.")] = "0-4",
        methods: Annotated[str, typer.Option(help="Comma-separated methods (see `chimeramix methods`), or 'all'.")] = "none,chimeramix",
        mask: Annotated[str, typer.Option(help="Generator mask kind: seg, grid or both.")] = "seg",
        preset: Annotated[str, typer.Option(help="Hyperparameter preset: paper, cpu or fast.")] = TABLE_PRESET,
        out_dir: Annotated[Path, typer.Option("--out", help="Folder for <data>-spc<N>.md/.csv/.png per cell and table1.md/.csv (all cells).")] = Path("results/sweep"),
        gen_steps: Annotated[Optional[int], typer.Option(help="Override the generator's total steps. [default: preset's]")] = None,
        clf_steps: Annotated[Optional[int], typer.Option(help="Override the classifier's total steps. [default: preset's]")] = None,
        launcher: Launcher = "local",
        jobs: Annotated[int, typer.Option(help="Local launchers: seeds (local) or jobs (submitit-local) at once.")] = 1,
        slurm_partition: SlurmPartition = None,
        slurm_gpus_per_job: SlurmGpus = 1,
        slurm_cpus_per_job: SlurmCpus = 4,
        slurm_mem: SlurmMem = "16G",
        slurm_time: SlurmTime = "12:00:00",
        slurm_array_parallelism: SlurmParallel = 0,
        wait: Wait = True,
        title: Annotated[str, typer.Option(help="Title of the combined table. [default: 'Test accuracy (%) per dataset and samples per class']")] = "",
        data_dir: Annotated[Optional[Path], typer.Option(help="Where named datasets are read from. [default: $CHIMERAMIX_DATA or ~/.cache/chimeramix]")] = None,
        device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
        checkpoints: Annotated[Path, typer.Option(help="Folder in which run folders are made.")] = Path("checkpoints"),
        force: Annotated[bool, typer.Option(help="Retrain runs that already finished.")] = False,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars. [default: off]")] = False,
    ):
        """Every dataset x spc x seed x method; a table per (dataset, spc) and a combined one shaped like the paper's Table 1.

        With --launcher slurm the whole grid is one job graph submitted at once. Finished runs are reused and
        unfinished ones resumed, so the same command again picks up where the grid stopped.
        """
        from chimeramix.experiment import parse_seeds
        from chimeramix.sweep import parse_ints, parse_names, run_sweep

        masks = {"both": ["grid", "seg"], "seg": ["seg"], "grid": ["grid"]}.get(mask)
        if masks is None:
            from chimeramix.errors import ChimeraMixError

            raise ChimeraMixError(f"unknown --mask '{mask}': choose seg, grid or both")
        common = {"data_dir": str(data_dir) if data_dir else None}
        with progress(quiet) as p:
            res = run_sweep(
                parse_names(datasets, "--datasets"), parse_ints(spc, "--spc"), parse_seeds(seeds), out=out_dir, preset=preset,
                masks=masks, methods=methods, device=device, root=checkpoints, gen_options={**common, "steps": gen_steps},
                clf_options={**common, "steps": clf_steps}, jobs=jobs, force=force, launcher=launcher,
                slurm=slurm_options(slurm_partition, slurm_gpus_per_job, slurm_cpus_per_job, slurm_mem, slurm_time,
                                    slurm_array_parallelism),
                wait_for_jobs=wait, job_progress=job_progress, progress=p, title=title,
            )
        if res.pending:
            submitted_note(console, res.pending, res.submitted)
            return
        from chimeramix.sweep import combined_rows

        head, rows = combined_rows([c for c in res.cells if c.tables])
        t = Table(title=escape(title or "test accuracy (%) per dataset and samples per class"))
        t.add_column(head[0], no_wrap=True)
        for h in head[1:]:
            t.add_column(escape(h), justify="right", overflow="fold")
        for r in rows:
            t.add_row(*(escape(x) for x in r))
        console.print(t)
        console.print(f"wall time {res.seconds:.0f} s; wrote a table and a page per cell in {out_dir} and {res.combined_md}, "
                      f"{res.combined_csv}, {res.combined_html} (open it in a browser)",
                      highlight=False, soft_wrap=True)
