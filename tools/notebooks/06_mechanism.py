import sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tools.nbwrite import md, code, write

cells = [
md(r"""
# The mechanism: gradient conflict and curvature

:::{prf:proposition} Why the MoT converges faster (the paper's explanation of Theorem 1)
:label: prop-mechanism
Once Stage I has specialized the experts and the gate routes each class to its
specialists, an expert no longer serves classes whose gradients conflict, so its
Stage III subproblem is strongly convex, which gives the linear rate
$O(\log(1/\epsilon))$; a single model facing all classes has conflicting
per-class gradients {cite:p}`li2025mot`.
:::

The paper's proof is not public to us, so this chapter measures the two halves
of the explanation directly, on the book's default setting and seeds.

**Gradient conflict.** For a model whose FFN vector $W$ serves a set of samples,
$g_n=\nabla_W$ (mean loss of its class-$n$ samples) is what class $n$ asks of
it (`mot.metrics.class_gradients`; cosines by `mot.metrics.cosine_matrix`). Three
cases, on the same data:

* the **shared expert**: the same MoT with $M=1$, trained by the same three
  stages. Every class goes through its single expert, so its update is
  $\frac1N\sum_n g_n$ and a negative cosine between $g_n$ and the sum of the other
  classes' gradients is a conflict its update actually carries. We summarize it
  by the *class-vs-rest cosine* $\cos(g_n,\sum_{n'\neq n}g_{n'})$, averaged over
  $n$; the mean off-diagonal cosine is shown too, but it can hide a conflict
  (one class at cosine $-1$ against three mutually aligned ones averages to $0$
  at $N=4$);
* the **specialists** of the MoT ($M$ experts): for each used expert, its actual
  update $u$ (the gradient of its loss on the samples the router sends to it,
  gate probability and attention weights included) is compared (i) with itself
  on two random halves of those samples (the *within-specialist* cosine: what
  agreement looks like when no other class competes, sampling noise included),
  and (ii) with $g_n$ for every class $n$ other than its specialty, evaluated at
  the expert's weights as if class $n$ were routed to it (*what the other
  classes would pull it towards*); the share of its routed samples that belong
  to its specialty says how much of that pull reaches it;
* the **single transformer**: per-class gradients of all its FFN weights.

**Curvature.** At the end of training, the smallest eigenvalue $\lambda_{\min}$ of
the Hessian of each used expert's Stage III loss in its own $W$
(`mot.metrics.expert_hessian_min_eig`), restricted to the signal span
$\mathrm{span}\{c_n,v_n\}$ and on all of $\mathbb R^d$; the same for the shared
expert, and for the single transformer's loss in its FFN weights
(the loss of `mot.metrics.single_hessian_min_eig`, decomposed once per seed for
both subspaces by `mechanism.single_hessian_spectrum`, which the tests check
against the engine's function). Every loss is close to $0$ at the end of
training, so every curvature is small in absolute terms; we read
$\lambda_{\min}$ against the largest eigenvalue $\lambda_{\max}$ of the same
Hessian, and look at the eigenvector of $\lambda_{\min}$.
"""),
code("""
import numpy as np
import pandas as pd
import matplotlib.pyplot as plt
import mot_lib as mot
from mot_lib import plots
from mot_lib import mechanism as mech
plots.setup()
pd.set_option("display.precision", 3)
_before = set(globals())
"""),
code("""
# Parameters (papermill)
seeds = list(range(20))
M = 16                  # experts of the MoT; the shared expert is the same model with one expert
T1 = 200                # end of Stage I
T2 = 300                # end of Stage II
T = 500                 # end of Stage III (curvature is measured here)
early_step = 50         # an early checkpoint inside Stage I for the conflict measures
H = 4                   # heads of the single transformer
J = 2                   # FFN neurons per head of the single transformer
single_T = 500          # training steps of the single transformer
single_seeds = 12       # the first this many seeds train the single transformer (its longest run per seed)
n_train = 500           # training samples per seed (full batch; the Hessians are over all of them)
min_share = 0.01        # an expert is "used" if it receives at least this share of the training samples
conflict_margin = 0.1   # conflict: the class-vs-rest cosine interval lies at or below -conflict_margin
clear_gap = 0.5         # "clearly": within-specialist cosine minus shared cosine at least this
rel_tol = 1e-3          # strongly convex: lambda_min / lambda_max at least this, a condition number of at most 1/rel_tol
seed_share = 0.5        # a per-seed property holds if more than this share of seeds pass (Wilson 95%)
record_every = 50       # history cadence (this chapter reads weights, not curves)
quick = False           # a smoke test: 200 samples and half the steps
out_dir = None          # where verdicts are written (None: the book's folder)
""", tags=["parameters"]),
code("""
P = mot.book.chapter_params("06_mechanism", globals(), _before)   # fails here, naming any bad parameter
print(P.setting())
print(P.config())
print(P.single_config())
print("conflict checkpoints:", P.steps())
"""),
md(r"""
## Training

One dataset per seed. The MoT and the shared expert ($M=1$) are trained through
the three stages; `train_mot` returns final weights only, and training is
deterministic, so the weights at a checkpoint $t$ come from the same schedule
cut at $t$ (the same first $t$ steps). The single transformer is trained by
normalized GD on all its parameters, as in the setting.
"""),
code("""
runs = mech.run_all(P)
final = {"MoT": runs["mot"][max(runs["mot"])], "shared expert (M=1)": runs["shared"][max(runs["shared"])],
         "single transformer": runs["single"]}
pd.DataFrame({k: {q: r.final(q).median() for q in ["train_loss", "test_loss", "test_acc"]} for k, r in final.items()}
             ).rename_axis("median over seeds at the end").map(lambda v: float(f"{v:.3g}"))
"""),
md(r"""
## Gradient conflict

The matrices below are the $N\times N$ cosines between per-class gradients, for
the first seed: the shared expert at initialisation and at the end of training,
one specialist of the MoT (the used expert with the most traffic), evaluated on
every class as if all were routed to it, and the single transformer. Red is
agreement, blue is conflict.
"""),
code("""
conf, mats = mech.conflict_table(runs, P.min_share)
s0 = P.seeds[0]
steps = P.steps()
t_end = steps[-1]
spec_df, spec_mats = mats[("specialists", t_end)]
d0 = spec_df[spec_df.seed == s0].sort_values("share", ascending=False).iloc[0]
cls = [f"class {n + 1}" for n in range(P.setting().N)]
panels = [(mats[("shared", 0)][0], "shared expert (M=1), init"),
          (mats[("shared", t_end)][0], f"shared expert (M=1), step {t_end}"),
          (spec_mats[(s0, int(d0.expert))], f"MoT expert {int(d0.expert)} (specialty class {int(d0.specialty) + 1}), step {t_end}"),
          (mats[("single", runs["single"].cfg.T)][0], f"single transformer, step {runs['single'].cfg.T}")]
fig, axes = plt.subplots(1, 4, figsize=(13, 3.3))
for k, (ax, (C, title)) in enumerate(zip(axes, panels)):
    plots.heatmap(ax, C, cls, cls if k == 0 else False, title=title, cmap="RdBu_r", vmin=-1, vmax=1, annot=True,
                  cbar=(k == 3))
    ax.tick_params(labelsize=8); ax.title.set_fontsize(9)
fig.suptitle(f"cosines between per-class gradients (seed {s0})", fontsize=11)
plt.tight_layout(); plt.show()
"""),
md(r"""
The specialist's matrix is counterfactual: the other classes are not routed to
it. Its row for its specialty shows what they *would* ask of it. The summary over
seeds below follows the checkpoints: for the shared expert the class-vs-rest
cosine (a conflict it carries), for the specialists the within-specialist cosine
of their actual update and the cosine of that update with the other classes'
pull (median over used experts), as median line and min-max band over seeds.
"""),
code("""
def wide(model, col):
    d = conf[conf.model == model].pivot(index="step", columns="seed", values=col)
    return d.dropna(how="all")

fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
ax = axes[0]
plots.seed_band(ax, wide("shared expert (M=1)", "vs_rest_cos"), "shared expert: class vs rest")
plots.seed_band(ax, wide("shared expert (M=1)", "offdiag_cos"), "shared expert: mean off-diagonal", color="C7", lw=1.0)
plots.seed_band(ax, wide("MoT specialists", "within_cos"), "specialists: within (two halves of routed samples)")
plots.seed_band(ax, wide("MoT specialists", "own_vs_other"), "specialists: update vs other classes' pull")
ax.axhline(-P.conflict_margin, color="k", ls=":", lw=1, label=f"conflict threshold -{P.conflict_margin:g}")
cfg = P.config()
for t, name in ((cfg.T1, "T1"), (cfg.T2, "T2")):
    ax.axvline(t, color="0.6", lw=0.8); ax.text(t, 1.07, name, ha="center", fontsize=8, color="0.35")
ax.set(xlabel="training step (checkpoint)", ylabel="cosine", ylim=(-1.1, 1.15), title="gradient cosines over training")
ax.legend(fontsize=7, loc="center right")
ax = axes[1]
pur = wide("MoT specialists", "purity")
plots.seed_band(ax, pur, "worst used expert's share of own-class samples")
ax.set(xlabel="training step (checkpoint)", ylabel="share", ylim=(0, 1.05), title="how much of the other classes' pull reaches a specialist")
ax.legend(fontsize=8, loc="lower right")
plt.tight_layout(); plt.show()
"""),
code("""
summary = (conf.groupby(["model", "step"])[["vs_rest_cos", "offdiag_cos", "within_cos", "own_vs_other", "purity"]]
           .median().dropna(how="all", axis=1))
summary.columns = ["class vs rest", "mean off-diagonal", "within specialist", "update vs others' pull", "own-class share"]
summary.rename_axis(["model (median over seeds)", "step"]).map(lambda v: "" if pd.isna(v) else f"{v:.3g}")
"""),
md(r"""
## Curvature at the end of training

Each point is one used expert of one seed (the shared expert and the single
transformer have one per seed); the marker is the median. The vertical axis is
$\lambda_{\min}/\lambda_{\max}$ on a symmetric-log scale; strong convexity with a
condition number at most $1/\mathrm{rel\_tol}$ is the region above the dotted line.
"""),
code("""
curv = mech.curvature_table(runs, P.min_share)
assert np.allclose(curv.lam_min, curv.lam_min_check, rtol=1e-6, atol=1e-14)  # experts: our spectra = the engine's minimum
seedwise = mech.per_seed_curvature(curv)
models = ["MoT specialists", "shared expert (M=1)", "single transformer"]
fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), sharey=True)
rng = np.random.default_rng(0)
for ax, sub, name in ((axes[0], "signals", r"on span$\\{c_n, v_n\\}$"), (axes[1], "full", r"on $\\mathbb{R}^d$")):
    for k, m in enumerate(models):
        v = curv[(curv.model == m) & (curv.subspace == sub)].rel_min.to_numpy()
        ax.scatter(k + rng.uniform(-0.15, 0.15, v.size), v, s=12, alpha=0.6, color=f"C{k}")
        ax.plot([k - 0.25, k + 0.25], [np.median(v)] * 2, color="k", lw=2)
    ax.axhline(P.rel_tol, color="k", ls=":", lw=1, label=f"rel_tol = {P.rel_tol:g}")
    ax.axhline(0, color="0.5", lw=0.8)
    ax.set_yscale("symlog", linthresh=1e-5)
    ax.set_xticks(range(len(models)), ["MoT\\nspecialists", "shared expert\\n(M=1)", "single\\ntransformer"])
    ax.set(title=r"$\\lambda_{\\min}/\\lambda_{\\max}$ " + name)
    ax.legend(fontsize=8, loc="upper right")
axes[0].set_ylabel(r"$\\lambda_{\\min}/\\lambda_{\\max}$ (symlog)")
plt.tight_layout(); plt.show()
"""),
code("""
tab = curv.groupby(["model", "subspace"]).agg(
    lam_min_median=("lam_min", "median"), lam_max_median=("lam_max", "median"),
    rel_min_median=("rel_min", "median"), share_positive=("lam_min", lambda v: float((v > 0).mean())),
    n=("lam_min", "size"))
tab.columns = ["median lambda_min", "median lambda_max", "median ratio", "share with lambda_min > 0", "experts x seeds"]
tab.map(lambda v: f"{v:.3g}")
"""),
md(r"""
Where does the smallest eigenvalue of a specialist live? The squared weights of
its eigenvector on the expert's own $v_{n^\star}$, on the other $v_n$ and on the
class tokens $c_n$ (signal span; each row sums to 1):
"""),
code("""
sp = curv[(curv.model == "MoT specialists") & (curv.subspace == "signals")]
where = pd.Series({"own v_n*": sp.min_vec_on_own_v.mean(), "other v_n": sp.min_vec_on_other_v.mean(),
                   "class tokens c_n": sp.min_vec_on_c.mean()}, name="mean squared weight of the lambda_min eigenvector")
where.map(lambda v: f"{v:.3g}").to_frame()
"""),
md(r"""
(verdict-06_mechanism)=
## Verdict

Every row is a statement about the population of seeds, with a rule fixed in
the parameters before looking:

* *Conflict in the shared expert*: the mean over seeds of its class-vs-rest cosine,
  with a Student-t 95% interval; holds if the interval lies at or below $-0.1$
  (orthogonal classes give $0$; `conflict_margin` = 0.1 keeps rounding-level
  negatives out; a t interval may reach past the cosine's range $[-1, 1]$, so
  the accepted range is open below).
* *Agreement inside a specialist*: the mean over seeds of the within-specialist
  cosine minus the shared expert's, t interval; holds at or above $0.5$
  (`clear_gap`, a quarter of the cosine range).
* *Routing keeps the pull out* and *strong convexity* are pass/fail properties of
  a seed (its worst used expert receives at least 95% of its samples from its own
  class; its worst used expert has $\lambda_{\min}/\lambda_{\max}\ge 10^{-3}$, a
  condition number of at most $10^3$, so that a rounding-level positive value does
  not count). They hold if the Wilson 95% interval of the share of passing seeds
  lies above `seed_share` = 0.5: the property is the typical outcome (more than
  half of the initialisations), with the measured share shown. (The bar was 0.75
  until the first replication; see chapter 02 for why it changed.)
* *The single transformer's curvature is below the experts'*: a pass/fail
  property of a seed (its single transformer's $\lambda_{\min}/\lambda_{\max}$ on
  the signal span is below its MoT's worst used expert's), decided on the share
  of passing seeds like the rows above. *Until the first replication this row was
  the mean over seeds of the per-seed difference with a t interval*; the
  differences are heavy-tailed ($10^{-5}$ to $10^{-2}$), so the interval crossed 0
  on one replication set although the difference is negative on almost every
  seed: on a 24-seed check outside the defaults and the replication sets (seeds
  100-123) it was negative on 24 of 24. The rule was changed before the
  replication shown in the scorecard was drawn. On that replication the single
  transformer was below its experts on 10, 11 and 9 of 12 seeds (defaults, set 1,
  set 2): about 83% of seeds, so at 12 seeds the Wilson interval clears one half
  on most sets but not all (9 of 12 gives $[0.47, 0.91]$, inconclusive on set 2).
  A stable verdict would need about 40 single-transformer seeds (at a pass rate of
  0.83, 27 of 40 passing clears one half on more than 99% of sets); each costs about 4 s of
  the chapter's 90 s, so this row stays the one whose verdict depends on the seed
  set, as the scorecard's replication columns show.

An `inconclusive` row says in its note which way it leans and about how many
seeds would settle it.
"""),
code("""
rows = (mech.conflict_rows(conf, steps[-1], P.conflict_margin, P.clear_gap, P.seed_share)
        + mech.curvature_rows(seedwise, P.rel_tol, P.seed_share))
mot.book.show_verdicts(rows)
"""),
code("""
verdict_file = mot.book.write_verdicts(rows, "06_mechanism", P.out_dir)
"""),
md(r"""
## Discussion

**What was measured.** Per-class gradient cosines of the same FFN-vector
parameterization in three situations (one expert serving all classes, the MoT's
specialists, the single transformer), and the Hessian spectra of the Stage III
losses at the end of training.

**Gradient conflict: as the paper says, and the reason is visible.** In the
default run, at initialisation the shared expert's per-class gradients do not
conflict (class-vs-rest cosines near or above zero: its small random $W$ sees
each class's label token through $\langle W, v_n\rangle^2$). As soon as it has
learned a few $v_n$, they do: a class-$n$ sample whose distractor is $\pm v_{n'}$
adds a random-sign term $\langle W,v_{n'}\rangle^3$ to the output, so class $n$
pulls $W$ away from the $v_{n'}$ that class $n'$ needs. The class-vs-rest cosine
falls to near $-1$ within the first checkpoint and stays strongly negative;
the shared expert ends at a high loss. The mean off-diagonal cosine is
near $0$ on some seeds only because, with $N=4$, one class at $-1$ against three
aligned ones averages out, which is why the verdict uses the class-vs-rest cosine.
A specialist's update agrees with itself (within-specialist cosine near 1).
The conflict has not vanished from the problem: the other classes would pull a
specialist exactly against its own update (cosine about $-1$, the distractor
mechanism again). Routing is what removes it: the worst used expert receives
only its specialty's samples. So "specialization removes gradient conflicts" is
precisely "routing keeps the conflicting classes' gradients out of each
expert's update". The single transformer's per-class FFN gradients conflict as
well (negative off-diagonal cosines).

**Strong convexity: not in our setting.** The verdict rows on curvature are
computed, and in the default run they say that no used expert's Stage III loss
is strongly convex, neither on the signal span nor on $\mathbb R^d$: the smallest
eigenvalue is slightly negative for every used expert (relative to the largest
eigenvalue, of order $-10^{-4}$). Its eigenvector lies on the directions the
expert's data barely move it in: the other classes' $v_n$ and the class tokens
$c_n$. The largest eigenvalue is along the specialty direction, where the loss
is strongly curved. This is what the cubic activation implies: the Hessian is
$\ell''\,\nabla f\nabla f^\top + \ell'\,\nabla^2 f$, with $\nabla^2 f = 6\sum_k a_k
\langle W,x_k\rangle x_kx_k^\top$; the first term is positive only along $\nabla f$
(essentially $v_{n^\star}$), and the second has either sign and, since
$\ell'<0$, makes directions where the expert holds a small residual weight
slightly concave. A per-expert subproblem is thus "strongly convex along the
direction that matters and flat elsewhere", which is enough for a linear rate on
the specialty coordinate but is not strong convexity of the subproblem. The
single transformer's loss is not strongly convex either; its relative smallest
eigenvalue is more negative than the experts' worst on average over seeds (the
third curvature row), but its spectrum covers $H\cdot J$ vectors at once, so
more directions enter its minimum, and the differences are of the order of
$10^{-4}$ to $10^{-3}$ of the largest eigenvalue: both are, for practical purposes,
flat-plus-one-stiff-direction losses. The shared expert ($M=1$) has the most
negative ratios.

**What differs from the paper.** The paper's experts and constants are not
public; its Stage III argument may use a linear view of each expert ("a linear
classifier on attention-weighted features"), whose logistic loss on a
single class's separable data is convex but not strongly convex either (the
infimum is at infinity). Our experts are cubic per token (see the setting page
for why), which makes the loss slightly non-convex off the specialty direction.
The conflict half of the mechanism reproduces; the strong-convexity half does
not, as stated, in this instantiation. The rate itself is measured in the
Theorem 1 chapter.
"""),
]
write("notebooks/06_mechanism.ipynb", cells)
