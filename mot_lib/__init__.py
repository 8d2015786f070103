"""mot_lib: the engine behind the executable companion to Li et al. (2025),
"Mixture-of-Transformers Learn Faster: A Theoretical Study on Classification Problems".

Import it as ``import mot_lib as mot`` in every chapter.  Layers, each importing only from those before it:
``engine`` (setting, data, models, training, measurements), ``stats`` (intervals and tests), ``book`` (chapter
registry, verdicts, scorecard, replication, staleness of committed tables), ``experiments`` (real data, the
predecessor, sweeps), ``claims`` (one analysis per chapter), ``cli`` (``python -m mot_lib``).
"""
__version__ = "0.2.0"

# Pin the CPU numerics (kernel dispatch, MKL, oneDNN, threads) before anything runs in torch; see numerics.py.
from .engine import numerics
numerics.pin()
numerics.check(stacklevel=2)
# Keep freed memory for the next step's temporaries (the same numbers, a sixth less time); see heap.py.
from .engine import heap  # noqa: E402
heap.keep_freed_memory()

from .engine.config import Setting, SingleConfig, TrainConfig, check_seeds  # noqa: E402
from .engine.data import Dataset, make_dataset, make_signals  # noqa: E402
from .engine.training import DivergenceError, Run, stage_of, train_mot, train_single  # noqa: E402
from .engine import config, data, metrics, models, training  # noqa: E402
from . import book, stats  # noqa: E402

__all__ = ["__version__", "Setting", "TrainConfig", "SingleConfig", "check_seeds", "Dataset", "make_dataset",
           "make_signals", "DivergenceError", "Run", "stage_of", "train_mot", "train_single",
           "config", "data", "metrics", "models", "training", "book", "stats", "numerics"]
