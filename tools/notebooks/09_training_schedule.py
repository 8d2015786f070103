import sys; sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2]))
from tools.nbwrite import md, code, write

cells = [
md(r"""
# Does the MoT need three stages?

The MoT is trained in three stages: first its experts' feed-forward vectors with attention frozen, then
attention with the experts frozen, then the experts again. The paper's reviewers asked whether this is
needed: what do one- and two-stage schedules give; do the stage boundaries $T_1$, $T_2$ that Propositions 1
and 2 suggest help in practice; and why do the experts specialize in Stage I while the router is still
exploring, that is, which commits first, an expert to a class or the gate to an expert {cite:p}`li2025mot`?

This chapter belongs to the part *Beyond the paper*: its verdicts are measured answers to questions the paper
leaves open, not claims of the paper, and the {doc}`scorecard <99_scorecard>` lists them apart from the
paper's claims.

:::{prf:definition} The four training schedules
:label: def-training-schedules
Every schedule starts from the same initialisation and runs $T$ steps of full-batch training. At every step
the router $\Theta$ is trained by GD with step $\eta_r$, and each training sample goes to
$\arg\max_m\,(h_m(X)+r_m)$ with $r_m\sim U[0,\lambda]$ drawn afresh (exploration; none at evaluation).
A *normalized GD* step moves each expert's parameter tensor by $\eta$ along its gradient divided by that
gradient's norm, so by exactly $\eta$.

* **Three stages** (`three_stage`). Stage I, steps $1,\dots,T_1$: the FFN vectors $W$ by normalized GD with
  step $\eta_1$, the key-query matrices $W_{KQ}$ frozen. Stage II, steps $T_1+1,\dots,T_2$: $W_{KQ}$ by
  normalized GD with step $\eta_2$, $W$ frozen. Stage III, steps $T_2+1,\dots,T$: $W$ by GD with step
  $\eta_3$, $W_{KQ}$ frozen.
* **One stage** (`joint`): $W$ (normalized GD, $\eta_1$) and $W_{KQ}$ (normalized GD, $\eta_2$) together at
  every step.
* **I, then II+III joint** (`I_joint`): Stage I to $T_1$, then $W$ and $W_{KQ}$ jointly to $T$.
* **I+II joint, then III** (`joint_III`): $W$ and $W_{KQ}$ jointly to $T_2$, then Stage III to $T$.
:::

Two step counts of a run describe who commits first. The experts have **specialized** at $t_{spec}$, the
first recorded step at which every class has an expert specialized in it and 95% of the test samples go to an
expert of their class (routing accuracy, without exploration). The gate has **committed** at $t_{agree}$,
the first recorded step at which its choice without exploration, $\arg\max_m h_m(X)$, is the explored choice
on 95% of that step's training samples.

The sweep (four parts: the schedules, a grid of $(T_1, T_2-T_1)$, the smallest working $T_1$ against the
number of experts, and an exploration sweep over $\lambda$ and $\eta_r$) takes far longer than a chapter may,
so `python -m mot_lib sweep schedule` computes it and commits `data/training_schedule/`: `rows.csv` (one row per
run and seed), `curves.csv` (recorded curves) and a manifest with the sha256 of each. This chapter reads them,
and stops, naming the file, if a file is not the one the manifest records or breaks the table's schema. The
line *files* below says whether the table is current: whether tiny canary runs, through the training engine
and through the table's own per-seed rules, still give the numbers they gave then; a stale table is flagged,
not silently used. A few of its rows are rerun live at the end.
"""),
code("""
import dataclasses
import numpy as np
import pandas as pd
import matplotlib.pyplot as plt
import torch
from IPython.display import Markdown, display
import mot_lib as mot
from mot_lib import plots, beyond
from mot_lib import schedule_chapter as sc
plots.setup()
torch.set_num_threads(1)   # the live rerun is small: one intra-op thread is faster than two on a CPU
pd.set_option("display.width", 200)
pd.set_option("display.max_colwidth", 120)
_before = set(globals())
"""),
code("""
# Parameters (papermill): the table is read from data/; these shape the verdicts and the live rerun.
seeds = [0, 1]        # seeds of the live rerun (among the table's seeds 0-19)
eps = 1e-3            # the test-loss level of "reaches eps" (one of 0.1, 0.01, 0.001: the levels the table records)
level = 0.95          # coverage of the Wilson and order-statistic intervals
seed_share = 0.5      # a verdict holds when the share of passing seeds is above this (why: see the verdicts)
quick = False         # a smoke run: the live rerun of one row on one seed (the table is the same)
out_dir = None        # where the verdicts go (None: the book's folder)
""", tags=["parameters"]),
code("""
P = mot.book.chapter_params("09_training_schedule", globals(), _before)   # fails here, naming any bad parameter
rows, curves, meta, stale = sc.load()
print(sc.table_status(rows, meta, stale))
"""),
code("""
Markdown(sc.defaults_markdown())
""", tags=["remove-input"]),
md(r"""
## Three stages against one and two

The four schedules at the book's defaults, 20 seeds each; seed $s$ draws the same data, initialisation and
exploration under every schedule, so the schedules are compared seed by seed. Per schedule: the median number
of iterations to test loss `eps` with its 95% order-statistic interval (a seed that never reaches it within the
run counts as beyond the run, so the median and its interval can read "> T"), how many seeds never reach it, the
median final test loss, and the median test loss at step 200 (the end of Stage I).
"""),
code("""
summary = sc.schedule_summary(rows, P.eps, P.level)
sc.schedule_display(summary, P.eps, P.level)
"""),
code("""
loss = sc.schedule_curves(curves, "test_loss")
lw = sc.schedule_curves(curves, "label_weight")
colors = dict(zip(mot.schedule.SCHEDULES, ["C0", "C4", "C2", "C1"]))
fig, axes = plt.subplots(1, 2, figsize=(13, 4.2))
for sch in mot.schedule.SCHEDULES:
    plots.seed_band(axes[0], loss[sch].clip(lower=1e-12), sc.SCHEDULE_NAMES[sch], color=colors[sch], logy=True)
    plots.seed_band(axes[1], lw[sch], sc.SCHEDULE_NAMES[sch], color=colors[sch])
T1, T2 = int(summary.T1.iloc[0]), int(summary.T2.iloc[0])
for ax in axes:
    for t, name in ((T1, "T1"), (T2, "T2")):
        ax.axvline(t, color="0.4", ls=":", lw=1)
        ax.text(t, 0.98, f" {name} = {t}", transform=ax.get_xaxis_transform(), va="top", fontsize=8, color="0.3")
axes[0].axhline(P.eps, color="k", ls="--", lw=1, label=f"eps = {P.eps:g}")
axes[0].set(xlabel="iteration", ylabel="test loss (clipped at 1e-12)", ylim=(1e-12, 1),
            title="test loss: median over seeds, band min-max")
axes[0].legend(fontsize=8, loc="lower left")
axes[1].axhline(1, color="0.5", ls="--", lw=1)
axes[1].set(xlabel="iteration", ylabel="attention weight of the label token",
            title="label token's attention weight (uniform attention: 1)")
plt.tight_layout(); plt.show()
"""),
code("""
Markdown(sc.schedules_markdown(rows, curves, P.eps, P.level))
""", tags=["remove-input"]),
md(r"""
## The stage boundaries

The three-stage MoT over a grid of Stage I lengths $T_1$ and Stage II lengths $T_2-T_1$, all with $T = 500$
(Stage III takes the rest), 10 seeds per cell. Per cell, the median over seeds of: the final test loss (log
colour scale); the routing accuracy at $T_1$ (the share of test samples sent to an expert specialized in their
class, without exploration); the label token's attention weight at $T_2$; and the number of seeds whose run ends
at test loss ≤ `eps`. The red square is the book's default $(T_1, T_2-T_1) = (200, 100)$.
"""),
code("""
n_grid = sc.grid_seeds(rows)
fig, axes = plt.subplots(2, 2, figsize=(12, 8))
xl, yl = "Stage II length T2 − T1", "Stage I length T1"
mark = (sc.BASE.T1, sc.BASE.T2 - sc.BASE.T1)
sc.heatmap(axes[0, 0], sc.grid_table(rows, "final_test_loss"), lambda v: f"{v:.1e}", "median final test loss (T = 500)",
           xl, yl, log=True, cmap="viridis", mark=mark, cbar_label="test loss")
sc.heatmap(axes[0, 1], sc.grid_table(rows, "routing_acc_T1"), lambda v: f"{v:.4f}", "median routing accuracy at T1",
           xl, yl, vmin=0.9, vmax=1.0, cmap="magma", mark=mark, cbar_label="routing accuracy")
sc.heatmap(axes[1, 0], sc.grid_table(rows, "label_weight_T2"), lambda v: f"{v:.2f}",
           "median label-token attention weight at T2", xl, yl, vmin=0, vmax=mot.config.Setting().L, cmap="cividis",
           mark=mark, cbar_label="weight (uniform: 1)")
sc.heatmap(axes[1, 1], sc.grid_table(rows, "reached", P.eps), lambda v: f"{v:.0f}/{n_grid}",
           f"seeds ending at test loss ≤ {P.eps:g}", xl, yl, vmin=0, vmax=n_grid, cmap="Greens", mark=mark,
           cbar_label="seeds")
plt.tight_layout(); plt.show()
"""),
code("""
display(Markdown(sc.label_weight_markdown(rows)))
Markdown(sc.grid_markdown(rows, P.eps, P.level))
""", tags=["remove-input"]),
md(r"""
Per seed, the smallest value of the grid that works (the run ends at test loss ≤ `eps`): the smallest $T_1$
with Stage II at its default length, and the smallest Stage II with $T_1$ at its default; the median over the
10 seeds with its 95% order-statistic interval ("none in the grid" where a seed works nowhere, counted as
beyond the grid).
"""),
code("""
sc.boundaries_display(sc.boundaries(rows, P.eps, P.level), P.level)
"""),
md(r"""
### Proposition 1's scaling of Stage I

Proposition 1 gives the length of Stage I as $T_1 = O(\eta^{-1}\sigma_0^{-0.5}M)$: at a fixed step and
initialisation, proportional to the number of experts $M$. The "scaling" part runs the three-stage MoT with
$M = 8, 16, 32$ and $T_1 \in \{10, 25, 50, 100, 200\}$, each with a Stage II of 100 steps and a Stage III of
200 after it, 10 seeds each. Per seed, the smallest working $T_1$; the prediction scales the default $M$'s
measured median by $M/16$.
"""),
code("""
scal = sc.scaling_table(rows, P.eps, P.level)
counts = sc.scaling_counts(rows, P.eps)
fig, ax = plt.subplots(figsize=(7.5, 3.2))
sc.heatmap(ax, counts, lambda v: f"{v:.0f}/{int(scal.seeds.iloc[0])}", f"seeds ending at test loss ≤ {P.eps:g}",
           "Stage I length T1", "experts M", vmin=0, vmax=int(scal.seeds.iloc[0]), cmap="Greens", cbar_label="seeds")
cols = list(counts.columns)
for i, r in enumerate(scal.itertuples()):
    if not np.isfinite(r.predicted):
        continue
    if r.predicted in cols:
        ax.scatter(cols.index(r.predicted) + 0.33, i + 0.22, marker="*", s=90, color="C3", zorder=3,
                   label="Proposition 1's T1 (∝ M, from M = 16)" if i == 0 else None)
    else:
        ax.annotate(f"predicted {r.predicted:g} →", (len(cols) - 0.53, i + 0.3), ha="right", va="center", fontsize=8,
                    color="C3")
ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(0, -0.25))
plt.tight_layout(); plt.show()
sc.scaling_display(scal, P.level)
"""),
code("""
Markdown(sc.scaling_markdown(scal, rows, P.eps))
""", tags=["remove-input"]),
md(r"""
## Who commits first: the experts or the gate?

Stage I alone ($T_1 = T_2 = T = 300$), recorded every 5 steps, over the exploration size $\lambda$ and the
gate's step $\eta_r$; 10 seeds per cell, 20 at the book's default $(\lambda, \eta_r) = (1, 0.5)$ (red square).
Per cell, the median over seeds of $t_{spec}$ and of $t_{agree}$ (a seed that never gets there within the
300 steps counts as beyond the run; a cell whose median lies beyond it is hatched), and the number of seeds
whose experts specialize.
"""),
code("""
k_spec, n_spec = sc.explore_counts(rows, "t_spec")
T_ex = sc.explore_T(rows)
mark = (sc.BASE.lam, sc.BASE.eta_router)
fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
kw = dict(xlabel="gate step eta_router", ylabel="exploration lam", mark=mark, beyond_text=f"> {T_ex}")
sc.heatmap(axes[0], sc.explore_table(rows, "t_spec", P.level), lambda v: f"{v:g}", "median t_spec (experts specialize)",
           vmin=0, vmax=T_ex, cmap="viridis_r", cbar_label="step", **kw)
sc.heatmap(axes[1], sc.explore_table(rows, "t_agree", P.level), lambda v: f"{v:g}", "median t_agree (gate commits)",
           vmin=0, vmax=T_ex, cmap="viridis_r", cbar_label="step", **kw)
share = k_spec / n_spec
sc.heatmap(axes[2], share, lambda v: "", f"seeds whose experts specialize within {T_ex} steps", vmin=0, vmax=1,
           cmap="Greens", cbar_label="share of seeds", **kw)
for i, lam in enumerate(share.index):
    for j, er in enumerate(share.columns):
        axes[2].text(j, i, f"{k_spec.loc[lam, er]}/{n_spec.loc[lam, er]}", ha="center", va="center", fontsize=8,
                     color="white" if share.loc[lam, er] > 0.5 else "black")
plt.tight_layout(); plt.show()
"""),
md(r"""
The routing over time at the book's default $(\lambda, \eta_r) = (1, 0.5)$ (20 seeds; median, band min-max):
the routing accuracy and the share of samples whose explored choice is the gate's own (dashed: the 95%
thresholds of $t_{spec}$ and $t_{agree}$), the number of experts that receive at least 1% of the test samples,
and the dispatch entropy (mean over classes of the entropy of the experts a class is sent to, in nats; 0: each
class goes to one expert). Below: the median agreement in every cell with exploration.
"""),
code("""
fig, axes = plt.subplots(1, 4, figsize=(15, 3.4))
for ax, q, label in zip(axes, ("routing_acc", "explore_agree", "experts_used", "dispatch_entropy"),
                        ("routing accuracy", "explored choice = gate's choice", "experts used", "dispatch entropy (nats)")):
    plots.seed_band(ax, sc.explore_curves(curves, q), color="C0")
    if q in ("routing_acc", "explore_agree"):
        ax.axhline(0.95, color="k", ls="--", lw=1)
    ax.set(xlabel="step", ylabel=label, title=label)
fig.suptitle(f"Stage I at lam = {sc.BASE.lam:g}, eta_router = {sc.BASE.eta_router:g} (median over seeds, band min-max)",
             fontsize=10)
plt.tight_layout(); plt.show()
lams = [l for l in sorted(rows[rows.part == "explore"].lam.unique()) if l > 0]
ers = sorted(rows[rows.part == "explore"].eta_router.unique())
fig, axes = plt.subplots(1, len(ers), figsize=(13, 3.2), sharey=True)
for ax, er in zip(axes, ers):
    for i, lam in enumerate(lams):
        ax.plot(sc.explore_curves(curves, "explore_agree", lam, er).median(axis=1), color=f"C{i}", label=f"lam = {lam:g}")
    ax.axhline(0.95, color="k", ls="--", lw=1)
    ax.set(xlabel="step", title=f"eta_router = {er:g}")
axes[0].set_ylabel("explored choice = gate's (median)")
axes[0].legend(fontsize=8)
plt.tight_layout(); plt.show()
"""),
code("""
Markdown(sc.explore_markdown(rows, curves, P.level))
""", tags=["remove-input"]),
md(r"""
(verdict-09_training_schedule)=
## Verdicts

Eight questions, each decided on the committed table's seeds by the rule below:
"""),
code("""
Markdown(sc.rules_markdown(P, rows))
""", tags=["remove-input"]),
code("""
verdicts = sc.verdict_rows(rows, P)
_ = mot.book.write_verdicts(verdicts, "09_training_schedule", P.out_dir)
"""),
code("""
mot.book.show_verdicts(verdicts)
"""),
md(r"""
## A live rerun of the table's rows

Three of the table's jobs trained here on the seeds of the parameters cell: three stages at the defaults
(part "schedules", rows 1-3 of the verdicts), the grid's half Stage I (row 4) and the default cell of the
exploration sweep (row 7), with the committed numbers beside the live ones: the final test loss, the iterations
to `eps` and $t_{spec}$ ("never": beyond the run). This shows the same engine giving the same numbers; with
`quick=True` only the first job runs, on one seed. (One-stage joint training trains attention at every step and
would take twice as long as these three together.)
"""),
code("""
jobs = P.live_jobs()
check = beyond.live_check(jobs, rows, keys=sc.LABELS, columns=("final_test_loss", P.steps_col, "t_spec"))
sc.live_display(check)
"""),
code("""
Markdown(sc.live_markdown(check))
""", tags=["remove-input"]),
md(r"""
## What this answers
"""),
code("""
Markdown(sc.answers_markdown(rows, verdicts, P))
""", tags=["remove-input"]),
md(r"""
What these answers rest on: one setting (the book's synthetic task at its default size), one set of step
sizes, and the grids above; a schedule that loses here might win at other step sizes, and "works" means the
test loss ends at `eps` within the fixed budget $T$, not that it never would.
"""),
]
write("notebooks/09_training_schedule.ipynb", cells)
