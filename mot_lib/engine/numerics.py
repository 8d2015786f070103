"""The CPU numerics every number of the book is computed with, the same on every x86-64 machine.

float64 results on a CPU depend on more than the code and the seed: torch picks its vectorized kernels by
the CPU's instruction set (AVX2 or AVX-512 reductions add in another order, its exp and log differ in the
last bit), MKL picks its matrix-multiply kernels by the processor too, and a reduction split over threads
adds in an order that depends on how many threads there are.  The differences are 1e-16 relative; the single
transformer, trained by normalized GD, amplifies them to its second digit within a few hundred steps.  So
the book pins all four, for every process that imports ``mot_lib``:

* ``ATEN_CPU_CAPABILITY=avx2``: torch's kernel dispatch (every x86-64 CPU of the last decade has AVX2);
* ``MKL_CBWR=COMPATIBLE,STRICT``: MKL's conditional numerical reproducibility, on its one branch that every
  vendor's x86-64 CPU runs, in strict mode.  ``AVX2,STRICT`` was pinned first: Intel CPUs honour it, but MKL on
  AMD CPUs ignores it and runs its ``AUTO`` branch (``MKL_VERBOSE`` reports ``CNR:AUTO,STRICT``), so an AMD EPYC
  and an Intel Xeon differed (a 300-step single-transformer run by up to 2% in its loss) and chapters executed on
  one failed ``make test`` on the other; ``COMPATIBLE,STRICT`` gave both the same bits;
* ``DNNL_MAX_CPU_ISA=AVX2``: oneDNN's instruction set, for the paths that use it;
* one intra-op thread (``torch.set_num_threads(1)``), on any machine: a reduction split over threads adds in
  an order that depends on their number (chapter 05's single transformer moves in its third digit between
  1 and 2 threads).  One rather than two: on a 2-core machine two threads gave chapter 05 70 s against 89 s
  when the machine was otherwise idle, but when anything else ran beside it, two threads waiting on each
  other made chapter 03 take 425 s against 72 s.  ``MOT_THREADS=N`` takes N, and then the numbers depend on N.

The MoT's and the single transformer's training steps run in compiled kernels (``fused``), which need no pinning:
they use IEEE additions, multiplications and divisions in a fixed order, no fused multiply-add and an exponential of
their own, so they give the same bits whether compiled for SSE2, AVX2 or AVX-512, with or without LLVM's
straight-line vectorizer, and on one thread or several (``tests/test_fused.py``).

The environment variables are read once per process, when torch first dispatches a kernel (and MKL on its
first call), so ``pin`` sets them when ``mot_lib`` is imported and ``check`` says what it could not pin:
import ``mot_lib`` before running anything in torch, or set them in the shell (``make`` does both; its
kernels and worker processes inherit them).  ``MOT_NUMERICS=native`` leaves the machine's own choices
(faster on some CPUs, but the numbers then depend on the machine).
"""
from __future__ import annotations

import os
import warnings

#: the environment variables that pin the CPU numerics, and their values
PINNED = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "COMPATIBLE,STRICT", "DNNL_MAX_CPU_ISA": "AVX2"}
#: torch's name of the kernel level that ATEN_CPU_CAPABILITY=avx2 selects
CAPABILITY = "AVX2"


class NumericsWarning(UserWarning):
    """The numerics are not the pinned ones: numbers may differ from the book's in their last digits
    (and the single transformer's in its second)."""


def native() -> bool:
    """True when the reader asked for the machine's own numerics (``MOT_NUMERICS=native``)."""
    return os.environ.get("MOT_NUMERICS", "").strip().lower() == "native"


#: the intra-op thread count the book's numbers are computed with
THREADS = 1


def threads() -> int:
    """The intra-op thread count the book computes with: ``THREADS``, or ``MOT_THREADS``."""
    raw = os.environ.get("MOT_THREADS", str(THREADS)).strip()
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"MOT_THREADS={raw!r} must be a whole number >= 1 (unset, the book uses {THREADS} threads)")
    return n


def pin() -> None:
    """Set the pinned environment (overriding the shell's values) and the thread count, unless
    ``MOT_NUMERICS=native``.  Called when ``mot_lib`` is imported; ``check`` then says what did not take."""
    if native():
        return
    os.environ.update(PINNED)
    import torch
    torch.set_num_threads(threads())


def report() -> dict:
    """What this process computes with: the pinned variables, torch's kernel level, threads, MKL."""
    import torch
    return {**{k: os.environ.get(k) for k in PINNED}, "capability": torch.backends.cpu.get_cpu_capability(),
            "threads": torch.get_num_threads(), "torch": torch.__version__, "mkl": torch.backends.mkl.is_available()}


def problems() -> list[str]:
    """Why this process's numerics are not the pinned ones (empty when they are)."""
    import torch
    out = [f"{k}={os.environ.get(k)!r} (the book pins {v!r})" for k, v in PINNED.items() if os.environ.get(k) != v]
    cap = torch.backends.cpu.get_cpu_capability()
    if cap != CAPABILITY:
        out.append(f"torch dispatches {cap} kernels (the book pins {CAPABILITY}): torch ran a kernel before "
                   "mot_lib was imported, or ATEN_CPU_CAPABILITY was set otherwise")
    if torch.get_num_threads() != threads():
        out.append(f"torch uses {torch.get_num_threads()} threads (the book pins {threads()})")
    return out


def check(stacklevel: int = 2) -> list[str]:
    """Warn (``NumericsWarning``) when the numerics are not the pinned ones; returns the reasons."""
    if native():
        return []
    found = problems()
    if found:
        warnings.warn("mot_lib's numbers may differ from the book's: " + "; ".join(found) +
                      ". Import mot_lib before running anything in torch, or set "
                      + " ".join(f"{k}={v}" for k, v in PINNED.items()) + " in the shell "
                      "(MOT_NUMERICS=native silences this).", NumericsWarning, stacklevel=stacklevel)
    return found

