"""Chapter 08 (notebooks/08_fair_comparison): the MoT against the standard MoE transformer, the attention-free
MoE and the single transformer at matched sizes, each with a tuned step.

Reads the committed sweep (``sweeps.load("fair_comparison")``, computed by ``python -m mot_lib sweep fair``:
the models and the tuning rule are ``mot_lib.fair``), summarises it per capacity level and model, computes the
verdicts (per seed: does the MoT reach the loss level in fewer iterations, or FLOPs, than the baseline on the
same data?) and reruns a few of its rows live.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pandas as pd

from . import beyond
from ..experiments import fair
from ..experiments import sweeps
from ..book.registry import ChapterParams, register
from ..engine.config import _check

SINGLE = "single transformer"
BASELINES = ("shared-attention MoE", "attention-free MoE", SINGLE)


@register("08_fair_comparison")
@dataclass(frozen=True)
class FairParams(ChapterParams):
    """Parameters of notebooks/08_fair_comparison.ipynb (the sweep itself: ``python -m mot_lib sweep fair``)."""
    seeds: tuple = (0, 1)          # seeds of the live rerun of two of the table's rows
    eps: float = 1e-3              # the test-loss level of "iterations to eps" (one of sweeps.EPS_GRID)
    level: float = 0.95            # coverage of the intervals
    seed_share: float = 0.5        # a per-seed statement holds when the share's interval lies above this

    def __post_init__(self):
        super().__post_init__()
        _check("eps", self.eps, choices=sweeps.EPS_GRID)
        _check("level", self.level, lo=0.5, hi=1.0, hi_open=True)
        _check("seed_share", self.seed_share, lo=0.0, hi=1.0, lo_open=True, hi_open=True)


def load(P: FairParams):
    """(rows, curves, manifest, stale): ``stale`` is why the committed sweep is stale now, or None; a missing,
    changed or malformed file raises a ValueError naming it (``sweeps.load``)."""
    rows, curves, meta = sweeps.load(fair.NAME)
    return rows, curves, meta, sweeps.why_stale(meta, ("fair",))


def _steps_col(eps: float) -> str:
    return f"steps_to_{eps:g}"


def verdict_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """The verdict seeds' rows, with FLOPs to each eps (steps x FLOPs per step) added."""
    v = rows[rows.part == "verdict"].copy()
    for e in sweeps.EPS_GRID:
        v[f"flops_to_{e:g}"] = v[_steps_col(e)] * v["step_flops"]
    return v


def model_label(r) -> str:
    """'MoT (M=16)', 'shared-attention MoE (M=16, J=16)', 'single transformer (H=16, J=2)'."""
    if r["model"] == SINGLE:
        return f"{SINGLE} (H={int(r['H'])}, J={int(r['J'])})"
    if r["model"] == "MoT":
        return f"MoT (M={int(r['M'])})"
    return f"{r['model']} (M={int(r['M'])}, J={int(r['J'])})"


def summary(rows: pd.DataFrame, eps: float, level: float = 0.95) -> pd.DataFrame:
    """Per (level, model, match): the model's size and cost, its step multiplier, and over the verdict seeds the
    median iterations to each eps of the grid (never-reached seeds count as infinite; how many never), the median
    [interval] iterations to ``eps``, the median final test loss and error, the median test loss at each budget."""
    v = verdict_rows(rows)
    out = []
    for (lev, model, match), g in v.groupby(["level", "model", "match"], sort=False):
        first = g.iloc[0]
        r = {"level": int(lev), "model": model_label(first), "family": model, "match": match,
             "params total": int(first.params_total), "params active": int(first.params_active),
             "MFLOP per step": first.step_flops / 1e6, "step x": first.mult, "seeds": len(g)}
        for e in sweeps.EPS_GRID:
            r[f"steps to {e:g}"] = beyond.censored_median_ci(g[_steps_col(e)], level).value
            r[f"never {e:g}"] = int(g[_steps_col(e)].isna().sum())
        est = beyond.censored_median_ci(g[_steps_col(eps)], level)
        r["steps to eps [interval]"] = f"{beyond.steps_text(est.value)} [{beyond.steps_text(est.lo)}, {beyond.steps_text(est.hi)}]"
        r["GFLOP to eps"] = beyond.censored_median_ci(g[f"flops_to_{eps:g}"], level).value / 1e9
        r["final test loss"] = g.final_test_loss.median()
        r["final test error"] = 1 - g.final_test_acc.median()
        for b in sweeps.BUDGETS:
            r[f"loss at {b}"] = g[f"loss_at_{b}"].median()
        out.append(r)
    order = {m: i for i, m in enumerate(fair.MODELS)}
    df = pd.DataFrame(out)
    return df.sort_values(["level", "family", "match"], key=lambda c: c.map(order) if c.name == "family" else c,
                          ignore_index=True)


