import sys; sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2]))
from tools.nbwrite import md, code, write

cells = [
md(r"""
# Does the MoT's advantage survive a fair comparison?

The book's Theorem 1 chapter compares the MoT with a single transformer of 4 heads and 2 neurons each and
with an attention-free MoE of one neuron per expert: 16 MoT experts, each with its own $d\times d$
key-query matrix, hold far more parameters than either. The paper's reviewers asked what a fair comparison
gives: against the standard MoE transformer (one attention layer shared by all experts, routed FFN experts),
against baselines given the same number of parameters, in total and active per sample, with each model's step
size tuned by the same budget, and per FLOP as well as per iteration. This chapter answers with measurements.

This chapter belongs to the part *Beyond the paper*: its verdicts are measured answers to questions that the
paper leaves open, not claims of the paper, and the {doc}`scorecard <99_scorecard>` lists them apart.

:::{prf:definition} The four model families
:label: def-fair-models
All four read the same samples $X=(x_1,\dots,x_L)$ of the book's setting ($N=4$ classes, $d=16$, $L=8$,
1,000 training and 4,000 test samples per seed) and are trained on the logistic loss from the same small
initialisation ($\sigma_0=0.1$), 500 full-batch iterations.

* **MoT** ($M$ experts): the router $h_m(X)=\sum_l\langle\theta_m,x_l\rangle$ sends $X$ to
  $m^\star=\arg\max_m(h_m+r_m)$, $r_m\sim U[0,\lambda]$, and
  $F(X)=\pi_{m^\star}(X)\sum_q\sum_k\mathrm{softmax}_k(x_q^\top W_{KQ}^{(m^\star)}x_k)\,\sigma(\langle W^{(m^\star)},x_k\rangle)$,
  $\sigma(z)=z^3$, each expert with its own $W_{KQ}^{(m)}$; three stages (I: $W$, II: $W_{KQ}$, III: $W$; steps
  200, 100, 200).
* **Shared-attention MoE** ($M$ experts of $J$ neurons): the same router and stages, but one key-query matrix
  $W_{KQ}$ for all experts (Stage II trains it) and expert FFNs of $J$ neurons with fixed output signs
  $s_j$ (half $+1$, half $-1$): $f_m(X)=\sum_q\sum_k\mathrm{softmax}_k(x_q^\top W_{KQ}x_k)\sum_j s_j\,\sigma(\langle W^{(m,j)},x_k\rangle)$.
  This is the usual MoE transformer: attention, then routed FFN experts.
* **Attention-free MoE** ($M$ experts of $J$ neurons): $W_{KQ}$ fixed at 0, so every token has weight 1.
* **Single transformer** ($H$ heads of $J$ neurons): attention, then a $J$-neuron FFN on each head's output,
  all parameters trained together by normalized GD.

Parameters (with $d=16$): MoT $M(d + d^2) + Md$; shared-attention MoE $MJd + d^2 + Md$; attention-free MoE
$MJd + Md$; single transformer $H(d^2 + Jd)$. Active per sample: the routed expert's FFN and key-query matrix
plus the whole router ($Jd + d^2 + Md$; no $d^2$ without attention); everything for the single transformer.
FLOPs per step: $6\times$ the forward pass's multiply-adds $\times$ the 1,000 training samples (backward counted
as twice the forward; only matmuls): routed models $Md + L d^2 + L^2 d + LJd$ per sample (no attention term
without attention; top-1, so one expert's FFN), the single transformer $H(Ld^2 + L^2d + LJd + L^2J)$.
:::

**Sizes.** Three capacity levels, set by the MoT's number of experts $M = 4, 8, 16$ (16 is the book's default).
At each level every baseline gets the largest size with *at most the MoT's total parameters*, and again the
largest with *at most its parameters active per sample*: the MoE baselines keep the MoT's $M$ experts and its
gate and grow their experts' neurons $J$; the single transformer keeps 2 neurons per head and grows its heads
(at total parameters this gives exactly $H = M$), or, at active parameters, has one head with as many neurons
as fit. The attention-free MoE gets the same $J = d + 1 = 17$ either way.

**Step sizes.** Each model's step sizes (the MoT family's $\eta_1,\eta_2,\eta_3$; the single transformer's
$\eta$) are multiplied by $0.5$, $1$, $2$, $4$ or $8$; the multiplier with the lowest median final test loss
over three tuning seeds (1000-1002, which no verdict uses) is kept. The gate's step and exploration stay at
the book's values for every routed model. (A first sweep used only $0.5$, $1$ and $2$: 10 of its 18 models
chose $2$, the grid's edge, so a larger step might have served them better; the grid was widened to $8$, the
tuning seeds run at $4$ and $8$ (their rows at $0.5$, $1$ and $2$ are the first sweep's: the same engine, the same
numbers) and every verdict seed recomputed at the new choices. That first sweep also showed us its verdicts, so
the widening was not blind to them; the rules and comparisons below are the ones it used.)

**The table.** All of this (18 models, 5 multipliers on 3 tuning seeds, then 20 verdict seeds) is computed by
`python -m mot_lib sweep fair` (about 100 CPU-minutes; about 6 minutes on 16 cores) and committed as
`data/fair_comparison/` (the rows, the curves and a manifest with the sha256 of each file). The chapter stops,
naming the file, if a file is not the one the manifest records or breaks the table's schema; the line below says
whether the engine and the table's own rules still give the numbers the table was computed with, and a live
rerun at the end of the chapter reproduces two of its rows.
"""),
code("""
import numpy as np
import pandas as pd
import matplotlib.pyplot as plt
import torch
from IPython.display import Markdown
import mot_lib as mot
from mot_lib import plots, sweeps, fair
from mot_lib import fair_chapter as fc
plots.setup()
torch.set_num_threads(1)   # the live rerun is small: one intra-op thread is faster than two on a CPU
pd.set_option("display.width", 200)
_before = set(globals())
"""),
code("""
# Parameters (papermill): the sweep is read from data/; these shape the verdicts and the live rerun.
seeds = [0, 1]       # seeds of the live rerun of two of the table's rows
eps = 1e-3           # the test-loss level of "iterations to eps" (one of 0.1, 0.01, 0.001)
level = 0.95         # coverage of the intervals
seed_share = 0.5     # a per-seed statement holds when the share's interval lies above this
quick = False        # a smoke run: the live rerun of one row on one seed (the table is the same)
out_dir = None       # where the verdicts go (None: the book's folder)
""", tags=["parameters"]),
code("""
P = mot.book.chapter_params("08_fair_comparison", globals(), _before)   # fails here, naming any bad parameter
rows, curves, meta, stale = fc.load(P)
print(sweeps.status(meta, stale))
if meta.get("tuning"):      # the tuning seeds ran on another machine (sweep fair --tuning-only)
    t = meta["tuning"]
    print(f"tuning seeds computed by: {t['command']}; {t['cpus']} CPU cores, torch {t['torch']}, {t['seconds']} s")
S = fc.summary(rows, P.eps, P.level)
""", tags=["remove-input"]),
md(r"""
## The models and their sizes

Per capacity level: each model's total and active parameters, its FLOPs per training step, and the step
multiplier the tuning chose. "both": one size that is the largest under both counts.
"""),
code("""
S[["level", "model", "match", "params total", "params active", "MFLOP per step", "step x"]].style.set_uuid("sizes").hide(axis="index") \\
    .format({"MFLOP per step": "{:.1f}", "step x": "{:g}", "params total": "{:,}", "params active": "{:,}"})
"""),
md(r"""
**The tuning sweep.** Median final test loss over the three tuning seeds at each multiplier (a row's lowest
value picks its multiplier; the chosen one is in the table above). Where the choice sits at the edge of the
grid (0.5 or 2), a wider sweep could give that model a better step; the sentence below the table counts them.
"""),
code("""
tm = fc.tuning_medians(rows)
display(tm.style.set_uuid("tuning").format("{:.2e}"))
edge = fc.chosen_table(meta)
edge = edge[edge["mult"].isin([min(fair.MULTS), max(fair.MULTS)])]
print(f"{len(edge)} of {len(fc.chosen_table(meta))} models chose a multiplier at the grid's edge: "
      + "; ".join(f"{r.model} at {r.level} experts ({r.match}): x{r.mult:g}" for r in edge.itertuples()))
"""),
md(r"""
## Iterations and FLOPs to a loss level

Per model: median iterations to test loss 0.1, 0.01 and 0.001 over the 20 verdict seeds (a seed that never
reaches the level within the 500 iterations counts as infinitely slow, so a median is "inf" when more than
half never reach it; "never" counts them), the median with its 95% order-statistic interval at `eps`, the
median FLOPs to `eps`, the median final test loss and error, and the median test loss at 100, 200 and 500
iterations.
"""),
code("""
cols = ["level", "model", "match"] + [f"steps to {e:g}" for e in sweeps.EPS_GRID] + [f"never {e:g}" for e in sweeps.EPS_GRID] \\
    + ["steps to eps [interval]", "GFLOP to eps", "final test loss", "final test error"] + [f"loss at {b}" for b in sweeps.BUDGETS]
S[cols].style.set_uuid("to-eps").hide(axis="index").format({**{f"steps to {e:g}": "{:.0f}" for e in sweeps.EPS_GRID},
    "GFLOP to eps": "{:.2f}", "final test loss": "{:.2e}", "final test error": "{:.3f}",
    **{f"loss at {b}": "{:.2e}" for b in sweeps.BUDGETS}})
"""),
code("""
v = fc.verdict_rows(rows)
colors = dict(zip(fair.MODELS, ["C3", "C0", "C2", "C1"]))
fig, axes = plt.subplots(1, 2, figsize=(12.5, 4.6))
T = int(rows.loc[rows.part == "verdict", "loss_at_500"].notna().any() and 500)
for ax, col, scale, ylab in ((axes[0], f"steps_to_{P.eps:g}", 1.0, f"iterations to test loss {P.eps:g}"),
                             (axes[1], f"flops_to_{P.eps:g}", 1e9, f"GFLOP to test loss {P.eps:g}")):
    cap = (T if col.startswith("steps") else v[col].max() / scale) * 1.15   # where "never" is drawn
    for (lev, model, match), g in v.groupby(["level", "model", "match"]):
        x = g.params_total.iloc[0] * (1 + 0.05 * (fair.MODELS.index(model) - 1.5))   # side by side, not on top
        vals = np.where(np.isfinite(g[col]), g[col] / scale, 10 * cap)                # never: above the cap
        shown = [min(np.percentile(vals, q), cap) for q in (50, 25, 75)]
        face = colors[model] if match != "active" else "white"
        ax.errorbar(x, shown[0], yerr=[[shown[0] - shown[1]], [shown[2] - shown[0]]], fmt="o", color=colors[model],
                    mfc=face, ms=7, capsize=3, zorder=3)
    ax.axhline(cap, color="0.5", ls=":", lw=1)
    ax.text(0.99, cap, "never within 500 iterations (median)", transform=ax.get_yaxis_transform(), ha="right",
            va="bottom", fontsize=8, color="0.4")
    ax.set_xscale("log")
    ax.set(xlabel="total trainable parameters", ylabel=ylab)
    if col.startswith("flops"):
        ax.set_yscale("log")
for m in fair.MODELS:
    axes[0].plot([], [], "o", color=colors[m], label=m)
axes[0].plot([], [], "o", color="0.3", mfc="white", label="sized by active parameters")
axes[0].legend(fontsize=8, loc="lower left")
axes[0].set_title("iterations: median over 20 seeds, bar 25-75%")
axes[1].set_title("FLOPs (iterations x FLOPs per step)")
plt.tight_layout(); plt.show()
"""),
md(r"""
## The loss curves at the default size

Test loss over iterations (left) and over training FLOPs (right) at 16 experts, for every model of that level:
the median over the 20 verdict seeds, the band from the smallest to the largest seed. Losses below $10^{-12}$
are drawn at $10^{-12}$ (the single transformer with 16 heads drives its loss to $10^{-160}$ and below).
"""),
code("""
top = int(S.level.max())
fig, axes = plt.subplots(1, 2, figsize=(12.5, 4.4))
for _, r in S[S.level == top].iterrows():
    w = fc.curves_wide(curves, top, r["family"], r["match"]).clip(lower=1e-12)
    style = "-" if r["match"] != "active" else "--"
    lab = f"{r['model']}, {r['match']}"
    line = plots.seed_band(axes[0], w, lab, color=colors[r["family"]], logy=True)
    line.set_linestyle(style)
    wf = w.copy(); wf.index = wf.index * r["MFLOP per step"] / 1e3
    line = plots.seed_band(axes[1], wf, lab, color=colors[r["family"]], logy=True)
    line.set_linestyle(style)
for ax in axes:
    ax.axhline(P.eps, color="k", lw=0.8, ls=":")
axes[0].set(xlabel="iteration", ylabel="test loss", title=f"{top} experts: test loss (median, min-max over seeds)")
axes[1].set(xlabel="training GFLOP", ylabel="test loss", title="the same against FLOPs", xscale="log")
axes[0].legend(fontsize=7, loc="lower left")
plt.tight_layout(); plt.show()
"""),
md(r"""
(verdict-08_fair_comparison)=
## Verdicts

Each row compares the MoT with one baseline **seed by seed**: the same seed draws the same data for every
model, so the pair differs only in the model. A seed passes when the MoT reaches test loss `eps` in fewer
iterations (or fewer FLOPs) than the baseline; a model that never reaches it within the 500 iterations is
slower than one that does, and two that never reach it do not pass. The row **holds** when the Wilson 95%
interval of the share of passing seeds lies above `seed_share` = 0.5 (the MoT is first on the typical seed),
**does not hold** when it lies below, and is inconclusive otherwise. Ties (the same recorded step, every 10
iterations) do not pass. The rule, the level $10^{-3}$, the 20 seeds and the comparisons were fixed before the
first sweep was computed (see *Step sizes* above for the second); which single transformer is "the best with at most the MoT's total parameters" is decided
on the tuning seeds (lowest median iterations, or FLOPs, to `eps` among all single transformers of the sweep
that are small enough), not on the verdict seeds.
"""),
code("""
vrows = fc.verdicts(rows, meta, P)
_ = mot.book.write_verdicts(vrows, "08_fair_comparison", P.out_dir)
""", tags=["remove-input"]),
code("""
mot.book.show_verdicts(vrows)
""", tags=["hide-input"]),
md(r"""
## What this answers
"""),
code("""
Markdown(fc.answers_markdown(rows, meta, P, vrows))
""", tags=["remove-input"]),
md(r"""
## A live rerun of the table's rows

Two of the table's verdict runs (8 experts: the MoT and the shared-attention MoE with at most its total
parameters, each at its chosen step multiplier) trained here on the seeds of the parameters cell, beside the
committed numbers. The runs are float64, so the table (computed on another machine) and this rerun agree to
rounding unless the engine has changed.
"""),
code("""
live = fc.live_table(P, rows, meta)
print(f"largest relative difference: {live.filter(like='rel. diff').to_numpy().max():.1e}")
live
"""),
]
write("notebooks/08_fair_comparison.ipynb", cells)
