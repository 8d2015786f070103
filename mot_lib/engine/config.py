"""Validated, frozen configuration objects.

Every constant of the synthetic setting and of training is a field here, so a
chapter can expose it as a papermill parameter.  A bad value raises a
``ValueError`` that names the field, the value and the allowed range, on
construction: before any tensor is allocated or any step is taken.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields
from typing import Any


def _check(name: str, value: Any, *, kind: type | tuple = (int, float), lo=None, hi=None,
           lo_open=False, hi_open=False, choices=None) -> None:
    """Raise a ValueError naming ``name`` unless ``value`` is of ``kind`` and in range."""
    if choices is not None:
        if value not in choices:
            raise ValueError(f"{name}={value!r} is not allowed; choose one of {sorted(choices)}")
        return
    if kind is int or kind == (int,):
        ok_type = isinstance(value, int) and not isinstance(value, bool)
    elif kind is bool:
        ok_type = isinstance(value, bool)
    else:
        ok_type = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok_type:
        want = kind.__name__ if isinstance(kind, type) else "a number"
        raise ValueError(f"{name}={value!r} has the wrong type; expected {want}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{name}={value!r} must be finite")
    lo_s = "-inf" if lo is None else repr(lo)
    hi_s = "inf" if hi is None else repr(hi)
    rng = f"{'(' if lo_open or lo is None else '['}{lo_s}, {hi_s}{')' if hi_open or hi is None else ']'}"
    if lo is not None and (value < lo or (lo_open and value == lo)):
        raise ValueError(f"{name}={value!r} is out of range; allowed {rng}")
    if hi is not None and (value > hi or (hi_open and value == hi)):
        raise ValueError(f"{name}={value!r} is out of range; allowed {rng}")


def _check_list(name: str, value: Any, *, kind: type | tuple = (int, float), **limits) -> tuple:
    """A list (or tuple) of values that each pass ``_check(name, ..., kind=kind, **limits)``, returned as a tuple.

    A single number, a string or anything else raises a ValueError naming ``name`` and what is allowed (a
    parameter typed as ``-p noise_shares 0.5`` would otherwise fail later on a bare ``TypeError``)."""
    if isinstance(value, (str, bytes, dict)) or not hasattr(value, "__iter__") or not hasattr(value, "__len__"):
        want = "ints, e.g. [5, 8, 12]" if kind is int or kind == (int,) else "numbers, e.g. [0.1, 0.5]"
        raise ValueError(f"{name}={value!r} has the wrong type; expected a list of {want}")
    value = tuple(value)
    for v in value:
        _check(name, v, kind=kind, **limits)
    return value


#: The longest run a TrainConfig allows (``T``); a chapter whose run lengths are derived from its parameters
#: checks them against this up front, naming the parameters.
MAX_STEPS = 1_000_000


class _Validated:
    """Mixin: ``replace`` returns a new validated copy; ``as_dict`` for papermill/JSON."""

    def replace(self, **changes):
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise ValueError(f"unknown parameter(s) {sorted(unknown)} for {type(self).__name__}; "
                             f"known: {[f.name for f in fields(self)]}")
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Setting(_Validated):
    """The synthetic classification setting (SETTING.md, "reference instantiation").

    A sample of class ``n`` with label ``y`` is a sequence of ``L`` tokens in R^d:
    ``beta c_n`` (class token), ``alpha y v_n`` (label token), ``gamma eps v_n'``
    (distractor, ``n' != n``, ``eps`` a random sign) and ``L-3`` noise tokens
    ``xi ~ N(0, sigma_xi^2/d I)``, in a random order.

    noise_orthogonal: project the noise off the span of the 2N signals (the
        prototype's choice); ``False`` keeps isotropic noise, which also moves the
        experts' and the router's scores.
    rho: pairwise cosine between the classification signals v_n (0 = orthonormal;
        used by the non-orthogonal open-question chapter).
    alpha_range, beta_range, gamma_range: ``None`` (default) uses the fixed
        amplitude above; a pair ``(lo, hi)`` draws each sample's amplitude from
        U(lo, hi) instead (the predecessor MoE experiment of Chen et al. 2022,
        chapter 10), and the fixed amplitude is not used.
    scale: every token is multiplied by ``scale`` after it is drawn (the
        predecessor's data are multiplied by 10).
    """
    N: int = 4
    d: int = 16
    L: int = 8
    alpha: float = 1.0
    beta: float = 1.0
    gamma: float = 1.0
    sigma_xi: float = 1.0
    noise_orthogonal: bool = True
    rho: float = 0.0
    n_train: int = 1000
    n_test: int = 4000
    alpha_range: tuple | None = None
    beta_range: tuple | None = None
    gamma_range: tuple | None = None
    scale: float = 1.0

    def __post_init__(self):
        _check("N", self.N, kind=int, lo=2, hi=64)
        _check("d", self.d, kind=int, lo=2 * self.N + 2, hi=1024)
        _check("L", self.L, kind=int, lo=3, hi=256)
        for name in ("alpha", "beta", "gamma"):
            _check(name, getattr(self, name), lo=0.0, hi=100.0)
        _check("alpha", self.alpha, lo=0.0, hi=100.0, lo_open=True)
        _check("sigma_xi", self.sigma_xi, lo=0.0, hi=100.0)
        _check("noise_orthogonal", self.noise_orthogonal, kind=bool)
        _check("rho", self.rho, lo=0.0, hi=1.0, hi_open=True)
        _check("n_train", self.n_train, kind=int, lo=2, hi=1_000_000)
        _check("n_test", self.n_test, kind=int, lo=2, hi=1_000_000)
        for name in ("alpha_range", "beta_range", "gamma_range"):
            object.__setattr__(self, name, _check_range(name, getattr(self, name), lo_open=name == "alpha_range"))
        _check("scale", self.scale, lo=0.0, hi=1000.0, lo_open=True)

    def amplitude(self, name: str) -> tuple[float, float]:
        """The (lo, hi) range of amplitude ``name`` (alpha, beta or gamma); lo == hi when it is fixed."""
        r = getattr(self, f"{name}_range")
        return (float(getattr(self, name)),) * 2 if r is None else r


def _check_range(name: str, value, lo_open: bool = False):
    """None, or a pair (lo, hi) of numbers with 0 <= lo <= hi <= 100 (lo > 0 if lo_open); returned as a tuple."""
    if value is None:
        return None
    try:
        pair = tuple(value)
    except TypeError:
        raise ValueError(f"{name}={value!r} has the wrong type; expected None or a pair (lo, hi)") from None
    if len(pair) != 2:
        raise ValueError(f"{name}={value!r} has the wrong type; expected None or a pair (lo, hi)")
    for v in pair:
        _check(name, v, lo=0.0, hi=100.0, lo_open=lo_open)
    if pair[0] > pair[1]:
        raise ValueError(f"{name}={value!r} is out of range; allowed lo <= hi")
    return tuple(float(v) for v in pair)


STAGE_OPTIMIZERS = ("ngd", "gd")
#: the MoT's training schedules (``TrainConfig.schedule``)
SCHEDULES = ("three_stage", "joint", "I_joint", "joint_III")


@dataclass(frozen=True)
class TrainConfig(_Validated):
    """Model size and the training schedule of the MoT (and of its ablations).

    schedule="three_stage": Stage I (steps 1..T1) trains the FFN vectors W with
    ``stage1_opt`` (normalized GD by default) with attention frozen; Stage II
    (T1..T2) trains the merged key-query matrices W_KQ by GD with W frozen;
    Stage III (T2..T) trains W again with ``stage3_opt``.  The router Theta is
    trained by GD in every stage.  schedule="joint" trains W (``stage1_opt``,
    eta1), W_KQ (``stage2_opt``, eta2) and Theta together for T steps (the
    one-stage control).  The two two-stage variants: "I_joint" runs Stage I to
    T1, then trains W and W_KQ jointly to T (II+III joint); "joint_III" trains
    them jointly to T2 (I+II joint), then runs Stage III to T.

    J: neurons per expert.  J=1 is the paper's expert (one vector, output sign
    +1); with J >= 2 the expert's FFN is sum_j s_j sigma(<W^(m,j), x_k>) with
    fixed output signs s_j, +1 for the first ceil(J/2) neurons and -1 for the
    rest (as in the predecessor MoE theory).
    shared_attention: one key-query matrix W_KQ shared by all experts (the
    standard MoE transformer: attention, then FFN experts routed by the gate);
    needs attention=True.  Stage II trains the shared matrix.

    attention=False fixes W_KQ at 0: each expert mean-pools its per-token FFN
    outputs (the attention-free MoE of Lemma 1).
    lam: the router's exploration, r_m ~ U[0, lam] added to the gate's scores before the top-1 choice, at
    every step; lam3: the exploration in Stage III alone (None: lam), so that Stage III can fine-tune each expert
    on the samples the gate itself sends it (lam3 = 0).
    query_pool: "sum" (default) sums the attention output over queries, so with
    W_KQ = 0 an expert is exactly a one-neuron MoE expert summed over tokens;
    "mean" divides by L.
    """
    M: int = 16
    J: int = 1
    shared_attention: bool = False
    sigma0: float = 0.1
    T1: int = 200
    T2: int = 300
    T: int = 500
    schedule: str = "three_stage"
    stage1_opt: str = "ngd"
    stage2_opt: str = "ngd"
    stage3_opt: str = "gd"
    eta1: float = 0.02
    eta2: float = 0.3
    eta3: float = 0.01
    eta_router: float = 0.5
    lam: float = 1.0
    lam3: float | None = None
    attention: bool = True
    activation: str = "cubic"
    query_pool: str = "sum"
    record_every: int = 10

    def __post_init__(self):
        _check("M", self.M, kind=int, lo=1, hi=512)
        _check("sigma0", self.sigma0, lo=0.0, hi=10.0, lo_open=True)
        _check("T", self.T, kind=int, lo=1, hi=MAX_STEPS)
        _check("J", self.J, kind=int, lo=1, hi=1024)
        _check("shared_attention", self.shared_attention, kind=bool)
        _check("schedule", self.schedule, choices=SCHEDULES)
        if self.schedule == "three_stage":
            _check("T1", self.T1, kind=int, lo=0, hi=self.T)
            _check("T2", self.T2, kind=int, lo=self.T1, hi=self.T)
        elif self.schedule == "I_joint":
            _check("T1", self.T1, kind=int, lo=0, hi=self.T)
            _check("T2", self.T2, kind=int, lo=0, hi=1_000_000)
        elif self.schedule == "joint_III":
            _check("T1", self.T1, kind=int, lo=0, hi=1_000_000)
            _check("T2", self.T2, kind=int, lo=0, hi=self.T)
        else:
            _check("T1", self.T1, kind=int, lo=0, hi=1_000_000)
            _check("T2", self.T2, kind=int, lo=0, hi=1_000_000)
        _check("stage1_opt", self.stage1_opt, choices=STAGE_OPTIMIZERS)
        _check("stage2_opt", self.stage2_opt, choices=STAGE_OPTIMIZERS)
        _check("stage3_opt", self.stage3_opt, choices=STAGE_OPTIMIZERS)
        for name in ("eta1", "eta2"):
            _check(name, getattr(self, name), lo=0.0, hi=1e4, lo_open=True)
        # plain GD in Stage III starts where the loss (and so the gradient) is about 1e-5: useful steps are large, and
        # chapter 05 tunes its step on a grid up to 1e10, where the first update drops the loss to float64's floor
        _check("eta3", self.eta3, lo=0.0, hi=1e12, lo_open=True)
        _check("eta_router", self.eta_router, lo=0.0, hi=1e4)
        _check("lam", self.lam, lo=0.0, hi=1e4)
        if self.lam3 is not None:
            _check("lam3", self.lam3, lo=0.0, hi=1e4)
        _check("attention", self.attention, kind=bool)
        if self.shared_attention and not self.attention:
            raise ValueError("shared_attention=True is not allowed with attention=False; a shared key-query "
                             "matrix needs attention=True")
        _check("activation", self.activation, choices=("cubic", "linear", "relu"))
        _check("query_pool", self.query_pool, choices=("sum", "mean"))
        _check("record_every", self.record_every, kind=int, lo=1, hi=1_000_000)


@dataclass(frozen=True)
class SingleConfig(_Validated):
    """The single one-layer multi-head transformer (Theorem 1's comparator).

    H heads, each with a merged key-query matrix and a J-neuron cubic FFN applied
    to the head's attention output at every query (attention first, then FFN, as
    in a standard block), summed over queries and heads.  With J >= 2 and
    H >= N it can represent the task through the class token (see the setting
    page).  All parameters are trained at once.  opt="ngd" (default, step eta
    per head, the MoT's Stage I optimizer and step): plain GD from the same
    small init does not leave the cubic's flat start within any budget we tried.
    """
    H: int = 4
    J: int = 2
    sigma0: float = 0.1
    T: int = 500
    eta: float = 0.02
    opt: str = "ngd"
    activation: str = "cubic"
    record_every: int = 10
    #: symmetric heads (Yang et al. 2025's comparator): the first H/2 heads add to the output, the others subtract
    #: (with ReLU neurons a head's output has one sign); H must then be even
    signed_heads: bool = False
    #: its three-stage algorithm: steps 1..T1 train the neurons W only, T1+1..T2 the key-query matrices only, the
    #: rest both (T1 = T2 = 0: both from the first step)
    T1: int = 0
    T2: int = 0

    def __post_init__(self):
        _check("signed_heads", self.signed_heads, kind=bool)
        if self.signed_heads and self.H % 2:
            raise ValueError(f"H={self.H} with signed_heads=True is not allowed; give an even H (half the heads "
                             "add, half subtract)")
        _check("T1", self.T1, kind=int, lo=0, hi=self.T)
        _check("T2", self.T2, kind=int, lo=self.T1, hi=self.T)
        _check("H", self.H, kind=int, lo=1, hi=256)
        _check("J", self.J, kind=int, lo=1, hi=256)
        _check("sigma0", self.sigma0, lo=0.0, hi=10.0, lo_open=True)
        _check("T", self.T, kind=int, lo=1, hi=1_000_000)
        _check("eta", self.eta, lo=0.0, hi=1e4, lo_open=True)
        _check("opt", self.opt, choices=STAGE_OPTIMIZERS)
        _check("activation", self.activation, choices=("cubic", "linear", "relu"))
        _check("record_every", self.record_every, kind=int, lo=1, hi=1_000_000)


def check_seeds(seeds) -> list[int]:
    """Validate a seed list (the batch dimension of every run)."""
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        seeds = [seeds]
    if isinstance(seeds, (str, bytes)):
        raise ValueError(f"seeds={seeds!r} must be an int or a list of ints, e.g. [0, 1, 2]")
    try:
        seeds = list(seeds)
    except TypeError:
        raise ValueError(f"seeds={seeds!r} must be an int or a list of ints") from None
    if not seeds:
        raise ValueError("seeds=[] is empty; give at least one seed")
    for s in seeds:
        if not isinstance(s, int) or isinstance(s, bool):
            raise ValueError(f"seeds={seeds!r} must be a list of ints; {s!r} is not an int")
        _check("seeds", s, kind=int, lo=0, hi=2**31 - 1)
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds={seeds!r} has duplicates")
    return seeds


PREDECESSOR_LOSSES = ("double_softmax", "logistic")


@dataclass(frozen=True)
class PredecessorConfig(_Validated):
    """The predecessor MoE experiment's models and training (Chen et al. 2022; chapter 10).

    model="moe": M experts, each 2J neurons with a bias, ``sigma(<w_j, x_p> + b_j)``
    summed over the patches; the last J neurons give the logit of y=+1, the first J
    the logit of y=-1, so the expert's score is ``f = z_+ - z_-``.  The router
    ``h_m = sum_p <theta_m, x_p>`` (theta_0 = 0) picks ``argmax_m (h_m + r_m)``,
    ``r_m ~ U[0, lam)`` redrawn every step, and the output is ``F = (h_m* + r_m*) f_m*``:
    the noisy gate *value* multiplies the output.  attention=True gives every expert
    its own merged key-query matrix over the patches (initialised at 0, so that
    until Stage II it is exactly the predecessor's expert), trained in Stage II
    (steps T1 < t <= T2) with the neurons frozen.
    model="single": one such network with 2J neurons, no router (the predecessor's
    single CNN baseline).

    loss="double_softmax": the public code's softmax of the two logits followed by
    cross-entropy (another softmax): ``l(m) = log(1 + exp(1 - 2 sigmoid(m)))`` of the
    margin ``m = y F``, bounded below by log(1 + e^-1) = 0.3133.  "logistic": the
    book's ``l(m) = log(1 + exp(-m))`` (the same as a single softmax cross-entropy).
    opt="ngd": each expert's step is its gradient divided by the sum of the norms of its
    parameter gradients (weights, biases), step ``eta``; "adam": PyTorch's Adam with
    L2 weight decay ``weight_decay``.  The router is trained by GD with ``eta_router``.
    init_scale multiplies PyTorch's default Conv1d initialisation U(-1/sqrt(d), 1/sqrt(d)).
    early_stop: at every step, before updating, a seed stops when its training loss
    is not a new minimum and either exceeds the minimum by ``stop_rise`` (only after
    step ``stop_after``) or is at most ``stop_floor`` (0 disables the floor rule).
    eval_noise: the public code never switches its model to evaluation mode, so its
    test accuracy is measured with the router noise on; True does the same.
    """
    model: str = "moe"
    activation: str = "cubic"
    M: int = 8
    J: int = 8
    init_scale: float = 1e-3
    loss: str = "double_softmax"
    opt: str = "ngd"
    eta: float = 1e-3
    eta_router: float = 0.1
    lam: float = 1.0
    weight_decay: float = 0.0
    T: int = 501
    early_stop: bool = True
    stop_rise: float = 0.02
    stop_floor: float = 0.314
    stop_after: int = -1
    attention: bool = False
    T1: int = 0
    T2: int = 0
    eta_kq: float = 1e-3
    eval_noise: bool = True
    record_every: int = 10
    dtype: str = "float64"

    def __post_init__(self):
        _check("model", self.model, choices=("moe", "single"))
        _check("activation", self.activation, choices=("cubic", "linear"))
        _check("M", self.M, kind=int, lo=1, hi=512)
        _check("J", self.J, kind=int, lo=1, hi=1024)
        _check("init_scale", self.init_scale, lo=0.0, hi=100.0, lo_open=True)
        _check("loss", self.loss, choices=PREDECESSOR_LOSSES)
        _check("opt", self.opt, choices=("ngd", "adam"))
        _check("eta", self.eta, lo=0.0, hi=1e4, lo_open=True)
        _check("eta_router", self.eta_router, lo=0.0, hi=1e4)
        _check("lam", self.lam, lo=0.0, hi=1e4)
        _check("weight_decay", self.weight_decay, lo=0.0, hi=1.0)
        _check("T", self.T, kind=int, lo=1, hi=1_000_000)
        _check("early_stop", self.early_stop, kind=bool)
        _check("stop_rise", self.stop_rise, lo=0.0, hi=100.0, lo_open=True)
        _check("stop_floor", self.stop_floor, lo=0.0, hi=100.0)
        _check("stop_after", self.stop_after, kind=int, lo=-1, hi=1_000_000)
        _check("attention", self.attention, kind=bool)
        if self.attention and self.model != "moe":
            raise ValueError(f"attention={self.attention!r} is not allowed with model={self.model!r}; "
                             f"allowed only with model='moe'")
        _check("T1", self.T1, kind=int, lo=0, hi=self.T)
        _check("T2", self.T2, kind=int, lo=self.T1, hi=self.T)
        _check("eta_kq", self.eta_kq, lo=0.0, hi=1e4, lo_open=True)
        _check("eval_noise", self.eval_noise, kind=bool)
        _check("record_every", self.record_every, kind=int, lo=1, hi=1_000_000)
        _check("dtype", self.dtype, choices=("float32", "float64"))

    def stage(self, t: int) -> str:
        """Stage of update t (1-based): "I" (t <= T1, or every t when T1 = T2 = 0), "II" (T1 < t <= T2),
        "III" (t > T2).  Stage II trains only the key-query matrices and the router (only the router
        when attention=False); Stages I and III train the neurons and the router."""
        if self.T1 == self.T2 == 0:
            return "I"
        return "I" if t <= self.T1 else ("II" if t <= self.T2 else "III")