def chosen_table(meta: dict) -> pd.DataFrame:
    """The tuning sweep's choice per model: the multiplier and the median final test loss over the tuning seeds."""
    c = pd.DataFrame(meta["chosen"])
    order = {m: i for i, m in enumerate(fair.MODELS)}
    return c.sort_values(["level", "model", "match"], key=lambda s: s.map(order) if s.name == "model" else s,
                         ignore_index=True)


def tuning_medians(rows: pd.DataFrame) -> pd.DataFrame:
    """Median final test loss over the tuning seeds per (level, model, match, multiplier): the whole sweep."""
    t = rows[rows.part == "tuning"]
    return t.pivot_table(index=["level", "model", "match"], columns="mult", values="final_test_loss", aggfunc="median")


def best_single(rows: pd.DataFrame, meta: dict, lev: int, eps: float, per_flop: bool = False) -> dict:
    """The single transformer that is best on the *tuning* seeds among those with at most the level's MoT total
    parameters (every single transformer of the sweep qualifies if it is small enough, whichever level it was
    sized for): the lowest median iterations (or FLOPs) to ``eps`` at its chosen multiplier, never-reached
    counting as infinite; ties go to the lower median final test loss.  Returns its (level, match) and label."""
    mot_total = rows[(rows.part == "verdict") & (rows.level == lev) & (rows.model == "MoT")].params_total.iloc[0]
    chosen = chosen_table(meta)
    t = rows[(rows.part == "tuning") & (rows.model == SINGLE) & (rows.params_total <= mot_total)]
    best = None
    for (l2, match), g in t.groupby(["level", "match"]):
        mult = chosen[(chosen.level == l2) & (chosen.model == SINGLE) & (chosen.match == match)]["mult"].iloc[0]
        g = g[g["mult"] == mult]
        cost = g[_steps_col(eps)] * (g.step_flops if per_flop else 1)
        key = (beyond.censored_median_ci(cost).value, g.final_test_loss.median())
        if best is None or key < best[0]:
            best = (key, {"level": int(l2), "match": match, "label": model_label(g.iloc[0])})
    return best[1]


def _pick(v: pd.DataFrame, lev: int, model: str, match: str) -> pd.DataFrame:
    g = v[(v.level == lev) & (v.model == model) & (v.match == match)]
    if g.empty:
        raise KeyError(f"no verdict rows for level {lev}, {model}, match {match}")
    return g.set_index("seed").sort_index()


def comparisons(rows: pd.DataFrame, meta: dict, P: FairParams) -> list[dict]:
    """The comparisons the verdicts make: per level, the MoT against the shared-attention MoE and the
    attention-free MoE with at most its total parameters and against the best single transformer with at most
    its total parameters, in iterations; against the best single transformer in FLOPs; at the book's default
    level (16 experts) also against the shared-attention MoE with at most its active parameters, and against the
    shared-attention MoE in FLOPs.  One dict per comparison: level, baseline (level, model, match), label, axis."""
    out = []
    v = verdict_rows(rows)
    for lev in sorted(v.level.unique().astype(int)):
        for model in ("shared-attention MoE", "attention-free MoE"):
            match = "total" if (v[(v.level == lev) & (v.model == model)].match == "total").any() else "both"
            lab = model_label(_pick(v, lev, model, match).iloc[0])
            out.append(dict(level=lev, base=(lev, model, match), label=lab, axis="iterations", what="total"))
        b = best_single(rows, meta, lev, P.eps)
        out.append(dict(level=lev, base=(b["level"], SINGLE, b["match"]), label=b["label"], axis="iterations",
                        what="best"))
        b = best_single(rows, meta, lev, P.eps, per_flop=True)
        out.append(dict(level=lev, base=(b["level"], SINGLE, b["match"]), label=b["label"], axis="FLOPs", what="best"))
    top = max(v.level.unique().astype(int))
    for match, axis in (("active", "iterations"), ("total", "FLOPs")):
        lab = model_label(_pick(v, top, "shared-attention MoE", match).iloc[0])
        out.append(dict(level=top, base=(top, "shared-attention MoE", match), label=lab, axis=axis, what=match))
    return out


def verdicts(rows: pd.DataFrame, meta: dict, P: FairParams) -> list[dict]:
    """One verdict row per comparison (``comparisons``): the share of seeds on which the MoT reaches test loss
    ``eps`` in fewer iterations (or FLOPs) than the baseline on the same seed (same data), a never-reached level
    counting as slower; holds when the share's Wilson interval lies above ``seed_share``."""
    v = verdict_rows(rows)
    col = {"iterations": _steps_col(P.eps), "FLOPs": f"flops_to_{P.eps:g}"}
    out = []
    for c in comparisons(rows, meta, P):
        mot = _pick(v, c["level"], "MoT", "both")
        base = _pick(v, *c["base"]).reindex(mot.index)
        passed = beyond.faster(mot[col[c["axis"]]], base[col[c["axis"]]])
        size = {"total": "with at most its total parameters", "active": "with at most its active parameters",
                "best": "the best single transformer with at most its total parameters"}[c["what"]]
        who = c["label"] if c["what"] != "best" else f"{size}, {c['label']}"
        claim = (f"With {c['level']} experts, the MoT reaches test loss {P.eps:g} in fewer {c['axis']} than "
                 + (f"{who}" if c["what"] == "best" else f"the {who} {size}"))
        slug = {"shared-attention MoE": "shared_attention", "attention-free MoE": "attention_free"}.get(c["base"][1], "single")
        rid = f"fair.M{c['level']}.{c['axis'].lower()}.{slug}" + ("_active" if c["what"] == "active" else "")
        out.append(beyond.share_row(claim, f"share of seeds > {P.seed_share:g}", passed, P.level, P.seed_share,
                                    f"the MoT reaches {P.eps:g} first ({c['axis']}, same data)", id=rid))
    return out


