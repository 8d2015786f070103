import sys; sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2]))
from tools.nbwrite import md, code, write

cells = [
md(r"""
# The predecessor's MoE experiment, reproduced and given attention

The MoT paper's data and network model follow the predecessor theory of mixture-of-experts layers
{cite:p}`chen2022moe`, whose synthetic experiment is public with its code and results. Every other number
in this book comes from this book's own instantiation; this chapter runs the engine in the predecessor's
exact setting and sets its numbers beside the published ones. It then asks a question neither paper asks:
what changes when those experts get attention, as in the MoT {cite:p}`li2025mot`?

:::{prf:definition} The predecessor's setting (its public code)
:label: def-predecessor-setting
$N=4$ clusters; a sample holds 4 patches of dimension $d=50$ in random order: the feature
$\alpha y v_k$, the cluster centre $\beta c_k$, the feature noise $\gamma\epsilon v_{k'}$ ($k'\neq k$,
$\epsilon$ a random sign) and a noise patch $\xi\sim N(0,\sigma_p^2/d\,I)$, isotropic. The $2N$ signals are
orthonormal. Amplitudes are drawn per sample: $\alpha\sim U(0.5,2)$, $\beta\sim U(1,2)$, $\gamma\sim U(0.5,3)$
(settings 1, 2) or $U(0.5,2)$ (settings 3, 4); $\sigma_p=1$ (settings 1, 3) or $2$ (settings 2, 4). All data
are multiplied by 10; 16,000 training and 16,000 test samples. $M=8$ experts of $2J=16$ neurons
$(\langle w_j,x_p\rangle+b_j)^3$ (or linear) summed over patches, the first $J$ giving the logit of $y=-1$ and
the last $J$ that of $y=+1$; router $h_m=\sum_p\langle\theta_m,x_p\rangle$, $\theta_0=0$; top-1 on $h+r$,
$r\sim U[0,1)$ redrawn every step, and the chosen expert's logits are multiplied by that noisy gate value
$h_{m^\star}+r_{m^\star}$. Loss: a softmax of the two logits, then cross-entropy (a second softmax).
Experts: normalized GD (each expert's gradient divided by the sum of its parameter-gradient norms), step
$10^{-3}$, init $0.001\times$ PyTorch's Conv1d default; router: GD, step 0.1; full batch, 501 epochs, early
stop. Single CNNs: 40 filters per class, PyTorch's default init, Adam ($3\cdot10^{-3}$ linear,
$10^{-2}$ cubic, weight decay $5\cdot10^{-4}$), 801 epochs.
:::

What the issue gave and what we checked in the public code (github.com/uclaml/MoE): $M=8$
(`EXPERT_NUM = 8` in `synthetic_data_s1.ipynb` and `synthetic_demo_s1.ipynb`); the normalized step (the
`NormalizedGD` class of `synthetic_demo_s1.ipynb` divides each expert's weight and bias gradients by the
*sum* of their norms; the version in `entropy_change_s1.ipynb` normalises each tensor on its own and is not
the one the table's cells use); the single CNNs (`ConvNet(200, 40, small=False)`, Adam, `train_single`,
which stops only after epoch 500 on a rise of 0.02); the early stop of the MoEs (`train`: before each
update, stop when the loss is not a new minimum and exceeds it by 0.02 or is at most 0.314); the
10-run cells (501 epochs, `entropy_record[-1]`, `np.std`). Two details of the code that the paper does not
state and that we follow: its `test` never switches the model to evaluation mode, so the published test
accuracies are measured **with the router noise on** (a fresh draw, and the noisy gate value still
multiplies the output); and the published entropy is $\sum_m \frac{n_m}{n}H(\text{cluster}\mid m)$ on the
**training** samples of the last forward pass (the load-weighted entropy of the clusters each expert
receives), not this book's `dispatch_entropy`.

The full table (four settings, four baselines, the MoT comparison, 10 seeds, 16,000 samples) takes far
longer than a chapter may, so `python -m mot_lib predecessor` computes it and commits
`data/predecessor_table.csv` with a manifest holding the hash of the engine modules it ran with; this
chapter reads it and flags it when the engine has changed since. A live run of setting 1 at a smaller size
closes the chapter.
"""),
code("""
import numpy as np
import pandas as pd
import matplotlib.pyplot as plt
import mot_lib as mot
from mot_lib import plots
from mot_lib import predecessor_table as pt
from mot_lib import predecessor_chapter as pc
from mot_lib.predecessor import LOSS_FLOOR
plots.setup()
pd.set_option("display.width", 200)
_before = set(globals())
"""),
code("""
# Parameters (papermill): the table is read from data/; these shape the verdicts and the live run.
seeds = [0, 1, 2, 3, 4]   # seeds of the live run of setting 1
n_live = 1000             # training and test samples of the live run (the table: 16,000)
acc_tol = 1.0             # "within 1 point of the published accuracy" (the issue's tolerance)
level = 0.95              # coverage of the Student-t intervals over seeds
table = None              # the full table's CSV (None: data/predecessor_table.csv)
quick = False
out_dir = None
""", tags=["parameters"]),
code("""
P = mot.book.chapter_params("10_predecessor", globals(), _before)   # fails here, naming any bad parameter
df, meta, stale = pc.load(P)
print(f"table: {len(df)} rows; seeds {meta['seeds']}; settings {meta['settings']}; MoT comparison on settings "
      f"{meta['attention_settings']}; {meta['n_train']} training and {meta['n_test']} test samples")
if stale:
    print("note: the engine modules changed since this table was computed; rerun `python -m mot_lib predecessor`")
""", tags=["remove-input"]),
md(r"""
## Our numbers beside the published ones

Per setting and model: the number of seeds, our mean test accuracy (in %) and dispatch entropy with their
standard deviation and 95% Student-t interval over seeds, and the published mean (and sd, where published).
Each seed draws its own signals, training and test sets; the published runs share one data set per setting
and differ in the initialisation and the router noise.
"""),
code("""
tab = pc.beside_published(df, P.level)
def fmt(m, lo, hi, sd, prec):
    return "" if not np.isfinite(m) else f"{m:.{prec}f} ± {sd:.{prec}f} [{lo:.{prec}f}, {hi:.{prec}f}]"
shown = pd.DataFrame({
    "setting": tab.setting, "model": tab.model, "seeds": tab.seeds,
    "test acc % (mean ± sd [t-interval])": [fmt(*r, 2) for r in tab[["test_acc mean", "test_acc lo", "test_acc hi", "test_acc sd"]].to_numpy()],
    "published acc %": [("" if not np.isfinite(a) else f"{a:g}" + ("" if not np.isfinite(s) else f" ± {s:g}") + (" (1 run)" if r == 1 else ""))
                        for a, s, r in tab[["published acc", "published acc sd", "published runs"]].to_numpy()],
    "entropy (mean ± sd [t-interval])": [fmt(*r, 3) for r in tab[["entropy mean", "entropy lo", "entropy hi", "entropy sd"]].to_numpy()],
    "published entropy": [("" if not np.isfinite(a) else f"{a:g}" + ("" if not np.isfinite(s) else f" ± {s:g}"))
                          for a, s in tab[["published entropy", "published entropy sd"]].to_numpy()],
})
shown
"""),
code("""
fig, axes = plt.subplots(1, 4, figsize=(13, 3.6), sharey=True)
colors = dict(zip(pt.BASELINES, ["C0", "C1", "C2", "C3"]))
for ax, k in zip(axes, sorted(df.setting.unique())):
    for i, m in enumerate(pt.BASELINES):
        g = df[(df.setting == k) & (df.model == m)]
        if g.empty:
            continue
        ax.scatter(np.full(len(g), i) + np.linspace(-0.15, 0.15, len(g)), g.test_acc, s=10, color=colors[m], alpha=0.6)
        e = mot.rates.mean_t(g.test_acc, P.level)
        ax.errorbar(i + 0.3, e.value, yerr=[[e.value - e.lo], [e.hi - e.value]], fmt="o", color=colors[m], capsize=3)
        pub = pt.PUBLISHED.get((k, m))
        if pub:
            ax.errorbar(i + 0.3, pub["acc"], yerr=pub.get("acc_sd", 0), fmt="x", color="k", ms=8, capsize=3,
                        label="published (sd)" if i == 0 else None)
    ax.set_xticks(range(4), ["cubic\\nMoE", "linear\\nMoE", "single\\nlinear", "single\\ncubic"], fontsize=8)
    ax.set_title(f"setting {k}")
axes[0].set_ylabel("test accuracy (%)")
axes[0].legend(loc="lower left", fontsize=8)
fig.suptitle("dots: our seeds; circle: mean with t-interval; cross: published mean (sd bar where published)", fontsize=9)
plt.tight_layout(); plt.show()
""", tags=["hide-input"]),
md(r"""
## Verdicts on the reproduction

Fixed before looking at the table: our mean test accuracy reproduces a published one when its 95%
t-interval over seeds lies within `acc_tol` = 1 point of it (the issue's tolerance; at 16,000 test samples
one seed's accuracy is known to about ±0.2 points, so a point is well above the test-set noise); it does
not when the interval lies entirely outside that band. A published entropy is reproduced when our
entropy's t-interval contains it. The single CNNs' published values are single runs, so their rows
compare our mean with one draw of theirs.
"""),
code("""
rep_rows = pc.reproduction_rows(df, P)
mot.book.verdict_table(rep_rows)
"""),
md(r"""
## Giving the experts attention

The MoT's experts are the predecessor's experts with their own merged key-query matrix $W_{KQ}^{(m)}$
over the 4 patches: $f_m(X)=\sum_j s_j\sum_p a_p(X)\,\sigma(\langle w_{mj},x_p\rangle+b_{mj})$ with
$a_p=\sum_q\mathrm{softmax}_p(x_q^\top W_{KQ}^{(m)}x_p)$, summed over queries as in the rest of this book,
so with $W_{KQ}=0$ each patch gets weight 1 and the expert is exactly the predecessor's. $W_{KQ}$ starts at 0;
Stage I (steps 1-150) is the predecessor's training, Stage II (151-250) trains only $W_{KQ}$ (normalized GD,
step $10^{-3}$) and the router, Stage III (251-400) trains the neurons again. The attention-free MoE runs the
same schedule with $W_{KQ}$ fixed at 0 (its Stage II trains only the router), on the same data and seeds,
so both are identical through Stage I. Neither stops early, so both take the same 400 steps. Both are run
with the predecessor's loss and with the book's logistic loss $\log(1+e^{-m})$ (the single-softmax
cross-entropy; the noisy gate value still multiplies the output). The loss level for "steps to level" is
the loss's floor plus 0.02 for the predecessor's loss ($0.333$) and $10^{-3}$ for the logistic loss; the
schedule and the levels were fixed from one look at two seeds of setting 1, before the full run.
"""),
code("""
att = pc.attention_summary(df, P.level)
att.round({"acc % MoT": 2, "acc % MoE": 2, "entropy MoT": 3, "entropy MoE": 3, "steps to level MoT": 0,
           "steps to level MoE": 0, "MoT feature-patch attention": 3})
"""),
code("""
pairs = pc.attention_pairs(df)
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
for ax, loss in zip(axes, pt.LOSSES):
    g = pairs[pairs.loss == loss]
    for k, gk in g.groupby("setting"):
        ax.scatter(gk["test_acc (attention-free)"], gk["test_acc (MoT)"], s=14, label=f"setting {k}")
    lo = min(g["test_acc (attention-free)"].min(), g["test_acc (MoT)"].min())
    ax.plot([lo, 100], [lo, 100], color="0.5", lw=1, ls="--")
    ax.set(xlabel="attention-free MoE test accuracy (%)", ylabel="MoT test accuracy (%)", title=loss)
    ax.legend(fontsize=8)
fig.suptitle("one dot per seed; above the diagonal: attention helped that seed", fontsize=9)
plt.tight_layout(); plt.show()
""", tags=["hide-input"]),
code("""
att_rows = pc.attention_rows(df, P)
mot.book.write_verdicts(rep_rows + att_rows, "10_predecessor", P.out_dir)
mot.book.verdict_table(att_rows)
"""),
md(r"""
## A live run of setting 1

The cubic MoE of setting 1 as published, trained here at `n_live` training and test samples on the
seeds of the parameters cell, and the same model with the book's logistic loss and no early stop (the
floor rule belongs to the predecessor's loss; the rise rule would stop the logistic runs at random steps,
since the router noise moves their loss by more than 0.02 from one step to the next). The dashed line is
the double softmax's floor $\log(1+e^{-1})=0.3133$; the predecessor's runs stop when the loss comes within
0.001 of it or rises 0.02 above its minimum. Curves end where a seed stopped (median and range over the
seeds still running).
"""),
code("""
live = pc.live_runs(P)
fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
for name, run in live.items():
    plots.seed_band(axes[0], pc.until_stop(run, "train_loss"), name)
    plots.seed_band(axes[1], 100 * pc.until_stop(run, "test_acc"), name)
axes[0].axhline(LOSS_FLOOR, color="k", ls="--", lw=1, label="floor log(1+1/e)")
axes[0].set(xlabel="step", ylabel="training loss", yscale="log", title="training loss (median, range over seeds)")
axes[1].set(xlabel="step", ylabel="test accuracy (%), no router noise", title="test accuracy")
axes[0].legend(fontsize=8); axes[1].legend(fontsize=8)
plt.tight_layout(); plt.show()
"""),
code("""
live_tab = pd.DataFrame({name: {
    "test acc % (router noise on)": str(mot.rates.mean_t(100 * run.final("final_test_acc"), P.level)),
    "entropy": str(mot.rates.mean_t(run.final("final_entropy"), P.level)),
    "updates (early stop)": str(mot.rates.mean_t(run.final("updates"), P.level)),
} for name, run in live.items()}).T
live_tab
"""),
md(r"""
## What remains different, and why

* **Data per seed.** The published 10 runs share one data set per setting (drawn once with NumPy seed 11
  or 12) and differ in initialisation and router noise; each of our seeds draws its own signals and
  samples, so our spread includes the data's. The distribution is the same: Gram-Schmidt of Gaussian
  draws (theirs) and the first $2N$ columns of a QR rotation (ours) are both a uniformly random orthonormal
  frame.
* **Arithmetic.** Theirs ran in float32 on a GPU; ours in float32 on a CPU, seeds batched, samples grouped
  by routed expert; the random streams differ, so no single number can match, only the distribution.
  A linear expert is evaluated on the patch sum (exact by linearity, up to rounding).
* **What is a "run".** The single CNNs' published numbers are one run each; we give a mean over seeds.
* **The MoT's schedule is ours**: the predecessor has no attention; the stage boundaries, the key-query
  step and the loss levels are this book's choices, stated above.
"""),
]
write("notebooks/10_predecessor.ipynb", cells)
