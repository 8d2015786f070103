"""The claim registry: every row the book decides, declared once, with its statement, its rule and its kind.

A chapter computes its rows (``stats.population_row``, ``beyond.share_row``), each with an ``id``; it writes them
through ``verdicts.write_verdicts``, which refuses a row whose id is not declared here for that chapter, whose
population test is not the declared one, or that lacks an id.  So a row cannot exist without a declared rule and
kind, and the scorecard counts rows by kind:

* ``claim``: a test of a statement of the paper, run in a regime that satisfies what the statement assumes;
  only these decide the statement's headline verdict (``headlines``) and the scorecard's count;
* ``check``: true or false by construction (an identity of the optimizer or of the initialisation), or a
  sanity check of the engine; shown in its chapter with the reason (``why``), never counted;
* ``instantiation``: a property of a setting this book chose that the statement does not cover (Lemma 1 in a
  regime with no floor, Theorem 1 under an optimizer the paper does not state); shown with that label, counted
  neither for nor against the paper;
* ``proxy``: the paper's experiment on a stand-in data set (digits); counted apart until the paper's own data run;
* ``beyond``: a measured answer to a question the paper does not ask (the part "Beyond the paper").

The rules are frozen by ``registry_hash``: the hash of these declarations, of the headline rule and of every
verdict chapter's default parameters (its seeds, grids and thresholds).  The replication's manifest records it;
a replication computed under another hash is stale (``replication.replication_stale``), and a test fails.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields

from ..stats import SEEDWISE_TEST

KINDS = ("claim", "check", "instantiation", "proxy", "beyond")
#: what each kind means, as the book says it (the scorecard's section headings and the chapters' labels)
KIND_TEXT = {
    "claim": "a test of the paper's statement, in a regime that satisfies what the statement assumes",
    "check": "true or false by construction, or a sanity check of the engine: shown, never counted",
    "instantiation": "a property of a setting this book chose that the statement does not cover: counted neither "
                     "for nor against the paper",
    "proxy": "the paper's experiment on a stand-in data set: counted apart until the paper's own data are run",
    "beyond": "a measured answer to a question the paper does not ask",
}

#: The paper's statements, in the order of the book, with the chapter that tests each; ``headlines`` gives one verdict
#: per statement.
STATEMENTS = {
    "prop1": ("Proposition 1", "02_proposition1",
              "In Stage I each expert specializes in one class: the gap between its own class's classification "
              "signal and every other's reaches $\\Theta(\\sigma_0^{0.5})$ after $T_1 = O(\\eta^{-1}\\sigma_0^{-0.5} M)$ "
              "steps, and the gate then routes each class to its specialists."),
    "prop2": ("Proposition 2", "03_proposition2",
              "In Stage II each expert's attention score on its own class's classification signal, "
              "$p_{v^*,v^*}$, becomes $\\Theta(1)$ and every other score stays $O(\\sigma_0)$."),
    "lemma1": ("Lemma 1", "04_lemma1",
               "An attention-free MoE (one-neuron FFN experts) keeps an irreducible error floor, which the MoT's "
               "attention removes."),
    "theorem1": ("Theorem 1", "05_theorem1",
                 "With Stage III by gradient descent the MoT's expected loss reaches $\\epsilon$ after "
                 "$T_2 + O(\\log 1/\\epsilon)$ iterations, where a single transformer needs $O(1/\\epsilon)$ "
                 "(a rate the paper cites from Yang et al. 2025)."),
    "mechanism": ("The mechanism", "06_mechanism",
                  "Specialization removes the gradient conflict between classes, so each expert's Stage III "
                  "problem is strongly convex."),
    "experiments": ("The experiments", "07_real_data",
                    "On modified CIFAR-10/100 and text, the MoT converges faster and to a lower error than a "
                    "single transformer and an attention-free MoE."),
}

#: The part "Beyond the paper": the question each chapter answers.
QUESTIONS = {
    "fair": ("08_fair_comparison", "Does the MoT's advantage survive a fair comparison: against the standard "
             "shared-attention MoE and baselines of the same size, each with a tuned step, per iteration and per FLOP?"),
    "schedule": ("09_training_schedule", "Does training need three stages, and does an expert commit to a class "
                 "before the gate commits to an expert?"),
    "predecessor": ("10_predecessor", "Does this book's engine reproduce the predecessor MoE theory's published "
                    "table, and do its experts gain from attention there?"),
}

#: How a statement's headline verdict is computed from its ``claim`` rows (declared, and hashed with the rows).
HEADLINE_RULE = ("holds when it has claim rows and every one holds; does not hold when any claim row does not "
                 "hold; inconclusive otherwise; not tested when it has no claim row")


@dataclass(frozen=True)
class Rule:
    """What a row measures and how it decides: the quantity, the population test over seeds, the accepted range
    (in words, naming the chapter parameters it reads), and those parameters' names."""
    quantity: str
    test: str
    accepted: str
    params: tuple = ()


