import sys; sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2]))
from tools.nbwrite import md, code, write
cells = [
md(r"""
# The paper's experiments: real images and text

The paper checks its theory on real data {cite:p}`li2025mot`: CIFAR-10 and CIFAR-100 *modified* by
replacing some image patches with noise, and a text classification task, with small
Vision-Transformer experts against a multi-head transformer and an attention-free MoE. It reports

:::{prf:remark} The paper's empirical claims (our paraphrase)
:label: real-data-claims
1. The MoT converges faster than the single transformer and the attention-free MoE.
2. Its final test error is lower than both.
3. The gate uses few experts on the easier task (about 2 of 5 on CIFAR-10) and most on the harder
   one (about 8 of 12 on CIFAR-100).
:::

**What is ours.** The paper's architectures, noise model and hyperparameters are not public to us,
so every choice below is this companion's own (all of them are parameters, documented in
`mot_lib.realdata`):

* *Tokens.* An image is cut into non-overlapping `patch` x `patch` patches, each flattened into a
  token. A text is lower-cased and split into words; the vocabulary comes from the training split
  only; each word id maps to a fixed (seeded, untrained) random vector in $\mathbb{R}^{32}$.
* *Noise.* In each image a share `noise_share` of the patches, chosen at random, is replaced by
  Gaussian noise with the training images' per-pixel mean and standard deviation. The pattern is
  fixed by `data_seed`: like the paper's modified CIFAR it is one data set, and the seeds vary the
  initialisation, the minibatch order and the gate's exploration.
* *MoT.* $M$ experts, each a one-layer ViT: its own linear token embedding, learnt positions, one
  self-attention layer, a GELU MLP (both residual, with parameter-free pre-LayerNorm), mean pooling
  and a linear head to class logits. A linear gate reads the *mean token* of a sample (the
  sequence-level routing of the theory, $h_m(X)=\langle\theta_m,\frac1L\sum_l x_l\rangle$), routes each
  sample to $\arg\max_m(h_m+r_m)$ with exploration $r_m\sim U[0,\lambda]$ during training, and scales
  the chosen expert's logits by its gate probability, so the gate learns. Query and key matrices start
  small, so attention starts near uniform (the analogue of the theory's $W_{KQ}\approx0$).
* *Three stages, in epochs.* Stage I trains everything but the attention layer, Stage II only the
  attention layer, Stage III the rest again; the gate trains throughout. `MoT (joint)` trains
  everything from the start (the one-stage control the reviewers asked for).
* *Baselines.* A single one-layer ViT with `heads_single` heads, and an attention-free MoE whose
  experts are the MoT's experts without attention (a per-token MLP, then mean pooling). Both are
  widened until their parameter count is as close as possible to the MoT's total (all experts and the
  gate). The shared-attention MoE transformer (one attention, routed MLP experts) the reviewers asked
  for is not in this book's engine yet, so it is not run here.
* *Training.* Cross-entropy, minibatch Adam with step `lr` (experts and baselines) and `lr_gate`
  (gate), float32, batch `batch_size`. Seeds and experts are tensor dimensions.

**What the book runs.** No data is downloaded: by default the chapter runs on scikit-learn's bundled
8x8 digits (1797 images, 10 classes, a 75/25 split), cut into four 4x4 patches, with one of the four
replaced by noise (`noise_share=0.25`). That keeps the chapter within its time budget on a laptop
CPU, and the noise makes the task hard enough that the models differ. CIFAR and text run from files
you name:

```
python -m mot_lib run 07_real_data -p dataset cifar10 -p data_dir PATH      # M=5 (the paper's)
python -m mot_lib run 07_real_data -p dataset cifar100 -p data_dir PATH     # M=12 (the paper's)
python -m mot_lib run 07_real_data -p dataset cifar10+cifar100 -p data_dir PATH   # both, and row 4
python -m mot_lib run 07_real_data -p dataset text -p text_csv FILE.csv
```

`data_dir` is a folder in the official CIFAR python format (`data_batch_1`..`data_batch_5`,
`test_batch`, `batches.meta`; or `train`, `test`, `meta`), or its parent. A CIFAR run is a GPU job
(`device="auto"` picks a GPU when there is one): with width 64 and batch 512 the MoT trained at about
150,000 images/s on one H100 (two seeds at once, 2 s for three CIFAR-10-sized epochs), against a few
hundred images/s on a busy 2-core CPU, i.e. more than a minute per epoch and seed (measured with
`benchmarks/bench_realdata.py` on generated CIFAR-format data).
"""),
code("""
import numpy as np
import pandas as pd
import matplotlib.pyplot as plt
import torch
import mot_lib as mot
from mot_lib import plots
from mot_lib import realdata as rd
plots.setup()
torch.set_num_threads(1)   # these models are small: one intra-op thread is faster than two on a CPU
_before = set(globals())
""", tags=["remove-input"]),
code("""
# Parameters (papermill). None means the data set's preset (mot_lib.realdata.PRESETS).
seeds = list(range(10))      # a batch dimension; the verdicts are statements about this population
dataset = "digits"           # digits | cifar10 | cifar100 | cifar10+cifar100 | text
data_dir = None              # CIFAR: folder of the official python pickles (or its parent)
text_csv = None              # text: CSV with the header label,text
text_test_csv = None         # text: optional test CSV (else a seeded 80/20 split of text_csv)
device = "auto"              # auto (CUDA if available, else CPU) | cpu | cuda
M = None                     # experts (preset: 5; CIFAR-100: 12)
patch = None                 # patch side in pixels (preset: 4)
width = None                 # experts' token width (preset: digits 16, CIFAR 64, text 32)
epochs = None                # preset: digits 15, CIFAR 20, text 20
T1 = None                    # end of Stage I in epochs (None: epochs // 3)
T2 = None                    # end of Stage II in epochs (None: 2 * epochs // 3)
mlp_ratio = 2                # hidden width of the expert MLP: mlp_ratio x token width
heads_single = 4             # attention heads of the single ViT
gate = "mean"                # the gate reads the mean token (mean) or all tokens (flat)
batch_size = 64
lr = 0.01                    # Adam step of the experts and the baselines
lr_gate = 0.01               # Adam step of the gate
lam = 1.0                    # exploration noise U[0, lam] on the gate scores during training
noise_share = 0.25           # share of patches replaced by noise in the main runs
noise_shares = [0.0, 0.25, 0.5]   # the noise sweep
target_acc = None            # epochs-to-target level (preset: digits 0.75, CIFAR-10 0.5, CIFAR-100 0.2)
used_share = 0.5             # an expert counts as used if it receives at least used_share / M of the test samples
share_pass = 0.5             # a per-seed property holds if its share of seeds lies above this
data_seed = 0                # the split and the noise pattern
seq_len = 64                 # text: tokens per document (padded or truncated)
max_vocab = 5000             # text: vocabulary size, from the training split only
text_dim = 32                # text: width of the fixed random token embedding
max_train = None             # keep only the first max_train training samples (None: all)
eval_chunk = 4096            # test samples per forward pass at evaluation (memory, not results)
quick = False                # half the epochs and the first 4 seeds
out_dir = None
""", tags=["parameters"]),
code("""
P = mot.book.chapter_params("07_real_data", globals(), _before)   # fails here, naming any bad parameter
DEV = rd.resolve_device(P.device)
results = {ds: rd.run_dataset(P, ds, DEV) for ds in P.datasets()}   # every file is checked before training
for ds, res in results.items():
    d, c = res["data"], res["cfg"]
    print(f"{ds}: {d.info['n_train']} training and {d.info['n_test']} test samples, {d.n_classes} classes, "
          f"{d.L} tokens of dimension {d.p}; M={c.M}, width={c.width}, epochs={c.epochs} "
          f"(Stage I to {c.T1}, Stage II to {c.T2}), batch {c.batch_size}, seeds {len(P.run_seeds())}")
""", tags=["remove-input"]),
md(r"""
## The models and their sizes

Parameter counts per model (one seed), the widths that make the baselines as large as the MoT, and
a summary of the main runs (`noise_share` = 0.25 by default): the median over seeds of the final test
error and loss, the median number of epochs to reach the target test accuracy, and how many seeds
reach it at all.
"""),
code("""
for ds, res in results.items():
    t = rd.summary_table(res["runs"], res["target"])
    for c in t.columns:
        if t[c].dtype.kind == "f":
            t[c] = t[c].map(lambda v: float(f"{v:.3g}"))
    print(ds)
    display(t)
""", tags=["hide-input"]),
md(r"""
## Test accuracy and loss per epoch

Lines are medians over seeds, bands the range over seeds. For the three-stage MoT the shading marks
Stages I, II and III (in epochs); the dotted line is the target accuracy.
"""),
code("""
colors = {"MoT": "C0", "MoT (joint)": "C9", "single ViT": "C1", "attention-free MoE": "C3"}
for ds, res in results.items():
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    for name, run in res["runs"].items():
        plots.seed_band(axes[0], run.wide("test_acc"), name, color=colors[name])
        plots.seed_band(axes[1], run.wide("test_loss"), name, color=colors[name])
    c = res["cfg"]
    for ax in axes:
        for name, (a, b) in {"I": (0, c.T1), "II": (c.T1, c.T2), "III": (c.T2, c.epochs)}.items():
            if b > a:
                ax.axvspan(a + 0.5, b + 0.5, color=plots.STAGE_COLORS[name], zorder=0)
        ax.set_xlabel("epoch")
    axes[0].axhline(res["target"], color="0.4", ls=":", lw=1)
    axes[0].set(ylabel="test accuracy", title=f"{ds}: test accuracy")
    axes[1].set(ylabel="test loss", title=f"{ds}: test loss (cross-entropy)")
    axes[0].legend(fontsize=8, loc="lower right")
    plt.tight_layout(); plt.show()
""", tags=["hide-input"]),
md(r"""
## Epochs to the target accuracy

Per seed, the first epoch whose test accuracy reaches the target (a seed that never reaches it is
drawn at the right edge, marked "never").
"""),
code("""
for ds, res in results.items():
    E = res["cfg"].epochs
    fig, ax = plt.subplots(figsize=(7, 2.8))
    for k, (name, run) in enumerate(res["runs"].items()):
        e = rd.epochs_to_target(run, res["target"]).to_numpy()
        y = np.full(len(e), k) + np.linspace(-0.2, 0.2, len(e))
        ax.scatter(np.where(np.isfinite(e), e, E + 2), y, color=colors[name], s=18)
    ax.set_yticks(range(len(res["runs"])), list(res["runs"]))
    ticks = list(range(1, E + 1, max(1, E // 8)))
    ax.set_xticks(ticks + [E + 2], [str(i) for i in ticks] + ["never"])
    ax.axvline(E + 1, color="0.6", lw=0.8)
    ax.set(xlabel="epoch", title=f"{ds}: epochs to test accuracy {res['target']:g} (one dot per seed)")
    plt.tight_layout(); plt.show()
""", tags=["hide-input"]),
md(r"""
## Where the gate sends each class

The class-to-expert dispatch matrix of the MoT on the test set at the end of training (share of each
class's test samples sent to each expert), for the first seed, and the number of experts used per
seed (an expert is *used* if it receives at least `used_share`/M of the test samples, i.e. half an
even share by default).
"""),
code("""
for ds, res in results.items():
    run = res["runs"]["MoT"]
    D = run.dispatch[0] / run.dispatch[0].sum(1, keepdims=True)
    used = rd.experts_used(run.dispatch, P.used_share)
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), gridspec_kw={"width_ratios": [1.4, 1]})
    names = res["data"].class_names
    plots.heatmap(axes[0], D, [f"e{m}" for m in range(D.shape[1])], names if len(names) <= 20 else False,
                  title=f"{ds}: MoT dispatch, seed {run.seeds[0]}", vmin=0, vmax=1)
    axes[0].set(xlabel="expert", ylabel="class")
    M_ = run.dispatch.shape[2]
    axes[1].hist(used, bins=np.arange(0.5, M_ + 1.5), color="C0", rwidth=0.8)
    axes[1].set(xlabel="experts used", ylabel="seeds", title=f"{ds}: experts used of M={M_}", xlim=(0.5, M_ + 0.5))
    plt.tight_layout(); plt.show()
    print(f"{ds}: experts used per seed: {used.tolist()}")
""", tags=["hide-input"]),
md(r"""
## The noise sweep

Final test error against the share of replaced patches, for the MoT (three stages), the single ViT
and the attention-free MoE; points are medians over seeds, bars the range over seeds. The main runs'
share is reused, not rerun.
"""),
code("""
for ds, res in results.items():
    sw = res["sweep"]
    fig, ax = plt.subplots(figsize=(6, 3.4))
    for k, (name, g) in enumerate(sw.groupby("model", sort=False)):
        s = g.groupby("noise_share").final_test_error
        med = s.median()
        x = med.index.to_numpy() + (k - 1) * 0.008
        ax.errorbar(x, med.to_numpy(), yerr=[med - s.min(), s.max() - med], marker="o", capsize=3,
                    label=name, color=colors[name])
    ax.set(xlabel="noise_share (share of patches replaced)", ylabel="final test error", title=f"{ds}: noise sweep")
    ax.legend(fontsize=8)
    plt.tight_layout(); plt.show()
    tab = sw.groupby(["noise_share", "model"], sort=False).final_test_error.median().unstack("model")
    display(tab.map(lambda v: float(f"{v:.3g}")))
""", tags=["hide-input"]),
md(r"""
(verdict-07_real_data)=
## Verdicts

Each row is a statement about the population of seeds, decided by a rule fixed before looking:

* *The MoT's final test error is below the single ViT's* (and *below the attention-free MoE's*): the
  mean over seeds of the paired difference (baseline's final test error minus the MoT's, same seed)
  with a Student-t 95% interval. Holds if the interval lies above 0, does not hold if it lies below 0.
  Pairing by seed removes the seed-to-seed spread the two runs share.
* *The MoT reaches the target accuracy in fewer epochs than the single ViT*: per seed, pass if the MoT
  reaches it in strictly fewer epochs (or the single ViT never does while the MoT does); the share of
  passing seeds with a Wilson 95% interval against `share_pass` = 0.5: the MoT is faster on most
  seeds. Holds if the interval lies above 0.5, does not hold if below. The target (0.75 on digits at
  the default noise) was set from a pilot run as a level the single ViT and the attention-free MoE
  reach within the budget; a seed where the MoT never reaches it counts as a failure.
* *The gate uses more experts on CIFAR-100 than on CIFAR-10* (only when both CIFAR sets are run,
  `dataset="cifar10+cifar100"`): the mean over seeds of the paired difference in experts used, with a
  Student-t 95% interval; holds if it lies above 0. The presets make this possible: M=12 experts on
  CIFAR-100 against M=5 on CIFAR-10 (the paper's), and "used" counts experts with at least half an
  even share, so up to 12 against up to 5.
* *A tie is not a win; a model that learned nothing decides nothing.* "Above 0" and "above 0.5" exclude
  the value itself: an interval that reaches it is not inside the accepted range (a paired difference of
  exactly 0 on every seed does not hold). A row is inconclusive, with the reason in its note, when a model
  it compares learned nothing: its median final test error over seeds is not below the trivial error (the
  lower of chance, 1 − 1/classes, and always answering the training split's most frequent class) by at
  least `chance_margin` = 0.05 (`rd.CHANCE_MARGIN`, part of the rule: five points of error). A data set
  with fewer than two classes in either split, or a class of the test split with fewer than 2 training
  samples, stops before training with a message naming the file or parameter.
"""),
code("""
rows = []
for ds, res in results.items():
    rows += rd.verdict_rows(res["runs"], res["target"], P.share_pass, ds)
if set(results) == {"cifar10", "cifar100"}:
    rows.append(rd.used_verdict_row(rd.experts_used(results["cifar10"]["runs"]["MoT"].dispatch, P.used_share),
                                    rd.experts_used(results["cifar100"]["runs"]["MoT"].dispatch, P.used_share)))
_ = mot.book.write_verdicts(rows, "07_real_data", P.out_dir)
""", tags=["remove-input"]),
code("""
mot.book.show_verdicts(rows)
""", tags=["hide-input"]),
md(r"""
## Discussion

**What was measured.** On the default run (digits, one of the four patches of every image replaced
by noise, 10 seeds, 15 epochs) the MoT has the *highest* final test error of the four models, and
none of the paper's three qualitative claims holds: its error is above the single ViT's and above
the attention-free MoE's on every seed (both paired intervals lie below 0), and it never reaches the
target accuracy within the budget, while the single ViT reaches it in about 4 to 5 epochs. The
noise sweep keeps the same order at every share, including the unmodified data (`noise_share=0`).
The same three verdicts come out on a second, disjoint set of seeds (10 to 19; the scorecard shows
the replication beside the book's verdicts).

**Why, as far as we can tell.** The gate reads the *mean token*, the theory's sequence-level routing.
For an image that is the average of its patches, which carries little about the class. The gate still
learns something (in the dispatch matrix a few classes go mostly to one expert), but most classes are
spread over two or three experts and 4 to 5 of the 5 experts are used, so each expert trains on
roughly a fifth of the data, without a clean class split that would make its subproblem easier. Joint
training is no better than the three stages, so the schedule is not the cause. The attention-free
MoE beats the MoT at the same parameter count: with four tokens attention has little to do, and the
parameters it costs go into a wider MLP in the attention-free experts. In a pilot (8 seeds, same
settings) we also let the gate read all tokens (`gate="flat"`); routing then collapsed onto one
expert on 7 of 8 seeds and the MoT's error (median 0.19) was still above the single ViT's (0.17).
That pilot is not a verdict; rerun it with `-p gate flat`.

**What differs from the paper.** The paper runs CIFAR-10 and CIFAR-100 with its own ViT experts,
noise and hyperparameters, which we do not have; it reports about 2 of 5 experts used on CIFAR-10.
The book executes on the small digits set so that it runs anywhere in about a minute; a 4-token
image is a weak test of attention, and our result says nothing about larger images. The CIFAR and text
paths are implemented and tested on small fixture folders, and the CIFAR path was run once on a GPU
at full size on generated random images (speed and plumbing only, the labels are random), but no real
CIFAR run is part of this book: no data is downloaded. With real CIFAR folders,
`dataset="cifar10+cifar100"` also decides whether the gate uses more experts on CIFAR-100. With
`quick=True` (half the epochs, 4 seeds) the verdicts are a smoke test, not a result.
"""),
]
write("notebooks/07_real_data.ipynb", cells)
