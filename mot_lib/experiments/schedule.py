"""Chapter 09 (notebooks/09_training_schedule): does the MoT need three stages, and which commits first, an
expert to a class or the gate to an expert?

Four parts, each a set of MoT runs on the book's setting, computed by ``python -m mot_lib sweep schedule``
(``jobs``) and committed as data/training_schedule*:

* "schedules": three stages against one-stage joint training and the two two-stage variants (I then II+III
  joint; I+II joint then III), the same T = 500 iterations and boundaries T1 = 200, T2 = 300;
* "grid": the three-stage MoT over a grid of (T1, T2 - T1) at T = 500;
* "scaling": the smallest T1 that works at M = 8, 16, 32 experts (Proposition 1: T1 proportional to
  M / (eta sigma0^0.5)), Stage II of 100 steps and Stage III of 200 after it;
* "explore": Stage I alone (T1 = T2 = T = 300) over the exploration size lam and the gate's step eta_router,
  recording every 5 steps: the step at which the experts specialize (t_spec: every class has a specialist and
  95% of test samples reach their class's specialist) against the step at which the gate's choice without
  exploration agrees with its choice with exploration on 95% of training samples (t_agree).
"""
from __future__ import annotations

from ..engine.config import TrainConfig
from .jobs import Job, chunked

NAME = "training_schedule"
SEEDS = tuple(range(20))
GRID_SEEDS = tuple(range(10))
BASE = TrainConfig()
SCHEDULES = ("three_stage", "joint", "I_joint", "joint_III")
#: the (T1, T2 - T1) grid at T = 500
GRID_T1 = (25, 50, 100, 200)
GRID_GAP = (0, 25, 50, 100)
#: the smallest working T1 against the number of experts
SCALING_M = (8, 16, 32)
SCALING_T1 = (10, 25, 50, 100, 200)
SCALING_GAP, SCALING_III = 100, 200
#: the exploration sweep (Stage I only); the book's default is lam = 1, eta_router = 0.5
LAMS = (0.0, 0.3, 1.0, 3.0)
ETA_ROUTERS = (0.1, 0.5, 2.0)
EXPLORE_T = 300
EXPLORE_EVERY = 5
EXPLORE_CURVES = ("explore_agree", "experts_used", "dispatch_entropy", "routing_acc", "classes_covered")


def _labels(part, schedule="three_stage", T1=BASE.T1, T2=BASE.T2, T=BASE.T, M=BASE.M, lam=BASE.lam,
            eta_router=BASE.eta_router) -> dict:
    return {"part": part, "schedule": schedule, "T1": T1, "T2": T2, "T": T, "M": M, "lam": lam,
            "eta_router": eta_router}


def jobs(seeds=SEEDS, grid_seeds=GRID_SEEDS) -> list[Job]:
    out = []
    for sch in SCHEDULES:
        cfg = BASE.replace(schedule=sch)
        for g in chunked(seeds, 5):
            out.append(Job(NAME, _labels("schedules", sch), "mot", cfg.as_dict(), g,
                           curves=("test_loss", "label_weight"), cost=2.0))
    for T1 in GRID_T1:
        for gap in GRID_GAP:
            cfg = BASE.replace(T1=T1, T2=T1 + gap)
            for g in chunked(grid_seeds, 5):
                out.append(Job(NAME, _labels("grid", T1=T1, T2=T1 + gap), "mot", cfg.as_dict(), g, cost=2.0))
    for M in SCALING_M:
        for T1 in SCALING_T1:
            T2 = T1 + SCALING_GAP
            cfg = BASE.replace(M=M, T1=T1, T2=T2, T=T2 + SCALING_III)
            for g in chunked(grid_seeds, 5):
                out.append(Job(NAME, _labels("scaling", T1=T1, T2=T2, T=cfg.T, M=M), "mot", cfg.as_dict(), g,
                               cost=2.0 * (1 + M / 32)))
    for lam in LAMS:
        for er in ETA_ROUTERS:
            cfg = BASE.replace(T1=EXPLORE_T, T2=EXPLORE_T, T=EXPLORE_T, lam=lam, eta_router=er,
                               record_every=EXPLORE_EVERY)
            default = lam == BASE.lam and er == BASE.eta_router
            for g in chunked(seeds if default else grid_seeds, 5):
                out.append(Job(NAME, _labels("explore", T1=EXPLORE_T, T2=EXPLORE_T, T=EXPLORE_T, lam=lam, eta_router=er),
                               "mot", cfg.as_dict(), g, curves=EXPLORE_CURVES, cost=1.5))
    return out