@dataclass(frozen=True)
class Row:
    """One declared row: its id, chapter, kind, the statement it tests (a key of ``STATEMENTS``, or of
    ``QUESTIONS`` for a beyond row), its rule, and for a row that is not a ``claim`` why it is of its kind."""
    id: str
    chapter: str
    kind: str
    statement: str
    rule: Rule
    why: str = ""
    optional: bool = False      # written only by some runs (e.g. a real-data set the user names)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"row {self.id}: kind {self.kind!r} is not one of {KINDS}")
        if self.statement not in STATEMENTS and self.statement not in QUESTIONS:
            raise ValueError(f"row {self.id}: statement {self.statement!r} is not one of "
                             f"{list(STATEMENTS) + list(QUESTIONS)}")
        if (self.kind == "beyond") != (self.statement in QUESTIONS):
            raise ValueError(f"row {self.id}: a beyond row answers a question of QUESTIONS, and only it does")
        if self.kind != "claim" and self.kind != "beyond" and not self.why:
            raise ValueError(f"row {self.id}: a {self.kind} row says why it is one (why=...)")


# ---------------------------------------------------------------------------------------------- the population tests
SLOPE = SEEDWISE_TEST.format(what="log-log slope")
SLOPE_S0 = SEEDWISE_TEST.format(what="log-log slope in sigma0")
SHARE = "share of seeds passing, Wilson 95%"
GROWTH = SEEDWISE_TEST.format(what="growth exponent k")
RATIO = "geometric mean over seeds of the per-seed ratio, Student t 95% (log scale)"
MEAN_COS = "mean over seeds of the per-seed cosine, Student t 95%"
MEAN_DIFF = "mean over seeds of the per-seed difference, Student t 95%"
PAIRED_ERR = "mean over seeds of (baseline error - MoT error), Student t 95%"
SHARE_WHERE = "share of seeds where it does, Wilson 95%"
BEYOND_SHARE = "share of seeds where {what} ({k} of {n}), Wilson {level}%, against more than {seed_share}"
TABLE_MEAN = "mean over the committed table's {seeds} (computed once), Student t {level}%"
PAIRED_ACC = "mean paired difference over seeds, Student t {level}%"
USED = "mean over seeds of (experts used on CIFAR-100 - on CIFAR-10), Student t 95%"


#: The configurations the beyond chapters decide rows for (the registry sits below ``experiments`` and does not import
#: it; a test checks these against ``experiments.fair.LEVELS`` and ``experiments.predecessor_table``).
FAIR_LEVELS = (4, 8, 16)
#: (setting, model, whether a dispatch entropy is published) of the predecessor's published table, in its order
PREDECESSOR_PUBLISHED = ((1, "cubic MoE", True), (1, "linear MoE", True), (1, "single linear CNN", False),
                         (1, "single cubic CNN", False), (2, "cubic MoE", True), (2, "linear MoE", False),
                         (3, "cubic MoE", True), (3, "linear MoE", False), (4, "cubic MoE", True),
                         (4, "linear MoE", False))
#: (loss, its code in the table) in the order the chapter writes the attention rows
PREDECESSOR_LOSSES = (("logistic loss", "logistic"), ("predecessor's loss", "double_softmax"))