def answers_markdown(rows: pd.DataFrame, meta: dict, P: FairParams, rows_out: list[dict]) -> str:
    """The chapter's answers in sentences, computed from the summary and the verdict rows."""
    s = summary(rows, P.eps, P.level)
    comps = comparisons(rows, meta, P)
    by = {(c["level"], c["axis"], c["what"], c["base"][1]): r for c, r in zip(comps, rows_out)}
    top = max(s.level)
    lines = []
    mot = s[(s.level == top) & (s.family == "MoT")].iloc[0]
    lines.append(f"* At the book's default size ({top} experts, {mot['params total']:,} parameters, "
                 f"{mot['params active']:,} active per sample) the MoT reaches test loss {P.eps:g} at a median of "
                 f"{beyond.steps_text(mot[f'steps to {P.eps:g}'])} iterations "
                 f"({mot['MFLOP per step']:.0f} MFLOP per step).")
    for lev in sorted(s.level.unique()):
        for key, name in (((lev, "iterations", "total", "shared-attention MoE"), "the shared-attention MoE"),
                          ((lev, "iterations", "total", "attention-free MoE"), "the attention-free MoE"),
                          ((lev, "iterations", "best", SINGLE), "the best single transformer"),
                          ((lev, "FLOPs", "best", SINGLE), "the best single transformer per FLOP")):
            r = by.get(key)
            if r is None:
                continue
            k = round(r["measured"] * r["seeds"])
            lines.append(f"* {lev} experts, against {name}: the MoT is first on {k} of {r['seeds']} seeds; "
                         f"**{r['verdict']}**.")
    v = verdict_rows(rows)
    col = _steps_col(P.eps)
    reach = lambda lev, model, match=None: (lambda g: (int(g[col].notna().sum()), len(g)))(   # noqa: E731
        v[(v.level == lev) & (v.model == model) & ((v.match == match) if match else True)])
    single_top = s[(s.level == top) & (s.family == SINGLE) & (s.match == "total")].iloc[0]
    lines.append(f"* Per step, the single transformer with the MoT's total parameters at {top} experts "
                 f"({single_top['model']}) costs {single_top['MFLOP per step'] / mot['MFLOP per step']:.0f} times the "
                 f"MoT's FLOPs: it uses every parameter on every sample, the MoT one expert's.")
    lines.append("* Seeds on which the MoT reaches the level within 500 iterations: "
                 + ", ".join(f"{reach(lev, 'MoT')[0]} of {reach(lev, 'MoT')[1]} at {lev} experts"
                             for lev in sorted(s.level.unique()))
                 + "; the attention-free MoE (the model of Lemma 1): "
                 + ", ".join(f"{reach(lev, 'attention-free MoE')[0]} of {reach(lev, 'attention-free MoE')[1]}"
                             for lev in sorted(s.level.unique())) + ".")
    return "\n".join(lines) + "\n"


def live_jobs(P: FairParams, meta: dict) -> list:
    """Two of the table's verdict jobs (at 8 experts: the MoT and the shared-attention MoE with at most its total
    parameters, at their chosen multipliers) on the live seeds (quick: the MoT alone, one seed)."""
    chosen = chosen_table(meta)
    jobs = [j for j in fair.verdict_jobs(chosen, levels=(8,), seeds=(0,))
            if (j.labels["model"], j.labels["match"]) in (("MoT", "both"), ("shared-attention MoE", "total"))]
    seeds = tuple(P.seeds[:1]) if P.quick else tuple(P.seeds)
    jobs = jobs[:1] if P.quick else jobs
    return [dataclasses.replace(j, seeds=seeds) for j in jobs]


def live_table(P: FairParams, rows: pd.DataFrame, meta: dict) -> pd.DataFrame:
    """The live rerun beside the committed rows (``beyond.live_check``)."""
    v = rows[rows.part == "verdict"]
    return beyond.live_check(live_jobs(P, meta), v, ["part", "level", "model", "match"],
                             columns=("final_test_loss", _steps_col(P.eps)))


def curves_wide(curves: pd.DataFrame, lev: int, model: str, match: str) -> pd.DataFrame:
    """Test loss over steps of one model of the table (index step, one column per seed)."""
    c = curves[(curves.level == lev) & (curves.model == model) & (curves.match == match) & (curves.quantity == "test_loss")]
    return c.pivot(index="step", columns="seed", values="value")
