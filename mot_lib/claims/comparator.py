"""The book's one comparator: the single transformer at the step the fair comparison tuned for it.

Chapters 01, 05, 06 and 08 compare the MoT with the same single transformer (H heads, J neurons per head,
normalized GD).  Its step is not the MoT's: chapter 08's sweep (``experiments.fair``, committed as
data/fair_comparison) tunes each model's step on seeds 1000-1002, which no chapter's verdict uses, over a grid
widened until no choice lies at its edge, and every chapter reads that choice here.  A chapter's ``single_eta``
parameter is ``"tuned"`` (this step) or a number (the reader's own step).
"""
from __future__ import annotations

from pathlib import Path

from ..engine.config import Setting, SingleConfig, _check

TUNED = "tuned"


def check_eta(name: str, value) -> None:
    """A chapter's ``single_eta``: "tuned" or a step in (0, 1e4]; otherwise a ValueError naming ``name``."""
    if isinstance(value, str):
        if value != TUNED:
            raise ValueError(f"{name}={value!r} is not allowed; give {TUNED!r} (the step the fair comparison tuned, "
                             "data/fair_comparison) or a number in (0, 10000]")
        return
    _check(name, value, lo=0.0, hi=1e4, lo_open=True)


def tuned(H: int, J: int, folder: Path | None = None) -> dict:
    """The tuned step of the single transformer with ``H`` heads and ``J`` neurons per head: a dict with ``eta``
    (the base step times the chosen multiplier), ``mult``, ``base``, ``level`` and ``match`` (the fair comparison's
    row it comes from), ``grid`` (the multipliers tried) and ``tuning_median_loss``.  The committed table is read
    with its checks (``sweeps.load``: a missing or changed file stops with the command that recomputes it); a size
    the sweep did not tune raises a ValueError listing those it did."""
    from ..experiments import fair, sweeps
    rows, _, meta = sweeps.load(fair.NAME, **({"folder": folder} if folder is not None else {}))
    chosen = [c for c in meta.get("chosen", []) if c["model"] == "single transformer"]
    sizes = {}
    for c in chosen:
        t = rows[(rows.part == "tuning") & (rows.model == c["model"]) & (rows.match == c["match"])
                 & (rows.level == c["level"])]
        sizes[(int(t.H.iloc[0]), int(t.J.iloc[0]))] = c
    if (H, J) not in sizes:
        have = ", ".join(f"H={h}, J={j}" for h, j in sorted(sizes))
        raise ValueError(f"single_eta='tuned': the fair comparison (data/fair_comparison) tuned the single "
                         f"transformer at {have}, not at H={H}, J={J}; give single_eta as a number")
    c = sizes[(H, J)]
    return {"eta": fair.SINGLE.eta * float(c["mult"]), "mult": float(c["mult"]), "base": fair.SINGLE.eta,
            "level": int(c["level"]), "match": c["match"], "grid": fair.SINGLE_MULTS,
            "tuning_median_loss": float(c["tuning_median_loss"]), "seeds": fair.TUNING_SEEDS, "T": fair.SINGLE.T}


def resolve(value, H: int, J: int, setting: Setting | None = None) -> tuple[float, str]:
    """(step, a sentence saying where it comes from) for a chapter's ``single_eta`` = ``value``."""
    if value != TUNED:
        return float(value), f"single transformer's step eta = {float(value):g} (given)"
    t = tuned(H, J)
    where = (f"single transformer's step eta = {t['base']:g} x {t['mult']:g} = {t['eta']:g}: the multiplier the fair "
             f"comparison (chapter 08, data/fair_comparison) chose for H={H}, J={J} on its tuning seeds "
             f"{', '.join(map(str, t['seeds']))} (lowest median test loss after {t['T']} steps, multipliers "
             f"{', '.join(f'{m:g}' for m in t['grid'])}; median {t['tuning_median_loss']:.3g})")
    if setting is not None and setting != Setting():
        where += "; tuned on the book's default setting, which this run changes, so it may not be tuned here"
    return t["eta"], where


def single_config(value, H: int = SingleConfig.H, J: int = SingleConfig.J, setting: Setting | None = None,
                  **fields) -> tuple[SingleConfig, str]:
    """The comparator's config (``SingleConfig(H=H, J=J, eta=<resolved>, **fields)``) and where its step comes
    from."""
    eta, where = resolve(value, H, J, setting)
    return SingleConfig(H=H, J=J, eta=eta, **fields), where