def _rows() -> list[Row]:
    R = []

    def add(id, chapter, kind, statement, quantity, test, accepted, params=(), why="", optional=False):
        R.append(Row(id, chapter, kind, statement, Rule(quantity, test, accepted, tuple(params)), why, optional))

    # ---------------------------------------------------------------- Proposition 1 (chapter 02)
    c = "02_proposition1"
    ngd = ("normalized GD in Stage I, the predecessor MoE theory's choice and the book's default; the statement "
           "names plain GD, whose rows (_gd) are the claims")
    add("prop1.routing", c, "instantiation", "prop1", "share of seeds whose gate, at the end of a normalized-GD Stage "
        "I, covers every class and routes at least route_min of the test samples to their class's specialists", SHARE,
        "interval above seed_share", ("route_min", "seed_share"), why=ngd)
    add("prop1.gap_at_tspec", c, "instantiation", "prop1", "log-log slope of the gap at t_spec (every class has a "
        "specialist) against sigma0, at the normalized-GD step eta1", SLOPE,
        "interval inside [0.25, 0.75] (the stated 0.5 +- 0.25)", ("sigma0s", "eta1"), why=ngd)
    add("prop1.gap_at_stated_T1", c, "check", "prop1", "log-log slope of the gap read at the stated "
        "T1 = c eta^-1 sigma0^-0.5 M against sigma0", SLOPE, "interval inside [0.25, 0.75]", ("sigma0s", "eta1"),
        why="fixed by the optimizer: under normalized GD the gap grows like eta t (the chapter's table shows "
            "gap/(eta t) between 0.92 and 1.04), so read at T1 proportional to sigma0^-0.5 its slope is forced "
            "near -0.5, whatever the paper says")
    add("prop1.gap_at_tspec_small_eta", c, "instantiation", "prop1", "log-log slope of the gap at t_spec against "
        "sigma0, at the smaller normalized-GD step small_eta", SLOPE, "interval inside [0.25, 0.75]",
        ("sigma0s", "small_eta"), why=ngd)
    add("prop1.steps_sigma0", c, "instantiation", "prop1", "log-log slope of t_spec against 1/sigma0 (normalized GD)",
        SLOPE, "interval at or below 0.75 (the stated 0.5 + 0.25)", ("sigma0s", "eta1"), why=ngd)
    add("prop1.steps_M", c, "instantiation", "prop1", "log-log slope of t_spec against M (normalized GD)", SLOPE,
        "interval at or below 1.25 (the stated 1 + 0.25)", ("Ms",), why=ngd)
    add("prop1.steps_eta", c, "instantiation", "prop1", "log-log slope of t_spec against 1/eta (normalized GD)", SLOPE,
        "interval at or below 1.25 (the stated 1 + 0.25)", ("etas",), why=ngd)
    add("prop1.routing_gd", c, "claim", "prop1", "share of seeds whose gate, at the end of a plain-GD Stage I of gd_T1 "
        "steps, covers every class and routes at least route_min of the test samples to their class's specialists",
        SHARE, "interval above seed_share", ("route_min", "seed_share", "gd_eta1", "gd_T1"))
    add("prop1.gap_at_tspec_gd", c, "claim", "prop1", "log-log slope of the gap at t_spec against sigma0, Stage I by "
        "plain GD at gd_eta1", SLOPE, "interval inside [0.25, 0.75] (the stated 0.5 +- 0.25)",
        ("gd_sigma0s", "gd_eta1", "gd_T1"))
    add("prop1.steps_sigma0_gd", c, "claim", "prop1", "log-log slope of t_spec against 1/sigma0, Stage I by plain GD "
        "at gd_eta1", SLOPE, "interval at or below 0.75 (the stated 0.5 + 0.25)", ("gd_sigma0s", "gd_eta1", "gd_T1"))
    add("prop1.steps_eta_gd", c, "claim", "prop1", "log-log slope of t_spec against 1/eta, Stage I by plain GD",
        SLOPE, "interval at or below 1.25 (the stated 1 + 0.25)", ("gd_etas", "gd_T1"))

    # ---------------------------------------------------------------- Proposition 2 (chapter 03)
    c = "03_proposition2"
    add("prop2.own_score", c, "claim", "prop2", "log-log slope of p(v*, v*) at T2 against sigma0 (normalized-GD "
        "Stage II)", SLOPE_S0, "interval inside [-0.25, 0.25] (Theta(1))", ("sigma0s",))
    add("prop2.other_scores", c, "claim", "prop2", "log-log slope of the largest other |p(mu, nu)| at T2 against "
        "sigma0 (normalized-GD Stage II)", SLOPE_S0, "interval at or above 0.75 (O(sigma0))", ("sigma0s",))
    add("prop2.other_scores_init", c, "check", "prop2", "log-log slope of the largest other |p(mu, nu)| at "
        "initialisation against sigma0", SLOPE_S0, "interval at or above 0.75", ("sigma0s",),
        why="the initialisation itself: W_KQ is drawn with standard deviation sigma0/sqrt(d), so every score at "
            "initialisation is sigma0 times a draw that does not depend on sigma0")
    add("prop2.other_change", c, "claim", "prop2", "log-log slope of the change of the other entries over Stage II "
        "against sigma0 (normalized GD)", SLOPE_S0, "interval at or above 0.75 (O(sigma0))", ("sigma0s",))
    mean_pool = ("the paper's readout is not public; the book's expert sums over queries (query_pool = 'sum'), "
                 "which weighs the class token's query, where the largest other entry sits, like every other; the "
                 "mean over queries is shown beside it, not counted")
    add("prop2.own_score_mean", c, "instantiation", "prop2", "log-log slope of p(v*, v*) at T2 against sigma0 "
        "(normalized-GD Stage II, the experts averaging over queries)", SLOPE_S0,
        "interval inside [-0.25, 0.25] (Theta(1))", ("sigma0s",), why=mean_pool)
    add("prop2.other_scores_mean", c, "instantiation", "prop2", "log-log slope of the largest other |p(mu, nu)| at "
        "T2 against sigma0 (normalized-GD Stage II, the experts averaging over queries)", SLOPE_S0,
        "interval at or above 0.75 (O(sigma0))", ("sigma0s",), why=mean_pool)
    add("prop2.own_score_gd", c, "claim", "prop2", "log-log slope of p(v*, v*) at T2 against sigma0 (plain-GD "
        "Stage II, step gd_sweep_eta)", SLOPE_S0, "interval inside [-0.25, 0.25] (Theta(1))", ("sigma0s", "gd_sweep_eta"))
    add("prop2.other_scores_gd", c, "claim", "prop2", "log-log slope of the largest other |p(mu, nu)| at T2 against "
        "sigma0 (plain-GD Stage II)", SLOPE_S0, "interval at or above 0.75 (O(sigma0))", ("sigma0s", "gd_sweep_eta"))

    # ---------------------------------------------------------------- Lemma 1 (chapter 04)
    c = "04_lemma1"
    no_floor = ("the default regime has noise orthogonal to the signals, so the attention-free MoE has no floor to "
                "find (it reaches about 0 loss); Lemma 1 is about a regime with a floor, the noisy one")
    tuned = ("af_eta3_grid", "tune_seeds")     # the attention-free MoE's own Stage III step, chosen on tune_seeds
    af = "attention-free MoE (at its own Stage III step, chosen on tune_seeds from af_eta3_grid)"
    for regime, kind in (("default", "instantiation"), ("noisy", "claim")):
        why = no_floor if kind == "instantiation" else ""
        add(f"lemma1.{regime}.mot_loss", c, kind, "lemma1", f"[{regime}] per-seed ratio of the {af}'s final test "
            "loss to the MoT's", RATIO, "interval above 1", tuned, why)
        add(f"lemma1.{regime}.moe_plateau", c, kind, "lemma1", f"[{regime}] share of seeds whose {af} has a tail "
            "slope of log loss against log t within +-flat_tol", SHARE, "interval above seed_share",
            ("flat_tol", "tail", "seed_share") + tuned, why)
        add(f"lemma1.{regime}.moe_floor", c, kind, "lemma1", f"[{regime}] share of seeds whose {af} has a tail test "
            "error of at least min_floor_err", SHARE, "interval above seed_share",
            ("min_floor_err", "tail", "seed_share") + tuned, why)
        add(f"lemma1.{regime}.mot_below_floor", c, kind, "lemma1", f"[{regime}] share of seeds whose MoT final test "
            f"error is at least min_floor_err below the {af}'s tail error", SHARE,
            "interval above seed_share", ("min_floor_err", "tail", "seed_share") + tuned, why)

    # ---------------------------------------------------------------- Theorem 1 (chapter 05)
    c = "05_theorem1"
    add("theorem1.mot_gd", c, "claim", "theorem1", "growth exponent k of the MoT's Stage III iterations to eps of "
        "the expected (test) loss, plain GD (the paper's optimizer), router exploration lam3 in Stage III, the step "
        "chosen on tune_seeds from gd_eta_grid (the most decades gained after the first step), against 1/eps, per seed, "
        "on a grid placed below each seed's loss after the first Stage III step; a diverged seed counts above every "
        "k", GROWTH, "interval at or below 0.25 (logarithmic growth)",
        ("gd_steps", "lam3", "gd_eta_grid", "tune_seeds", "tune_steps", "decades", "per_decade"))
    add("theorem1.mot_gd_train", c, "claim", "theorem1", "the same on the training loss (its grid placed below "
        "each seed's training loss after the first Stage III step)", GROWTH, "interval at or below 0.25 "
        "(logarithmic growth)", ("gd_steps", "lam3", "gd_eta_grid", "tune_seeds", "tune_steps", "decades",
                                 "per_decade"))
    add("theorem1.mot_gd_explore", c, "instantiation", "theorem1", "growth exponent k of the MoT's Stage III "
        "iterations to eps, plain GD at eta3_gd with the book's exploration (lam = 1) kept in Stage III",
        GROWTH, "interval at or below 0.25", ("explore_steps", "eta3_gd", "mot_eps_max", "decades", "per_decade"),
        why="the paper says the gate is trained throughout but not whether it keeps exploring in Stage III; with "
            "lam = 1 about half of each step's samples go to an expert of another class, so Stage III is not the "
            "per-class problem the theorem's proof fine-tunes; shown beside the lam3 = 0 rows, not counted")
    add("theorem1.mot_ngd", c, "instantiation", "theorem1", "growth exponent k of the MoT's Stage III iterations "
        "to eps (normalized GD) against 1/eps, per seed", GROWTH, "interval at or below 0.25",
        ("ngd_steps", "eta3_ngd", "mot_eps_max", "decades", "per_decade"),
        why="Theorem 1 states gradient descent for Stage III; normalized GD is this book's second optimizer, shown "
            "beside it, not the paper's")
    add("theorem1.single_upper", c, "check", "theorem1", "growth exponent k of the single transformer's iterations "
        "to eps against 1/eps", GROWTH, "interval at or below 1.25 (O(1/eps))",
        ("single_T", "single_eta", "single_eps_max", "decades", "per_decade", "compare_seeds"),
        why="true by construction: any converging run has k far below 1.25 (measured about -0.2), so the row "
            "cannot fail; the comparison that matters is the next row")
    add("theorem1.single_slower", c, "instantiation", "theorem1", "growth exponent k of the single transformer's "
        "iterations to eps against 1/eps", GROWTH, "interval inside [0.75, 1.25] (iterations ~ 1/eps)",
        ("single_T", "single_eta", "single_eps_max", "decades", "per_decade", "compare_seeds"),
        why="our comparator is an H-head cubic transformer under normalized GD, not the symmetric two-headed ReLU "
            "transformer of Yang et al. 2025 whose O(1/eps) the paper cites; its rate is a property of our choice")
    add("theorem1.two_head_slower", c, "instantiation", "theorem1", "growth exponent k of the iterations to eps "
        "of the training loss, counted from its T2, of the comparator the paper cites (Yang et al. 2025 as this book instantiates it: two "
        "symmetric heads of two_head_J ReLU neurons, plain GD in its three stages, the step chosen on tune_seeds "
        "from two_head_eta_grid) against 1/eps, per seed", GROWTH, "interval inside [0.75, 1.25] (iterations ~ 1/eps)",
        ("two_head_J", "two_head_T", "two_head_T1", "two_head_T2", "two_head_eta_grid", "two_head_tune_T",
         "tune_seeds", "two_head_eps_max", "two_head_per_decade", "decades", "compare_seeds"),
        why="the paper cites this rate from Yang et al.'s own setting, a two-mixture of linear classification whose "
            "data model and constants are not public to us; here it runs on this book's data, at a size that "
            "reaches about one decade of its grid in its budget")

    # ---------------------------------------------------------------- the mechanism (chapter 06)
    c = "06_mechanism"
    add("mechanism.shared_conflict", c, "claim", "mechanism", "per-seed mean cosine between each class's gradient "
        "and the other classes' summed gradient, on a shared expert (M = 1)", MEAN_COS,
        "interval at or below -conflict_margin", ("conflict_margin",))
    add("mechanism.specialists_agree", c, "claim", "mechanism", "per-seed within-specialist cosine minus the "
        "shared expert's cosine", MEAN_DIFF, "interval at or above clear_gap", ("clear_gap",))
    add("mechanism.routing_pure", c, "claim", "mechanism", "share of seeds whose worst used expert gets at least "
        "0.95 of its samples from its own class", SHARE, "interval above seed_share", ("seed_share",))
    flat = ("measured for this book's cubic experts at the end of training, where the logistic loss on separable "
            "data is flat in every direction (lambda_max about 2.5e-4) and the cubic activation makes the directions "
            "off the specialty slightly concave (lambda_min about -1e-4 lambda_max): a property of our experts and of "
            "where we measure, not of the statement (whose Stage III argument may view each expert as linear); a "
            "test at Stage III's start is issue #18's")
    add("mechanism.convex_signals", c, "instantiation", "mechanism", "share of seeds whose worst used expert has "
        "lambda_min/lambda_max >= rel_tol on span{c_n, v_n}", SHARE, "interval above seed_share",
        ("rel_tol", "seed_share"), why=flat)
    add("mechanism.convex_full", c, "instantiation", "mechanism", "share of seeds whose worst used expert has "
        "lambda_min/lambda_max >= rel_tol on R^d", SHARE, "interval above seed_share",
        ("rel_tol", "seed_share"), why=flat)
    add("mechanism.convex_label_T2", c, "claim", "mechanism", "share of seeds whose every used expert, at T2 (the "
        "start of Stage III), has a curvature of its Stage III loss along its own label signal v_n* of at least "
        "rel_tol times its Hessian's largest eigenvalue on R^d", SHARE, "interval above seed_share",
        ("rel_tol", "seed_share", "T2"))
    add("mechanism.convex_own_T2", c, "instantiation", "mechanism", "share of seeds whose worst used expert, at T2, "
        "has lambda_min/lambda_max >= rel_tol on span{c_n*, v_n*}", SHARE, "interval above seed_share",
        ("rel_tol", "seed_share", "T2"),
        why="the class-token direction c_n* carries no label, so the loss is nearly flat there and our cubic expert "
            "makes it slightly concave (about -2e-4 lambda_max); whether the paper's strong convexity covers that "
            "direction, which only the gate uses, is not public; shown beside the label-direction row, not counted")
    add("mechanism.single_flatter", c, "claim", "mechanism", "share of seeds whose single transformer's "
        "lambda_min/lambda_max (signal span) is below their experts' worst", SHARE, "interval above seed_share",
        ("seed_share",))

    # ---------------------------------------------------------------- the experiments (chapter 07)
    c = "07_real_data"
    stand_in = ("8x8 digits cut into 4 tokens stand in for the paper's modified CIFAR and text, which this machine "
                "does not hold; the chapter itself calls it a weak test of attention")
    paper_data = ("the paper's own data set, run from a folder the user names: still counted apart from the claims "
                  "until it is part of the book's default run")
    for ds, why, optional in (("digits", stand_in, False), ("cifar10", paper_data, True),
                              ("cifar100", paper_data, True), ("text", paper_data, True)):
        add(f"experiments.{ds}.error_vs_single", c, "proxy", "experiments", f"({ds}) per-seed single ViT's final "
            "test error minus the MoT's", PAIRED_ERR, "interval above 0", (), why, optional)
        add(f"experiments.{ds}.error_vs_moe", c, "proxy", "experiments", f"({ds}) per-seed attention-free MoE's "
            "final test error minus the MoT's", PAIRED_ERR, "interval above 0", (), why, optional)
        add(f"experiments.{ds}.epochs_vs_single", c, "proxy", "experiments", f"({ds}) share of seeds where the MoT "
            "reaches the target test accuracy in fewer epochs than the single ViT", SHARE_WHERE,
            "interval above share_pass", ("share_pass",), why, optional)
    add("experiments.cifar.used_experts", c, "proxy", "experiments", "per-seed experts used on CIFAR-100 minus on "
        "CIFAR-10", USED, "interval above 0", (), paper_data, True)

    # ---------------------------------------------------------------- beyond the paper (chapters 08-10)
    c = "08_fair_comparison"
    for lev in FAIR_LEVELS:
        for slug, name in (("shared_attention", "the shared-attention MoE with at most the MoT's total parameters"),
                           ("attention_free", "the attention-free MoE with at most the MoT's total parameters"),
                           ("single", "the best single transformer (tuned step) with at most its total parameters")):
            add(f"fair.M{lev}.iterations.{slug}", c, "beyond", "fair", f"share of seeds on which the MoT with "
                f"{lev} experts reaches test loss eps in fewer iterations than {name}",
                BEYOND_SHARE, "interval above seed_share",
                ("eps", "seed_share"))
        add(f"fair.M{lev}.flops.single", c, "beyond", "fair", f"share of seeds on which the MoT with {lev} experts "
            "reaches test loss eps in fewer FLOPs than the best single transformer (tuned step)",
            BEYOND_SHARE, "interval above seed_share", ("eps", "seed_share"))
    top = max(FAIR_LEVELS)
    add(f"fair.M{top}.iterations.shared_attention_active", c, "beyond", "fair", f"share of seeds on which the MoT "
        f"with {top} experts reaches test loss eps in fewer iterations than the shared-attention MoE with at most "
        "its active parameters", BEYOND_SHARE, "interval above seed_share",
        ("eps", "seed_share"))
    add(f"fair.M{top}.flops.shared_attention", c, "beyond", "fair", f"share of seeds on which the MoT with {top} "
        "experts reaches test loss eps in fewer FLOPs than the shared-attention MoE with at most its total "
        "parameters", BEYOND_SHARE, "interval above seed_share",
        ("eps", "seed_share"))

    c = "09_training_schedule"
    for slug, what in (("vs_joint", "three stages reach eps at an earlier recorded step than one-stage joint "
                                    "training"),
                       ("vs_I_joint", "three stages reach eps earlier than Stage I then II+III joint"),
                       ("vs_joint_III", "three stages reach eps earlier than I+II joint then Stage III"),
                       ("half_stage1", "a run with half the default Stage I ends at test loss <= eps"),
                       ("skip_stage2", "a run without Stage II ends at test loss <= eps"),
                       ("half_M_half_stage1", "a run with half the experts and half Stage I ends at test loss <= eps"),
                       ("spec_before_gate", "t_spec < t_agree at the default exploration"),
                       ("spec_without_exploration", "t_spec is within the run without exploration (lam = 0)")):
        add(f"schedule.{slug}", c, "beyond", "schedule", f"share of seeds where {what}",
            BEYOND_SHARE, "interval above seed_share", ("eps", "seed_share"))

    c = "10_predecessor"
    for k, model, entropy in PREDECESSOR_PUBLISHED:
        m = model.replace(" ", "_")
        add(f"predecessor.s{k}.{m}.acc", c, "beyond", "predecessor", f"setting {k}: our {model}'s mean test "
            "accuracy against the published one", TABLE_MEAN, "interval inside published +- acc_tol",
            ("acc_tol", "level"))
        if entropy:
            add(f"predecessor.s{k}.{m}.entropy", c, "beyond", "predecessor", f"setting {k}: our {model}'s mean "
                "dispatch entropy against the published one", TABLE_MEAN, "interval contains the published mean",
                ("level",))
    for k in sorted({k for k, _, _ in PREDECESSOR_PUBLISHED}):
        for loss, code in PREDECESSOR_LOSSES:
            add(f"predecessor.s{k}.{code}.attention", c, "beyond", "predecessor", f"setting {k}, {loss}: "
                "per-seed MoT experts' test accuracy minus the attention-free MoE's (points)", PAIRED_ACC,
                "interval above 0", ("level",))
    return R


