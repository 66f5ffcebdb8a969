"""Options shared by `experiment` and `sweep` for running each training run as a job (chimeramix/launch.py)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

Launcher = Annotated[str, typer.Option(help="Where runs train: 'local' (here, --jobs seeds at once), 'slurm' (each run a Slurm job through submitit; classifiers wait for their generator) or 'submitit-local' (the same job graph on this machine, --jobs at once).")]
SlurmPartition = Annotated[Optional[str], typer.Option(help="Slurm partition of every job. [default: the cluster's default]")]
SlurmGpus = Annotated[int, typer.Option(help="GPUs per job (one run each); 0 for CPU jobs.")]
SlurmCpus = Annotated[int, typer.Option(help="CPU cores per job.")]
SlurmMem = Annotated[str, typer.Option(help="Memory per job, in Slurm's syntax (16G, 16000M).")]
SlurmTime = Annotated[str, typer.Option(help="Time limit per job (12:00:00, 90 minutes, 2-00:00:00); a run that hits it resumes from its last checkpoint when the command is run again.")]
SlurmParallel = Annotated[int, typer.Option(help="At most N of these jobs at once, through Slurm's singleton dependency (N job names); 0: no limit.")]
Wait = Annotated[bool, typer.Option(help="Wait for the jobs and write the tables; --no-wait submits and returns (run the same command again later for the tables).")]


def slurm_options(partition, gpus, cpus, mem, time, parallel):
    from chimeramix.launch import SlurmOptions

    return SlurmOptions(partition=partition, gpus_per_job=gpus, cpus_per_job=cpus, mem=mem, time=time, array_parallelism=parallel)


def job_progress():
    """What a job shows in its log: plain progress lines (a tenth of each stage at a time)."""
    from rich.console import Console

    from .progress import RichProgress

    return RichProgress(Console(stderr=True))


def submitted_note(console, pending: list[str], submitted: dict) -> None:
    console.print(f"submitted {len(submitted)} jobs; {len(pending)} not finished yet: run the same command again once they "
                  "are done (finished runs are reused) to write the tables", highlight=False, soft_wrap=True)
