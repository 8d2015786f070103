"""What a model holds and what a training step costs: parameters (total, and active per sample) and FLOPs.

Used by notebooks/08_fair_comparison to match models by size and to put iterations on a FLOP axis.

Parameters (d the token dimension, M experts, J neurons per expert or per head, H heads):

* routed models (``TrainConfig``: the MoT, the shared-attention MoE, the attention-free MoE):
  FFN ``M J d``; key-query ``M d^2`` (one per expert), ``d^2`` (shared) or none (attention=False, W_KQ fixed
  at 0 is not a parameter); router ``M d``.  Active per sample: the routed expert's FFN ``J d`` and its
  key-query matrix (``d^2`` if any), plus the whole router ``M d`` (every sample's gate reads all M scores);
* the single transformer (``SingleConfig``): ``H (d^2 + J d)``, all active.

FLOPs of one full-batch training step: 2 FLOPs per multiply-add, and the backward pass counted as twice
the forward (the usual estimate for matmul-bound models), so a step is ``6 n MACs`` for n training samples.
Only the matmuls are counted (softmax, activation and pooling add O(L^2 + L J) per sample). Forward
multiply-adds per sample (L tokens):

* routed: router ``M d``; attention ``L d^2 + L^2 d`` (X W_KQ, then the scores; none without attention);
  FFN ``L J d`` for the routed expert only (top-1);
* single: per head ``L d^2 + L^2 d`` (attention) ``+ L J d + L^2 J`` (X W^T, then mixed by the attention).

The count is the same for every stage (a frozen stage's backward still runs through the forward).
"""
from __future__ import annotations

from .config import Setting, SingleConfig, TrainConfig


def _kq(cfg: TrainConfig, d: int) -> tuple[int, int]:
    """(total, active) key-query parameters of a routed model."""
    if not cfg.attention:
        return 0, 0
    return (d * d, d * d) if cfg.shared_attention else (cfg.M * d * d, d * d)


def param_counts(cfg: TrainConfig | SingleConfig, d: int) -> tuple[int, int]:
    """(total trainable parameters, parameters active per sample) of a model of token dimension d."""
    if isinstance(cfg, SingleConfig):
        n = cfg.H * (d * d + cfg.J * d)
        return n, n
    if not isinstance(cfg, TrainConfig):
        raise ValueError(f"cfg={cfg!r} must be a TrainConfig or a SingleConfig")
    kq_total, kq_active = _kq(cfg, d)
    router = cfg.M * d
    return cfg.M * cfg.J * d + kq_total + router, cfg.J * d + kq_active + router


def forward_macs(cfg: TrainConfig | SingleConfig, setting: Setting) -> int:
    """Multiply-adds of one sample's forward pass (module docstring)."""
    d, L = setting.d, setting.L
    attention = L * d * d + L * L * d
    if isinstance(cfg, SingleConfig):
        return cfg.H * (attention + L * cfg.J * d + L * L * cfg.J)
    if not isinstance(cfg, TrainConfig):
        raise ValueError(f"cfg={cfg!r} must be a TrainConfig or a SingleConfig")
    return cfg.M * d + (attention if cfg.attention else 0) + L * cfg.J * d


def step_flops(cfg: TrainConfig | SingleConfig, setting: Setting) -> int:
    """FLOPs of one full-batch training step: 6 x forward multiply-adds x training samples."""
    return 6 * forward_macs(cfg, setting) * setting.n_train