_ROWS: dict[str, Row] | None = None


def rows() -> dict[str, Row]:
    """Every declared row by id, in the book's order."""
    global _ROWS
    if _ROWS is None:
        out = {}
        for r in _rows():
            if r.id in out:
                raise ValueError(f"row id {r.id!r} is declared twice")
            out[r.id] = r
        _ROWS = out
    return _ROWS


def declared(id: str) -> Row:
    """The declared row ``id``; a ValueError naming it when it is not declared."""
    reg = rows()
    if id not in reg:
        raise ValueError(f"verdict row id {id!r} is not declared in mot_lib/book/claim_registry.py; declare its "
                         f"statement, rule and kind there first")
    return reg[id]


def check_row(row: dict, chapter: str) -> Row:
    """The declaration of a verdict row that ``chapter`` is about to write, after checking that the row has a
    declared id of that chapter and the declared population test; a ValueError naming the row otherwise."""
    if not isinstance(row.get("id"), str):
        raise ValueError(f"chapter {chapter}: verdict row {row.get('claim', row)!r} has no id; every row the book "
                         f"decides is declared in mot_lib/book/claim_registry.py and carries its id")
    d = declared(row["id"])
    if d.chapter != chapter:
        raise ValueError(f"verdict row {d.id!r} is declared for chapter {d.chapter}, not {chapter}")
    test, want = row.get("test", ""), d.rule.test
    if test != want and not (d.kind == "beyond" and test.startswith(_stem(want))):
        raise ValueError(f"verdict row {d.id!r}: its population test {test!r} is not the declared {want!r}")
    return d


