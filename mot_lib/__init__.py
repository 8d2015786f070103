"""mot_lib: the engine behind the executable companion to Li et al. (2025),
"Mixture-of-Transformers Learn Faster: A Theoretical Study on Classification Problems".

Import it as ``import mot_lib as mot`` in every chapter.
"""
__version__ = "0.2.0"

# Pin the CPU numerics (kernel dispatch, MKL, oneDNN, threads) before anything runs in torch; see numerics.py.
from . import numerics
numerics.pin()
numerics.check(stacklevel=2)

from .config import Setting, SingleConfig, TrainConfig, check_seeds
from .data import Dataset, make_dataset, make_signals
from .training import DivergenceError, Run, stage_of, train_mot, train_single
from . import book, metrics, models, rates  # noqa: E402

__all__ = ["__version__", "Setting", "TrainConfig", "SingleConfig", "check_seeds", "Dataset", "make_dataset",
           "make_signals", "DivergenceError", "Run", "stage_of", "train_mot", "train_single",
           "metrics", "models", "book", "rates", "numerics"]
