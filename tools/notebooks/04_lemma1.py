import sys; sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2]))
from tools.nbwrite import md, code, write
cells = [
md(r"""
# Lemma 1: the attention-free error floor

:::{prf:lemma} Attention-free floor
:label: lemma-1-floor
An attention-free mixture of experts, whose experts are one-neuron FFNs (here: the
MoT with $W_{KQ}^{(i)}$ fixed at $0$, so each expert sums its per-token outputs
$\sigma(\langle W^{(i)},x_k\rangle)$), has an irreducible error floor on the
classification problem; the MoT, whose experts' attention can concentrate on the
label token, reaches a lower error {cite:p}`li2025mot`.
:::

The paper's constants and proof are not public to us, so this chapter tests the
statement as paraphrased above. It trains the MoT and the attention-free MoE on
the same data from the same seeds with the same three-stage schedule (for the
attention-free MoE Stage II trains only the router) and measures, on the fresh
test sample:

* the expected (test) loss and the test error over training;
* the attention-free MoE's *floor*: its mean test loss and error over the last
  third of training, with a Student-t interval over seeds;
* whether that is a floor at all: the slope of $\log$ test loss against $\log t$
  over the last third (flat $\approx 0$; plain GD on separable data gives
  $\approx -1$, a loss $\propto 1/t$);
* how the floor moves with the noise level $\sigma_\xi$ and the number of tokens $L$.

Two regimes are run. The book's default ({doc}`../book/setting`) has noise
orthogonal to the signals. The *noisy* regime has isotropic noise (it also lies
along the signals, so every expert direction is noisy) and a louder class token
$\beta$ so that the gate, which sums noise tokens too, still routes each class
to its specialists.
"""),
code("""
import numpy as np
import pandas as pd
import matplotlib.pyplot as plt
import mot_lib as mot
from mot_lib import plots
from mot_lib import floor
plots.setup()
_before = set(globals())
"""),
code("""
# Parameters (papermill): seeds are a batch dimension; quick=True halves the schedule and the data.
seeds = list(range(16))                  # full three-stage runs, two models, two regimes
n_test = 2000            # fresh test samples per seed (the error floor is read on them)
T1 = 200                 # end of Stage I
T2 = 300                 # end of Stage II
T = 500                  # end of Stage III
record_every = 10        # record cadence of the two main regimes
tail = 1 / 3             # the floor is read off the last third of training
noisy_sigma_xi = 1.5     # noisy regime: isotropic noise level
noisy_beta = 4.0         # noisy regime: class-token amplitude (keeps routing intact)
sigma_xis = [1.0, 1.5, 2.0]   # noise sweep in the noisy regime (the noisy_sigma_xi point reuses the main run)
Ls = [5, 8, 12]          # tokens-per-sample sweep in the noisy regime (the L of 8 reuses the main run)
sweep_seeds = 2          # the sweeps use the first sweep_seeds seeds
sweep_every = 25         # record cadence in the sweeps
flat_tol = 0.2           # plateau: tail log-log slope within [-flat_tol, flat_tol]
min_floor_err = 0.005    # nonzero error floor: tail test error at least this
seed_share = 0.5         # a per-seed property holds if more than this share of seeds pass (Wilson 95%)
quick = False
out_dir = None
""", tags=["parameters"]),
code("""
P = mot.book.chapter_params("04_lemma1", globals(), _before)   # fails here, naming any bad parameter
if P.quick:
    P = P.replace(seeds=P.seeds[:2], sigma_xis=P.sigma_xis[:2], Ls=P.Ls[:2], sweep_seeds=min(P.sweep_seeds, 2))
cfg = P.train_config()
regimes = {"default": P.default_setting(), "noisy": P.noisy_setting()}
for name, s in regimes.items():
    print(f"{name}: sigma_xi={s.sigma_xi:g}, noise_orthogonal={s.noise_orthogonal}, beta={s.beta:g}, L={s.L}, "
          f"n_train={s.n_train}, n_test={s.n_test}")
print(cfg)
"""),
md(r"""
## Test loss and test error over training

Both models, both regimes. Lines are medians over seeds, bands the range over
seeds; the shading marks Stages I, II and III. The dashed line is the
attention-free MoE's floor estimate (mean test loss or error over the last third
of training, median over seeds).
"""),
code("""
pairs = {name: floor.run_pair(s, cfg, P.seeds) for name, s in regimes.items()}
colors = {"MoT": "C0", "attention-free MoE": "C3"}
fig, axes = plt.subplots(2, 2, figsize=(11, 6.4))
for row, (regime, runs) in enumerate(pairs.items()):
    for col, q in enumerate(["test_loss", "test_err"]):
        ax = axes[row, col]
        for name, run in runs.items():
            w = run.scalar("test_loss") if q == "test_loss" else 1 - run.scalar("test_acc")
            plots.seed_band(ax, w, name, color=colors[name], logy=(q == "test_loss"))
        moe = floor.per_seed_summary(runs["attention-free MoE"], P.tail)
        lvl = moe.tail_loss.median() if q == "test_loss" else moe.tail_err.median()
        ax.axhline(lvl, color=colors["attention-free MoE"], ls="--", lw=1, label="attention-free floor estimate")
        plots.stage_spans(ax, cfg)
        if q == "test_err":
            ax.set_yscale("symlog", linthresh=1e-3)
            ax.set_ylim(0, 1)
        ax.set(xlabel="step", ylabel="test loss" if q == "test_loss" else "test error")
        ax.set_title(f"{regime} regime: {'expected loss' if q == 'test_loss' else 'error'}", pad=14)
        ax.legend(loc="lower left" if q == "test_loss" else "upper right", fontsize=8)
plt.tight_layout(); plt.show()
"""),
md(r"""
## The floor, with its interval

Per regime and model, medians over seeds of the final test loss and error, their
means over the last third (the floor estimate), the routing accuracy at the end,
and the slope of $\log$ test loss against $\log t$ over the last third.
"""),
code("""
summary = floor.regime_table(pairs, P.tail)
summary.columns = ["final loss", "tail loss", "final error", "tail error", "routing acc", "tail slope"]
summary.map(lambda v: float(f"{v:.3g}"))
"""),
code("""
rows_est = []
for regime, runs in pairs.items():
    moe = floor.per_seed_summary(runs["attention-free MoE"], P.tail)
    mot_s = floor.per_seed_summary(runs["MoT"], P.tail)
    rows_est.append({"regime": regime,
                     "MoE tail loss": str(mot.rates.mean_t(moe.tail_loss.to_numpy())),
                     "MoE tail error": str(mot.rates.mean_t(moe.tail_err.to_numpy())),
                     "MoE tail slope": str(mot.rates.mean_t(moe.tail_slope.to_numpy())),
                     "MoT tail slope": str(mot.rates.mean_t(mot_s.tail_slope.to_numpy())),
                     "MoE/MoT final loss": str(floor.log_ratio_estimate(moe.final_loss, mot_s.final_loss))})
pd.DataFrame(rows_est).set_index("regime")
"""),
md(r"""
Each entry is the mean over seeds of a per-seed quantity with its Student-t 95%
interval (the loss ratio as a geometric mean: the t interval of the per-seed log
ratios, mapped back). Each seed's tail slope is fitted to that seed's tail points.

## How the floor moves with σ_ξ and L

The noisy regime with one knob changed at a time, on the first `sweep_seeds`
seeds. Points are medians over seeds, bars the range over seeds. The centre
point ($\\sigma_\\xi$ = `noisy_sigma_xi`, $L=8$) is the main noisy run above, summarised on the same seeds.
"""),
code("""
centre = regimes["noisy"]
sw = {"sigma_xi": floor.sweep(P, "sigma_xi", reuse={centre.sigma_xi: pairs["noisy"]}),
      "L": floor.sweep(P, "L", reuse={centre.L: pairs["noisy"]})}
fig, axes = plt.subplots(1, 4, figsize=(13, 3.4))
for k, (field, df) in enumerate(sw.items()):
    for j, (q, lab) in enumerate([("tail_loss", "tail test loss"), ("tail_err", "tail test error")]):
        ax = axes[2 * k + j]
        for name, g in df.groupby("model", sort=False):
            s = g.groupby(field)[q]
            med = s.median()
            ax.errorbar(med.index, med.to_numpy(), yerr=[med - s.min(), s.max() - med], marker="o", capsize=3,
                        label=name, color=colors[name])
        ax.set_yscale("log" if q == "tail_loss" else "symlog", **({} if q == "tail_loss" else {"linthresh": 1e-3}))
        ax.set(xlabel=r"$\\sigma_\\xi$" if field == "sigma_xi" else "L", ylabel=lab, title=f"{lab} vs " + (r"$\\sigma_\\xi$" if field == "sigma_xi" else "L"))
        ax.legend(fontsize=8)
plt.tight_layout(); plt.show()
"""),
code("""
levers = pd.concat([df.assign(lever=field, value=df[field]) for field, df in sw.items()], ignore_index=True)
levers = levers.groupby(["lever", "value", "model"], sort=False)[
    ["final_loss", "tail_err", "final_err", "routing_acc", "tail_slope"]].median().unstack("model")
levers.columns = [f"{q} | {m}" for q, m in levers.columns]
levers.map(lambda v: float(f"{v:.3g}"))
"""),
md(r"""
(verdict-04_lemma1)=
## Verdict

Four rows per regime, each a statement about the population of seeds, with
these acceptance rules:

* *MoT below the attention-free MoE in test loss*: the geometric-mean ratio
  MoE / MoT of the final test losses (paired by seed), Student-t 95% interval of
  the per-seed log ratios; holds if the interval lies above 1, does not hold if it
  lies below 1.
* The other three are **pass/fail properties of a seed**, and each holds if the
  Wilson 95% interval of the share of passing seeds lies above `seed_share` = 0.5
  (the property is the typical outcome), does not hold if it lies below:
  * *the attention-free MoE plateaus*: the seed's log-log slope of its test loss
    over the last third of training lies in $[-0.2, 0.2]$ (a loss that changes by
    less than about 8% over that third, $1.5^{0.2}\approx1.08$; plain GD on
    separable data gives about $-1$);
  * *a nonzero error floor*: the seed's attention-free test error over the last
    third is at least 0.5% (10 of 2000 test samples);
  * *the MoT below the floor*: the seed's MoT final test error is below that floor
    by at least the same 0.5%.

*Why shares, and why these rules changed after the first replication.* Until
then rows 2-4 were a median and two means over seeds. In the default regime the
error is exactly 0 on almost every seed and a few percent on one or two, and a
t interval on such data swings with whether those seeds are drawn: the first
replication's two seed sets gave other verdicts than the defaults on both floor
rows. An error floor is a property of a training run, so the population
statement is how often a run has one. The rules were changed for every row at
once, before the replication shown in the scorecard was drawn, and a 36-seed
check outside the defaults and both replication sets (seeds 100-135) gave, in the
default regime, a floor on 1 seed of 36 and a plateau on 3; in the noisy regime a
floor on 36 of 36, a plateau on 32, and the MoT at least 0.5% below the floor on
15 (and below it at all on 23).

Lemma 1 as stated needs all four in one regime.
"""),
code("""
rows = []
for regime, runs in pairs.items():
    rows += floor.verdict_rows(runs, regime, P)
mot.book.show_verdicts(rows)
"""),
code("""
verdict_file = mot.book.write_verdicts(rows, "04_lemma1", P.out_dir)
"""),
md(r"""
## Discussion

**What was measured.** The MoT and the attention-free MoE, trained on the same
data from the same seeds with the same three-stage schedule, in two regimes and
in small sweeps of $\sigma_\xi$ and $L$. The verdict table reads:

* **Default regime (noise orthogonal to the signals): no floor.** Both models
  classify the whole test sample correctly from early in Stage I on, so there is
  no error floor to remove on almost every seed (rows 3 and 4). The MoT's expected loss
  ends far below the attention-free MoE's (row 1 holds, about two orders of
  magnitude), but the attention-free MoE's loss is still falling over the last third
  on almost every seed (row 2); its decay is that of plain GD on separable data,
  loss $\propto t^{-1}$, not a floor. What attention buys here is speed, not a
  lower attainable error.
* **Noisy regime (isotropic noise, $\sigma_\xi$ = `noisy_sigma_xi`, $\beta$ =
  `noisy_beta`): a real error floor, which the MoT does not clearly remove.**
  With noise along every direction, a one-neuron expert's output
  $\sum_k\sigma(\langle W,x_k\rangle)$ picks up the noise tokens' components along
  its own $v_{n^\star}$, cubed; some test samples are misclassified however long it
  trains. Its test error is flat over the last third at a few percent on every
  seed (row 3), and its loss is flat too on most seeds (row 2; the small positive
  slope is the test loss creeping up as the training set is fitted). Whether the
  MoT gets below that floor is close to a coin toss per seed: on the 36-seed check
  its error was at least 0.5% below the floor on 15 seeds, with a mean difference
  of about 0, so row 4 stays inconclusive at any seed count this chapter can
  afford (its note says which way it leans on these seeds). Stage II raises the
  label token's attention weight, which scales the signal but not the noise
  tokens; in this regime that does not clearly lower the error. The
  MoT's test *loss*, however, is *higher* than the attention-free MoE's (row 1
  does not hold): it rises through Stage II, because each expert's $d\times d$
  key-query matrix is fitted to the few dozen training samples routed to it and
  the remaining errors become confident ones. So in this regime the floor is
  real, and the MoT does not clearly remove it, in error or in expected loss.
* **Sweeps.** In the noisy regime the floor rises with $\sigma_\xi$ and with
  $L$ (more noise tokens). In the default run the MoT's error is at or below the
  attention-free MoE's at every sweep point except the low-noise end, where both
  are nearly error-free; at the high-noise end routing itself degrades for both
  models (routing accuracy below 0.95) and misrouted samples dominate both errors,
  so the gap between them shrinks relative to the floor. The MoT's loss is above
  the attention-free MoE's at every sweep point.

**What was tried.** The search for a regime with a floor: 3 seeds, the default
schedule, medians over seeds. It takes about a minute on a 2-core machine, which
would more than double this chapter's run time, so the table is read from `data/lemma1_levers.csv`, which
`python -m mot_lib levers` rewrites (`mot_lib.floor.explore_levers`); a test
checks that the file matches the lever list in `mot_lib.floor.LEVERS`.
"""),
code("""
lv = floor.load_levers()
shown = lv[["noise", "sigma_xi", "beta", "L", "n_train"]].copy()
for q, lab in [("final_loss", "loss"), ("final_err", "error")]:
    for m, short in [("MoT", "MoT"), ("attention-free MoE", "MoE")]:
        shown[f"{short} {lab}"] = lv[f"{q} | {m}"].map(lambda v: f"{v:.3g}")
shown["routing acc (MoT / MoE)"] = [f"{a:.3g} / {b:.3g}" for a, b in
                                    zip(lv["routing_acc | MoT"], lv["routing_acc | attention-free MoE"])]
shown.rename(columns={"sigma_xi": "σ_ξ", "beta": "β"})
"""),
md(r"""
Isotropic noise alone ($\beta=1$) breaks routing for both models, and the errors
are then routing errors, which attention inside the experts cannot fix; a larger
$\beta$ restores routing, and only then does the MoT's attention lower the error.
Fewer training samples and more noise tokens make routing worse for both models.
Two flat losses in the table are not floors: at losses of $10^{-9}$ and below,
Stage III's plain GD barely moves (its gradient is as small as the loss), so a
flat curve there is an optimizer stall with zero test error.

**What differs from the paper.** The paper's attention-free floor is stated for
its data model and constants, which we do not have. In ours, the floor exists
only when noise lies along the signal directions (isotropic noise) and routing
is kept intact by a louder class token; there the MoT lowers the error but keeps
a floor of its own and has a higher test loss. With the book's default
orthogonal noise there is no floor at all: both models reach zero test error and
the MoT's advantage is a faster-falling loss. With `quick=True` (less data, half
the schedule) the verdicts can differ; they are a smoke test, not a result.
"""),
]
write("notebooks/04_lemma1.ipynb", cells)