def _stem(text: str) -> str:
    """A beyond row's declared test up to the first number or placeholder it fills in (the seeds a table names,
    the interval's level, the counts)."""
    import re
    return re.split(r"[\d{]", text, maxsplit=1)[0]


def chapter_ids(chapter: str, optional: bool = False) -> list[str]:
    """The ids declared for ``chapter`` (without the optional ones unless ``optional``)."""
    return [i for i, r in rows().items() if r.chapter == chapter and (optional or not r.optional)]


# --------------------------------------------------------------------------------------------------- the frozen rules
def _defaults() -> dict:
    """Every verdict chapter's default parameters (its seeds, grids, thresholds), as JSON-ready values."""
    from .registry import params_for, verdict_chapters
    out = {}
    for name in verdict_chapters():
        P = params_for(name)
        d = {}
        for f in fields(P):
            if f.name in ("quick", "out_dir"):
                continue
            v = getattr(P, f.name)
            d[f.name] = list(v) if isinstance(v, tuple) else v
        out[name] = d
    return out


def frozen() -> dict:
    """What the registry hash covers: the declared rows, the statements and questions, the headline rule, and the
    verdict chapters' default parameters."""
    return {"rows": [asdict(r) for r in rows().values()], "statements": STATEMENTS, "questions": QUESTIONS,
            "headline_rule": HEADLINE_RULE, "defaults": _defaults()}


