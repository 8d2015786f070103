"""A sweep's unit of work: one configuration on some seeds (``Job``), picklable for the worker processes, and
its helpers; the job lists (``fair``, ``schedule``) and the runner (``sweeps``) import it."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..engine.config import Setting, SingleConfig, TrainConfig


@dataclass(frozen=True)
class Job:
    """One configuration on some seeds.  ``labels``: what the rows are (columns of the table); ``kind``:
    "mot" (``train_mot``, any routed model) or "single"; ``cfg``: the config's fields; ``setting``: changes
    to the default ``Setting``; ``curves``: recorded quantities kept per step; ``cost``: relative CPU cost
    (only to hand the heaviest jobs out first)."""
    table: str
    labels: dict
    kind: str
    cfg: dict
    seeds: tuple
    setting: dict = field(default_factory=dict)
    curves: tuple = ()
    cost: float = 1.0

    def config(self) -> TrainConfig | SingleConfig:
        if self.kind not in ("mot", "single"):
            raise ValueError(f"kind={self.kind!r} is not allowed; choose 'mot' or 'single'")
        return (TrainConfig if self.kind == "mot" else SingleConfig)(**self.cfg)

    def the_setting(self) -> Setting:
        return Setting(**self.setting)


def smoke(job: Job) -> Job:
    """The job at a tiny size (2 seeds, 200 samples, 40 steps; stage boundaries at most 10 and 20): a check
    that a sweep runs and writes its files, in seconds (``python -m mot_lib sweep ... --smoke``)."""
    c = dict(job.cfg, T=40, record_every=10)
    if job.kind == "mot":
        c["T1"], c["T2"] = min(c["T1"], 10), min(c["T2"], 20)
    return Job(job.table, job.labels, job.kind, c, tuple(job.seeds[:2]), {**job.setting, "n_train": 200, "n_test": 200},
               job.curves, job.cost)


def chunked(seeds, size: int) -> list[tuple]:
    """Seeds in groups of ``size`` (the unit of work of one job)."""
    seeds = list(seeds)
    return [tuple(seeds[i:i + size]) for i in range(0, len(seeds), size)]