def registry_hash() -> str:
    """sha256 of ``frozen()`` (canonical JSON): it changes when a row, a kind, a rule or a default parameter does."""
    text = json.dumps(frozen(), sort_keys=True, default=str, allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()


# ----------------------------------------------------------------------------------------------------- the headlines
@dataclass
class Headline:
    statement: str            # key of STATEMENTS
    name: str                 # "Proposition 1"
    chapter: str
    verdict: str              # holds / does not hold / inconclusive / not tested
    rows: list = field(default_factory=list)       # the claim rows' ids it was computed from
    counts: dict = field(default_factory=dict)     # verdict -> number of claim rows
    apart: dict = field(default_factory=dict)      # kind -> number of rows of the statement not counted
    sentence: str = ""
    trend: list = field(default_factory=list)      # the regime sweep's trends (``trends.summarize``), if it ran it


def headline_verdict(verdicts: list[str]) -> str:
    """``HEADLINE_RULE`` applied to the verdicts of a statement's claim rows."""
    if not verdicts:
        return "not tested"
    if "does not hold" in verdicts:
        return "does not hold"
    if all(v == "holds" for v in verdicts):
        return "holds"
    return "inconclusive"


def headlines(table, regime: dict | None = None) -> list[Headline]:
    """One headline per statement of the paper, from the verdict rows in ``table`` (``verdicts.read_verdicts``,
    with ``id``); rows of a quick run count like any other but the sentence says so.  ``trend``: the statement's
    trends toward the theorem's regime from ``regime`` ({statement: trends}, ``trends.summarize``; default: the
    committed table data/regime_trends/, ``trends.committed``)."""
    import pandas as pd
    from . import trends
    regime = trends.committed() if regime is None else regime
    reg = rows()
    table = table[table["id"].notna()] if "id" in table else pd.DataFrame(columns=["id", "verdict"])
    out = []
    for key, (name, chapter, _) in STATEMENTS.items():
        mine = [(i, v) for i, v in zip(table["id"], table["verdict"]) if i in reg and reg[i].statement == key]
        claims = [(i, v) for i, v in mine if reg[i].kind == "claim"]
        counts = {v: sum(1 for _, x in claims if x == v) for v in ("holds", "does not hold", "inconclusive")}
        apart = {}
        for i, _ in mine:
            if reg[i].kind != "claim":
                apart[reg[i].kind] = apart.get(reg[i].kind, 0) + 1
        h = Headline(key, name, chapter, headline_verdict([v for _, v in claims]), [i for i, _ in claims], counts,
                     apart, trend=list(regime.get(key, [])))
        h.sentence = _sentence(h, table, mine)
        out.append(h)
    return out


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


#: a verdict with a count: singular and plural
_COUNTED = {"holds": ("holds", "hold"), "does not hold": ("does not hold", "do not hold"),
            "inconclusive": ("inconclusive", "inconclusive")}


def _sentence(h: Headline, table, mine) -> str:
    """The headline's computed sentence: how many claim rows, how they came out, which fail or are open (by the
    rows' own text, as their chapter shows it)."""
    reg = rows()
    by = dict(mine)
    text = dict(zip(table["id"], table["claim"])) if "claim" in table else {}
    name = lambda i: text.get(i) or reg[i].rule.quantity  # noqa: E731
    apart = " and ".join(_plural(n, k + " row") for k, n in h.apart.items())
    apart = f"{apart} shown apart" if apart else ""
    if not h.rows:
        proxies = [i for i, _ in mine if reg[i].kind == "proxy"]
        held = sum(1 for i in proxies if by[i] == "holds")
        if not mine:
            return "No row yet: run its chapter."
        return (f"No claim row: the paper's own data are not run by default; on the stand-in "
                f"({_plural(len(proxies), 'proxy row')}, counted apart) {held} of {len(proxies)} hold.")
    parts = [f"{h.counts[v]} {_COUNTED[v][h.counts[v] != 1]}" for v in ("holds", "does not hold", "inconclusive")
             if h.counts[v]]
    s = f"Of its {_plural(len(h.rows), 'claim row')}: " + ", ".join(parts) + "."
    bad = [i for i in h.rows if by[i] == "does not hold"]
    open_ = [i for i in h.rows if by[i] == "inconclusive"]
    if bad:
        s += " Does not hold: " + "; ".join(name(i) for i in bad) + "."
    if open_:
        s += " Inconclusive: " + "; ".join(name(i) for i in open_) + "."
    if apart:
        s += f" ({apart}.)"
    return s


# ------------------------------------------------------------------------------------------------ the JSON of record
def registry_json(table=None) -> dict:
    """The registry as one JSON-ready object: ``registry_hash``; ``rows`` (id, chapter, kind, statement, rule,
    why, measured, verdict: the last two from ``table``, the verdict rows of ``verdicts.read_verdicts``, or null);
    ``headlines`` (statement, verdict, rows, trend, and the computed sentence)."""
    import math

    import pandas as pd
    from .registry import params_for
    reg = rows()
    table = table if table is not None else pd.DataFrame(columns=["id", "verdict"])
    found = {}
    if "id" in table:
        for _, r in table[table["id"].notna()].iterrows():
            found[r["id"]] = r
    defaults = {}
    num = lambda x: None if x is None or (isinstance(x, float) and not math.isfinite(x)) else float(x)  # noqa: E731
    out_rows = []
    for i, d in reg.items():
        if d.chapter not in defaults:
            defaults[d.chapter] = params_for(d.chapter)
        P = defaults[d.chapter]
        rule = {**asdict(d.rule), "params": {p: _jsonable(getattr(P, p)) for p in d.rule.params if hasattr(P, p)},
                "seeds": list(P.seeds) if d.kind != "beyond" else "the committed table's seeds"}
        r = found.get(i)
        measured = None if r is None else {"value": num(r["measured"]), "interval": [num(x) for x in r["interval"]],
                                           "seeds": None if pd.isna(r.get("seeds")) else int(r["seeds"]),
                                           "claim": r["claim"], "bound": r["bound"],
                                           "quick": bool(pd.notna(r.get("quick")) and r.get("quick"))}
        out_rows.append({"id": i, "chapter": d.chapter, "kind": d.kind, "statement": d.statement,
                         "statement_text": (STATEMENTS.get(d.statement) or QUESTIONS[d.statement])[-1],
                         "rule": rule, "why": d.why, "optional": d.optional, "measured": measured,
                         "verdict": None if r is None else r["verdict"]})
    heads = [{"statement": h.name, "key": h.statement, "chapter": h.chapter, "verdict": h.verdict, "rows": h.rows,
              "counts": h.counts, "apart": h.apart, "sentence": h.sentence, "trend": h.trend}
             for h in headlines(table if {"id", "verdict"} <= set(table) else pd.DataFrame(columns=["id", "verdict"]))]
    return {"registry_hash": registry_hash(), "headline_rule": HEADLINE_RULE, "kinds": KIND_TEXT,
            "rows": out_rows, "headlines": heads}


def _jsonable(v):
    return list(v) if isinstance(v, tuple) else v
