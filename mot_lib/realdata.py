"""The paper's experiments on real data (chapter ``07_real_data``): images cut into patch tokens, a
text pipeline, small ViT-style models, minibatch Adam.

Li et al. (2025) validate their theory on CIFAR-10 and CIFAR-100 "modified" by replacing image
patches with noise, and on text classification, with small Vision-Transformer experts against a
multi-head transformer and an attention-free MoE.  Their architectures, noise model and
hyperparameters are not public; everything below is this companion's own instantiation:

* **Tokens.** An image (H x W x C, scaled to [0, 1]) is cut into non-overlapping ``patch`` x ``patch``
  patches; each flattened patch is a token in R^p, p = patch^2 C.  A text is lower-cased and split
  into words; a vocabulary is built from the training split only; ids are padded/truncated to
  ``seq_len`` and mapped to a *fixed* random embedding in R^``text_dim`` (a seeded Gaussian table,
  not trained: the experts' own linear token embeddings learn on top of it).
* **Noise.** In each image a share ``noise_share`` of the patches (chosen at random, seeded by
  ``data_seed``) is replaced by Gaussian noise whose pixels have the training images' per-pixel mean
  and standard deviation (``noise_share=0`` is the unmodified data set).  For text the same is done
  to the token vectors of the real (non-pad) tokens.
* **MoT.** M experts, each a one-layer ViT: token embedding ``E`` (p x D), positions, one
  multi-head self-attention layer (``Wq, Wk, Wv, Wo``), a GELU MLP (D -> mlp_ratio D -> D), both with
  residual connections and parameter-free pre-LayerNorm, mean pooling over tokens and a linear head to
  class logits.  A linear gate ``Theta`` (p x M) scores the *mean token* of a sample,
  ``h = Theta^T mean_l x_l``; training routes to ``argmax_m (h_m + r_m)`` with ``r_m ~ U[0, lam]``,
  evaluation to ``argmax_m h_m``; the output is ``pi_m(X) f_m(X)`` with ``pi = softmax(h)`` so that
  the gate gets a gradient (as in the synthetic engine).  ``Wq, Wk`` start small (std ``sigma_qk``),
  so at initialisation attention is nearly uniform, the analogue of the theory's ``W_KQ`` near 0.
* **Three stages** (epochs): Stage I (epoch <= T1) trains everything but the attention layer,
  Stage II (T1 < epoch <= T2) only the attention layer, Stage III the non-attention part again; the
  gate is trained throughout.  ``joint`` trains everything from the start (the control).
* **Baselines.** A single one-layer ViT with ``heads_single`` heads, and an attention-free MoE (the
  MoT's experts without their attention layer: per-token MLP, then mean pooling; pooling first would
  throw away where each patch sits).  Both are widened until their parameter count is as close as
  possible to the MoT's total (all experts plus gate).
* **Training.** Cross-entropy, minibatch Adam (``lr`` for experts and baselines, ``lr_gate`` for the
  gate), float32.  Seeds are the leading tensor dimension: the loss is summed over seeds, and Adam is
  elementwise, so seeds never mix.  Experts are a tensor dimension too: samples are grouped by routed
  expert into padded buckets and one einsum runs all experts of all seeds at once
  (``mot_forward_loop`` is the per-expert Python loop it is tested and timed against).

Seeds vary the initialisation, the minibatch order and the exploration noise; the data set (split
and noise pattern) is fixed by ``data_seed``, as the paper's modified CIFAR is one data set.
"""
from __future__ import annotations

import csv
import math
import pickle
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from . import rates
from .book import ChapterParams, register
from .config import _check, _check_list
from .training import DivergenceError

DATASETS = ("digits", "cifar10", "cifar100", "cifar10+cifar100", "text")
DEVICES = ("auto", "cpu", "cuda")
MODELS = ("MoT", "MoT (joint)", "single ViT", "attention-free MoE")
#: Presets per data set (used where the corresponding parameter is None).  M=5 for CIFAR-10 and M=12
#: for CIFAR-100 are the paper's; the rest are ours.
PRESETS = {
    "digits": dict(M=5, patch=4, width=16, epochs=15, target_acc=0.75),
    "cifar10": dict(M=5, patch=4, width=64, epochs=20, target_acc=0.5),
    "cifar100": dict(M=12, patch=4, width=64, epochs=20, target_acc=0.2),
    "text": dict(M=5, patch=None, width=32, epochs=20, target_acc=0.7),
}
CIFAR = {
    "cifar10": dict(sub="cifar-10-batches-py", train=[f"data_batch_{i}" for i in range(1, 6)], test="test_batch",
                    meta="batches.meta", labels="labels", names="label_names", C=10),
    "cifar100": dict(sub="cifar-100-python", train=["train"], test="test", meta="meta", labels="fine_labels",
                     names="fine_label_names", C=100),
}


#: A run is rejected before training unless each split holds at least two classes and every class of the
#: test split has at least this many training samples (``check_classes`` says why).
MIN_TRAIN_PER_CLASS = 2
#: The chapter's rule for a model that learned nothing, fixed before looking: its median final test error over
#: seeds is not below the trivial error (the lower of chance, 1 - 1/classes, and always answering the training
#: split's most frequent class) by at least this much; the verdict rows that compare it are then inconclusive.
CHANCE_MARGIN = 0.05


# ============================================================================ device
def resolve_device(device: str = "auto") -> torch.device:
    """"auto": CUDA when ``torch.cuda.is_available()``, else CPU; "cuda" without a GPU raises."""
    _check("device", device, choices=DEVICES)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' but torch.cuda.is_available() is False (no GPU, or a CPU-only torch); "
                         "use device='auto' or device='cpu'")
    return torch.device(device)


# ============================================================================ tokens and noise
def patchify(images: np.ndarray, patch: int) -> np.ndarray:
    """(n, H, W, C) -> (n, L, p): non-overlapping patches in row-major order, L = HW/patch^2, p = patch^2 C."""
    n, H, W, C = images.shape
    if H % patch or W % patch:
        raise ValueError(f"patch={patch} must divide the image size {H}x{W}")
    x = images.reshape(n, H // patch, patch, W // patch, patch, C).transpose(0, 1, 3, 2, 4, 5)
    return np.ascontiguousarray(x.reshape(n, (H // patch) * (W // patch), patch * patch * C))


def replace_with_noise(tokens: np.ndarray, share: float, mean: np.ndarray, std: np.ndarray,
                       rng: np.random.Generator, mask: np.ndarray | None = None):
    """Replace ``round(share * L_real)`` randomly chosen real tokens of each sample by Gaussian noise.

    tokens (n, L, p); mean, std broadcastable to (L, p) (for images: the per-pixel statistics of the
    training images, cut into patches the same way); mask (n, L) marks real tokens (None: all).
    Returns the modified copy and the (n, L) boolean array of replaced tokens.
    """
    n, L, p = tokens.shape
    out = tokens.copy()
    real = np.ones((n, L), bool) if mask is None else np.asarray(mask, bool)
    k = np.floor(share * real.sum(1) + 0.5).astype(int)
    keys = rng.random((n, L))
    keys[~real] = np.inf
    rank = np.argsort(np.argsort(keys, axis=1), axis=1)
    replaced = rank < k[:, None]
    rows, pos = np.nonzero(replaced)
    if rows.size:
        mean = np.broadcast_to(np.asarray(mean, np.float32), (L, p))
        std = np.broadcast_to(np.asarray(std, np.float32), (L, p))
        noise = rng.standard_normal((rows.size, p), dtype=np.float32)
        out[rows, pos] = mean[pos] + std[pos] * noise
    return out, replaced


_WORD = re.compile(r"[a-z0-9']+")


def tokenize(text: str) -> list[str]:
    """Lower-case words (letters, digits, apostrophes)."""
    return _WORD.findall(text.lower())


def build_vocab(texts, max_vocab: int) -> dict[str, int]:
    """Word -> id from the training texts only: 0 is padding, 1 unknown, then by count (ties by word)."""
    counts = Counter(w for t in texts for w in tokenize(t))
    words = sorted(counts, key=lambda w: (-counts[w], w))[: max(0, max_vocab - 2)]
    return {"<pad>": 0, "<unk>": 1, **{w: i + 2 for i, w in enumerate(words)}}


def encode(texts, vocab: dict[str, int], seq_len: int) -> np.ndarray:
    """(n, seq_len) int ids, truncated or padded with 0."""
    out = np.zeros((len(texts), seq_len), np.int64)
    for i, t in enumerate(texts):
        ids = [vocab.get(w, 1) for w in tokenize(t)][:seq_len]
        out[i, :len(ids)] = ids
    return out


# ============================================================================ loaders
def load_digits_images():
    """scikit-learn's bundled 8x8 digits (no download): images (n, 8, 8, 1) in [0, 1], labels, names."""
    from sklearn.datasets import load_digits
    d = load_digits()
    return (d.images[..., None] / 16.0).astype(np.float32), d.target.astype(np.int64), [str(c) for c in range(10)]


def cifar_folder(data_dir, which: str) -> Path:
    """The folder holding ``which``'s official python pickles: ``data_dir`` itself or its official
    subfolder (cifar-10-batches-py, cifar-100-python).  Raises naming what is missing."""
    spec = CIFAR[which]
    if data_dir is None:
        raise ValueError(f"dataset={which!r} needs data_dir, a folder in the official python pickle format "
                         f"({', '.join(spec['train'] + [spec['test'], spec['meta']])})")
    d = Path(data_dir)
    if not d.is_dir():
        raise ValueError(f"data_dir={str(data_dir)!r}: no such folder")
    if (d / spec["sub"]).is_dir():
        d = d / spec["sub"]
    missing = [f for f in spec["train"] + [spec["test"], spec["meta"]] if not (d / f).is_file()]
    if missing:
        raise ValueError(f"{d}: missing {which} file(s) {missing} (expected the official python pickle format)")
    return d


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle names a global that the official CIFAR files do not hold (raised before it is called)."""


def _numeric_dtype(*args):
    """numpy.dtype, restricted to numbers (bool, int, unsigned, float, complex): no object or structured arrays."""
    dt = np.dtype(*args)
    if dt.kind not in "biufc":
        raise UnsafePickleError(f"numpy.dtype {dt.str!r} (only arrays of numbers are allowed)")
    return dt


def _latin1(text, encoding="utf-8"):
    """_codecs.encode as Python 3 writes bytes at protocol 2 (``encode(str, 'latin1')``), and nothing else."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise UnsafePickleError(f"_codecs.encode with {type(text).__name__}, {encoding!r} (only str, 'latin1')")
    return text.encode("latin1")


#: The only globals a CIFAR pickle may name, as numpy 1.x (``numpy.core``) and 2.x (``numpy._core``) write
#: them: an array is ``_reconstruct(ndarray, ...)`` then its state (protocol <= 4) or ``_frombuffer`` (protocol
#: 5), its dtype ``numpy.dtype``, a numpy scalar ``scalar``; Python 3 writes bytes at protocol 2 as
#: ``_codecs.encode``.  The callables are taken from numpy itself, never imported by the name in the file.
_SAFE_GLOBALS = {
    **{(m, "_reconstruct"): np.empty(0).__reduce__()[0] for m in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{(m, "scalar"): np.float64(0).__reduce__()[0] for m in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{(m, "_frombuffer"): np.empty(1).__reduce_ex__(5)[0] for m in ("numpy.core.numeric", "numpy._core.numeric")},
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _numeric_dtype,
    ("_codecs", "encode"): _latin1,
}


class _CifarUnpickler(pickle.Unpickler):
    """Loads only what the official CIFAR-10/100 python files hold (dicts, lists, tuples, str, bytes, ints,
    floats and numpy arrays of numbers).  Unpickling calls whatever global a file names, so any other global
    is refused in ``find_class``, before it can be called."""

    def find_class(self, module, name):
        f = _SAFE_GLOBALS.get((module, name))
        if f is None:
            raise UnsafePickleError(f"global {module}.{name}")
        return f


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            obj = _CifarUnpickler(f, encoding="bytes").load()
    except UnsafePickleError as e:
        raise ValueError(f"{path}: refused to unpickle {e}: a CIFAR file may hold only dicts, lists, strings, "
                         "bytes, numbers and numpy arrays of numbers (nothing in it was run)") from None
    except (EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError, ImportError, IndexError,
            KeyError, OverflowError, MemoryError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not a readable python pickle (truncated or corrupt?): {type(e).__name__}: {e}") \
            from None
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a pickled dict, got {type(obj).__name__}")
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}


def _cifar_batch(path: Path, label_key: str, C: int):
    d = _unpickle(path)
    for key in ("data", label_key):
        if key not in d:
            raise ValueError(f"{path}: no key {key!r} (keys: {sorted(map(str, d))})")
    try:
        data = np.asarray(d["data"])
        labels = np.asarray(d[label_key])
    except Exception as e:  # ragged lists and the like
        raise ValueError(f"{path}: keys 'data'/{label_key!r} are not arrays: {e}") from None
    if data.ndim != 2 or data.shape[1] != 3072 or data.shape[0] == 0:
        raise ValueError(f"{path}: key 'data' has shape {data.shape}; expected (n, 3072) with n >= 1 "
                         "(32x32 RGB images, channel-major)")
    if not np.issubdtype(data.dtype, np.integer) or data.min() < 0 or data.max() > 255:
        raise ValueError(f"{path}: key 'data' must hold integers in [0, 255] (dtype {data.dtype})")
    if labels.shape != (data.shape[0],):
        raise ValueError(f"{path}: key {label_key!r} has shape {labels.shape}; expected ({data.shape[0]},), "
                         "one label per image")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{path}: key {label_key!r} must hold integers (dtype {labels.dtype})")
    bad = np.nonzero((labels < 0) | (labels >= C))[0]
    if bad.size:
        raise ValueError(f"{path}: key {label_key!r} item {bad[0]} is {labels[bad[0]]}; labels must lie in [0, {C - 1}]")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return images, labels.astype(np.int64)


def load_cifar(data_dir, which: str):
    """CIFAR-10 or CIFAR-100 (fine labels) from the official python pickles: (train images (n, 32, 32, 3)
    uint8, train labels, test images, test labels, class names).  Every file is checked; a bad one
    raises a ValueError naming it (and the key) before anything is trained.  The pickles are read by a
    restricted unpickler (``_CifarUnpickler``): a file that names any global the official files do not hold
    is refused before that global is called."""
    spec = CIFAR[which]
    d = cifar_folder(data_dir, which)
    meta_path = d / spec["meta"]
    meta = _unpickle(meta_path)
    if spec["names"] not in meta:
        raise ValueError(f"{meta_path}: no key {spec['names']!r} (keys: {sorted(map(str, meta))})")
    names = [n.decode("latin1") if isinstance(n, bytes) else str(n) for n in meta[spec["names"]]]
    if len(names) != spec["C"]:
        raise ValueError(f"{meta_path}: key {spec['names']!r} has {len(names)} names; {which} has {spec['C']}")
    parts = [_cifar_batch(d / f, spec["labels"], spec["C"]) for f in spec["train"]]
    xtr = np.concatenate([p[0] for p in parts])
    ytr = np.concatenate([p[1] for p in parts])
    xte, yte = _cifar_batch(d / spec["test"], spec["labels"], spec["C"])
    return xtr, ytr, xte, yte, names


def read_text_csv(path) -> list[tuple[int, str, str]]:
    """Rows (line, label, text) of a CSV with the header ``label,text``; every row checked."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"text file {str(path)!r}: no such file")
    rows = []
    try:
        with open(p, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None or [h.strip().lower() for h in header] != ["label", "text"]:
                raise ValueError(f"{p}: line 1: the header must be 'label,text'; got {header!r}")
            for row in reader:
                line = reader.line_num
                if not row:
                    continue  # a blank line
                if len(row) != 2:
                    raise ValueError(f"{p}: line {line}: expected 2 fields (label,text), got {len(row)}")
                label, text = row[0].strip(), row[1]
                if not label:
                    raise ValueError(f"{p}: line {line}: empty label")
                if not tokenize(text):
                    raise ValueError(f"{p}: line {line}: empty text (no words)")
                rows.append((line, label, text))
    except UnicodeDecodeError as e:
        raise ValueError(f"{p}: not UTF-8 text: {e}") from None
    except csv.Error as e:
        raise ValueError(f"{p}: line {reader.line_num}: {e}") from None
    if not rows:
        raise ValueError(f"{p}: no data rows after the header")
    return rows


def map_labels(train_rows, test_rows, train_file, test_file):
    """Integer labels 0..C-1 (if every training label is an integer) or strings mapped to ids in order of
    first appearance in the training split.  A test label the training split lacks raises, naming the line."""
    labs = [r[1] for r in train_rows]
    if all(re.fullmatch(r"-?\d+", lab) for lab in labs):
        for line, lab, _ in train_rows:
            if int(lab) < 0:
                raise ValueError(f"{train_file}: line {line}: label {lab} is out of range; integer labels start at 0")
        C = max(int(lab) for lab in labs) + 1
        names = [str(c) for c in range(C)]

        def to_id(line, lab, where):
            if not re.fullmatch(r"-?\d+", lab) or not 0 <= int(lab) < C:
                raise ValueError(f"{where}: line {line}: label {lab!r} is out of range; the training labels are "
                                 f"integers in [0, {C - 1}]")
            return int(lab)
    else:
        names = list(dict.fromkeys(labs))
        ids = {lab: i for i, lab in enumerate(names)}
        C = len(names)

        def to_id(line, lab, where):
            if lab not in ids:
                raise ValueError(f"{where}: line {line}: label {lab!r} does not occur in the training split")
            return ids[lab]
    ytr = np.array([to_id(li, lab, train_file) for li, lab, _ in train_rows], np.int64)
    yte = np.array([to_id(li, lab, test_file) for li, lab, _ in test_rows], np.int64)
    return ytr, yte, names


def load_text(text_csv, text_test_csv=None, data_seed: int = 0, test_share: float = 0.2):
    """(train rows, test rows, train labels, test labels, class names); without ``text_test_csv`` a
    seeded 80/20 split of ``text_csv`` (the training rows keep their file order)."""
    if text_csv is None:
        raise ValueError("dataset='text' needs text_csv, a CSV file with the header 'label,text'")
    rows = read_text_csv(text_csv)
    if text_test_csv is not None:
        train, test = rows, read_text_csv(text_test_csv)
        test_file = text_test_csv
    else:
        if len(rows) < 2:
            raise ValueError(f"{text_csv}: {len(rows)} data row(s); a train/test split needs at least 2")
        perm = np.random.default_rng(data_seed).permutation(len(rows))
        n_test = max(1, int(round(test_share * len(rows))))
        te = set(perm[:n_test].tolist())
        train = [r for i, r in enumerate(rows) if i not in te]
        test = [r for i, r in enumerate(rows) if i in te]
        test_file = text_csv
    ytr, yte, names = map_labels(train, test, text_csv, test_file)
    return train, test, ytr, yte, names


def check_classes(ytr, yte, names, where: str, max_train: int | None = None) -> None:
    """Reject, before training, a data set the chapter's statistics cannot use (one line naming ``where``,
    the file or parameter the data came from):

    * fewer than 2 classes in the training split: every model can only learn one constant answer, so their
      test errors tie by construction and a comparison between them says nothing;
    * fewer than 2 classes in the test split: answering that one class scores 0 error, so the test error
      cannot tell a model that learned from one that did not (the chapter's learned-nothing rule compares
      with exactly that trivial answer);
    * a class of the test split with fewer than ``MIN_TRAIN_PER_CLASS`` = 2 training samples: the models saw
      it at most once, as one point to store rather than a class with a spread to learn, so its test samples
      measure memory, not learning; 2 is the smallest count at which a class has any spread.
    The verdicts themselves are over seeds, so no larger per-class count follows from their intervals."""
    ytr, yte = np.asarray(ytr), np.asarray(yte)
    hint = (f" (max_train={max_train} keeps the first {len(ytr)} training samples; raise it or leave it None)"
            if max_train is not None else "")
    name = lambda c: repr(names[c]) if c < len(names) else repr(c)  # noqa: E731
    for split, y in (("training", ytr), ("test", yte)):
        cls = np.unique(y)
        if cls.size < 2:
            held = ", ".join(name(c) for c in cls) or "none"
            raise ValueError(f"{where}: the {split} split holds {cls.size} class ({held}) in {len(y)} sample(s); "
                             f"a run needs at least 2 classes in each split{hint}")
    counts = np.bincount(ytr, minlength=int(max(ytr.max(), yte.max())) + 1)
    few = [int(c) for c in np.unique(yte) if counts[c] < MIN_TRAIN_PER_CLASS]
    if few:
        c = few[0]
        raise ValueError(f"{where}: class {name(c)} of the test split has {counts[c]} training sample(s)"
                         f"{f' ({len(few)} such classes)' if len(few) > 1 else ''}; every class of the test split "
                         f"needs at least {MIN_TRAIN_PER_CLASS} training samples{hint}")


def trivial_error(ytr, yte, n_classes: int) -> float:
    """The test error of learning nothing: the lower of chance (1 - 1/n_classes) and always answering the
    training split's most frequent class."""
    ytr, yte = np.asarray(ytr), np.asarray(yte)
    major = int(np.bincount(ytr).argmax())
    return float(min(1 - 1 / n_classes, np.mean(yte != major)))


# ============================================================================ the prepared data set
@dataclass
class RealData:
    """A tokenised data set: tokens (n, L, p) float32 (standardised per feature with training
    statistics), labels, an optional (n, L) mask of real tokens (text), and the replaced-token masks."""
    name: str
    X_train: torch.Tensor
    y_train: torch.Tensor
    X_test: torch.Tensor
    y_test: torch.Tensor
    n_classes: int
    class_names: list
    mask_train: torch.Tensor | None = None
    mask_test: torch.Tensor | None = None
    replaced_train: np.ndarray | None = None
    replaced_test: np.ndarray | None = None
    info: dict = field(default_factory=dict)

    @property
    def L(self) -> int:
        return self.X_train.shape[1]

    @property
    def p(self) -> int:
        return self.X_train.shape[2]

    def to(self, device) -> "RealData":
        mv = lambda t: None if t is None else t.to(device)  # noqa: E731
        return RealData(self.name, mv(self.X_train), mv(self.y_train), mv(self.X_test), mv(self.y_test),
                        self.n_classes, self.class_names, mv(self.mask_train), mv(self.mask_test),
                        self.replaced_train, self.replaced_test, self.info)


def _finish(name, tr, te, ytr, yte, names, noise_share, mean, std, rng, mtr=None, mte=None, info=None):
    """Noise replacement (training statistics), then per-feature standardisation (training statistics)."""
    tr, rtr = replace_with_noise(tr, noise_share, mean, std, rng, mtr)
    te, rte = replace_with_noise(te, noise_share, mean, std, rng, mte)
    real = np.ones(tr.shape[:2], bool) if mtr is None else mtr
    flat = tr[real]
    mu, sd = flat.mean(0), flat.std(0) + 1e-6
    tr = (tr - mu) / sd
    te = (te - mu) / sd
    if mtr is not None:
        tr[~mtr] = 0.0
        te[~mte] = 0.0
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
    m = lambda a: None if a is None else torch.from_numpy(np.asarray(a, bool))  # noqa: E731
    return RealData(name, t(tr), torch.from_numpy(ytr), t(te), torch.from_numpy(yte), len(names), names,
                    m(mtr), m(mte), rtr, rte, info or {})


def prepare(dataset: str = "digits", *, noise_share: float = 0.0, patch: int | None = None, data_seed: int = 0,
            data_dir=None, text_csv=None, text_test_csv=None, seq_len: int = 64, max_vocab: int = 5000,
            text_dim: int = 32, max_train: int | None = None, test_share: float = 0.25) -> RealData:
    """Load and tokenise one data set (see the module docstring).  ``max_train`` keeps the first that
    many training samples (after the split), e.g. for a short CPU run on CIFAR."""
    _check("noise_share", noise_share, lo=0.0, hi=1.0)
    rng = np.random.default_rng(data_seed)
    if dataset == "digits" or dataset in CIFAR:
        if dataset == "digits":
            imgs, y, names = load_digits_images()
            perm = rng.permutation(len(y))
            n_te = int(round(test_share * len(y)))
            xte, yte, xtr, ytr = imgs[perm[:n_te]], y[perm[:n_te]], imgs[perm[n_te:]], y[perm[n_te:]]
        else:
            xtr, ytr, xte, yte, names = load_cifar(data_dir, dataset)
            xtr, xte = xtr.astype(np.float32) / 255.0, xte.astype(np.float32) / 255.0
        if max_train is not None:
            xtr, ytr = xtr[:max_train], ytr[:max_train]
        check_classes(ytr, yte, names, f"data_dir={str(data_dir)!r}" if dataset in CIFAR else "dataset='digits'",
                      max_train)
        patch = PRESETS[dataset]["patch"] if patch is None else patch
        mean_img, std_img = xtr.mean(0, keepdims=True), xtr.std(0, keepdims=True)
        mean, std = patchify(mean_img, patch)[0], patchify(std_img, patch)[0]
        info = dict(image=xtr.shape[1:], patch=patch, n_train=len(ytr), n_test=len(yte))
        return _finish(dataset, patchify(xtr, patch), patchify(xte, patch), ytr, yte, names, noise_share,
                       mean, std, rng, info=info)
    if dataset == "text":
        train, test, ytr, yte, names = load_text(text_csv, text_test_csv, data_seed)
        if max_train is not None:
            train, ytr = train[:max_train], ytr[:max_train]
        check_classes(ytr, yte, names, f"text_csv={str(text_csv)!r}"
                      + (f" with text_test_csv={str(text_test_csv)!r}" if text_test_csv is not None else ""), max_train)
        vocab = build_vocab([r[2] for r in train], max_vocab)
        ids_tr, ids_te = encode([r[2] for r in train], vocab, seq_len), encode([r[2] for r in test], vocab, seq_len)
        table = rng.standard_normal((len(vocab), text_dim)).astype(np.float32)
        table[0] = 0.0
        tr, te = table[ids_tr], table[ids_te]
        mtr, mte = ids_tr != 0, ids_te != 0
        flat = tr[mtr]
        info = dict(vocab=len(vocab), seq_len=seq_len, n_train=len(ytr), n_test=len(yte))
        return _finish("text", tr, te, ytr, yte, names, noise_share, flat.mean(0), flat.std(0), rng, mtr, mte, info)
    raise ValueError(f"dataset={dataset!r} is not allowed; choose one of {sorted(set(DATASETS) - {'cifar10+cifar100'})}")


# ============================================================================ models
@dataclass(frozen=True)
class ModelConfig:
    """Sizes and training of one model family on one data set (every field a chapter parameter)."""
    M: int = 5                 # experts (MoT and attention-free MoE)
    width: int = 32            # D, the experts' token width
    mlp_ratio: int = 2         # MLP hidden = mlp_ratio * D
    heads_expert: int = 1      # attention heads per MoT expert
    heads_single: int = 4      # attention heads of the single ViT
    epochs: int = 24
    T1: int = 8                # end of Stage I (epochs)
    T2: int = 16               # end of Stage II (epochs)
    batch_size: int = 128
    lr: float = 3e-3           # Adam step of experts and baselines
    lr_gate: float = 3e-3      # Adam step of the gate
    lam: float = 1.0           # exploration: r_m ~ U[0, lam] added to the gate scores during training
    sigma_qk: float = 0.02     # init std of Wq, Wk (near-uniform attention at the start)
    gate: str = "mean"         # the gate reads the mean token ("mean") or all tokens ("flat")
    eval_chunk: int = 2048     # test samples per forward pass at evaluation

    def __post_init__(self):
        _check("M", self.M, kind=int, lo=1, hi=256)
        _check("width", self.width, kind=int, lo=2, hi=4096)
        _check("mlp_ratio", self.mlp_ratio, kind=int, lo=1, hi=16)
        _check("heads_expert", self.heads_expert, kind=int, lo=1, hi=self.width)
        _check("heads_single", self.heads_single, kind=int, lo=1, hi=self.width * 16)
        if self.width % self.heads_expert:
            raise ValueError(f"heads_expert={self.heads_expert} must divide width={self.width}")
        _check("epochs", self.epochs, kind=int, lo=1, hi=10_000)
        _check("T1", self.T1, kind=int, lo=0, hi=self.epochs)
        _check("T2", self.T2, kind=int, lo=self.T1, hi=self.epochs)
        _check("batch_size", self.batch_size, kind=int, lo=1, hi=1_000_000)
        _check("lr", self.lr, lo=0.0, hi=10.0, lo_open=True)
        _check("lr_gate", self.lr_gate, lo=0.0, hi=10.0)
        _check("lam", self.lam, lo=0.0, hi=1e4)
        _check("sigma_qk", self.sigma_qk, lo=0.0, hi=10.0, lo_open=True)
        _check("gate", self.gate, choices=("mean", "flat"))
        _check("eval_chunk", self.eval_chunk, kind=int, lo=1, hi=10_000_000)


ATTN = ("Wq", "Wk", "Wv", "Wo")


def vit_param_count(p: int, L: int, D: int, hidden: int, C: int, attention: bool = True) -> int:
    """Parameters of one ViT expert (embedding, positions, [attention], MLP, head)."""
    n = p * D + D + L * D + D * hidden + hidden + hidden * D + D + D * C + C
    return n + (4 * D * D if attention else 0)


def init_vit(gen: torch.Generator, lead: tuple, p: int, L: int, D: int, hidden: int, C: int,
             attention: bool = True, sigma_qk: float = 0.02) -> dict:
    """One seed's ViT parameters with leading dims ``lead`` (e.g. (M,) for M experts, () for one model)."""
    r = lambda *shape, std: torch.randn(*lead, *shape, generator=gen) * std  # noqa: E731
    z = lambda *shape: torch.zeros(*lead, *shape)  # noqa: E731
    P = {"E": r(p, D, std=p ** -0.5), "bE": z(D), "pos": r(L, D, std=0.02),
         "W1": r(D, hidden, std=D ** -0.5), "b1": z(hidden), "W2": r(hidden, D, std=hidden ** -0.5), "b2": z(D),
         "Wh": r(D, C, std=D ** -0.5), "bh": z(C)}
    if attention:
        P.update(Wq=r(D, D, std=sigma_qk), Wk=r(D, D, std=sigma_qk), Wv=r(D, D, std=D ** -0.5),
                 Wo=r(D, D, std=D ** -0.5))
    return P


def _masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over the token axis (-2) of x (..., L, k), over real tokens only when a mask (..., L) is given."""
    if mask is None:
        return x.mean(-2)
    m = mask.to(x.dtype)[..., None]
    return (x * m).sum(-2) / m.sum(-2).clamp_min(1.0)


def vit_forward(P: dict, x: torch.Tensor, mask: torch.Tensor | None, heads: int) -> torch.Tensor:
    """Class logits (G, B, C) of G one-layer ViTs (parameters with leading dim G) on x (G, B, L, p).

    Attention is used when P holds ``Wq``; without it this is the attention-free expert."""
    G, B, L, _ = x.shape
    h = torch.einsum("gblp,gpd->gbld", x, P["E"]) + P["bE"][:, None, None] + P["pos"][:, None]
    D = h.shape[-1]
    if "Wq" in P:
        a = F.layer_norm(h, (D,))
        dh = D // heads
        q = torch.einsum("gbld,gde->gble", a, P["Wq"]).reshape(G, B, L, heads, dh)
        k = torch.einsum("gbld,gde->gble", a, P["Wk"]).reshape(G, B, L, heads, dh)
        v = torch.einsum("gbld,gde->gble", a, P["Wv"]).reshape(G, B, L, heads, dh)
        s = torch.einsum("gbqhe,gbkhe->gbhqk", q, k) * dh ** -0.5
        if mask is not None:
            s = s.masked_fill(~mask[:, :, None, None, :], float("-inf"))
        w = torch.softmax(s, -1)
        o = torch.einsum("gbhqk,gbkhe->gbqhe", w, v).reshape(G, B, L, D)
        h = h + torch.einsum("gbld,gde->gble", o, P["Wo"])
    m = F.layer_norm(h, (D,))
    u = F.gelu(torch.einsum("gbld,gdk->gblk", m, P["W1"]) + P["b1"][:, None, None])
    h = h + torch.einsum("gblk,gkd->gbld", u, P["W2"]) + P["b2"][:, None, None]
    pooled = _masked_mean(F.layer_norm(h, (D,)), mask)
    return torch.einsum("gbd,gdc->gbc", pooled, P["Wh"]) + P["bh"][:, None]


def gate_input(x: torch.Tensor, mask: torch.Tensor | None, flat: bool) -> torch.Tensor:
    """What the gate sees of x (S, B, L, p): the mean token (S, B, p), or with ``flat`` all tokens
    concatenated (S, B, L p), i.e. a mean over tokens of position-specific embeddings."""
    if flat:
        xm = x if mask is None else x * mask[..., None].to(x.dtype)
        return xm.reshape(*x.shape[:2], -1)
    return _masked_mean(x, mask)


def gate_scores(theta: torch.Tensor, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """h (S, B, M) = Theta^T g(X) for x (S, B, L, p): theta (S, p, M) reads the mean token, theta
    (S, L p, M) all tokens (see ``gate_input``)."""
    flat = theta.shape[1] != x.shape[-1]
    return torch.einsum("sbp,spm->sbm", gate_input(x, mask, flat), theta)


def route(h: torch.Tensor, r: torch.Tensor | None = None):
    """Top-1 choice (S, B) of argmax(h + r) and the gate probability pi (S, B) of the chosen expert."""
    choice = (h if r is None else h + r).argmax(-1)
    pi = torch.softmax(h, -1).gather(-1, choice[..., None])[..., 0]
    return choice, pi


def mot_forward(experts: dict, theta: torch.Tensor, x: torch.Tensor, mask: torch.Tensor | None, heads: int,
                r: torch.Tensor | None = None):
    """MoT logits (S, B, C) and the routing choice (S, B).

    Samples are grouped by (seed, routed expert) into S*M buckets padded to the largest bucket; one
    batched einsum then runs every expert of every seed on its bucket with the expert's own weights
    (no per-sample weight copies).  Padding rows are computed and discarded: the cost is at most that
    of running every expert on every sample, and close to one expert per sample when routing is balanced.
    """
    S, B, L, p = x.shape
    M = theta.shape[-1]
    choice, pi = route(gate_scores(theta, x, mask), r)
    key = (torch.arange(S, device=x.device)[:, None] * M + choice).reshape(-1)      # (S*B,)
    order = torch.argsort(key, stable=True)
    counts = torch.bincount(key, minlength=S * M)
    starts = torch.cumsum(counts, 0) - counts
    ks = key[order]
    pos = torch.arange(S * B, device=x.device) - starts[ks]                          # slot within its bucket
    cap = int(counts.max())
    slot = torch.zeros(S * M, cap, dtype=torch.long, device=x.device)               # padding rows read sample 0
    slot[ks, pos] = order
    xb = x.reshape(S * B, L, p)[slot]                                                # (S*M, cap, L, p)
    mb = None if mask is None else mask.reshape(S * B, L)[slot]
    Pe = {k: v.reshape(S * M, *v.shape[2:]) for k, v in experts.items()}
    fb = vit_forward(Pe, xb, mb, heads)                                              # (S*M, cap, C)
    f = torch.empty(S * B, fb.shape[-1], dtype=fb.dtype, device=x.device)
    f = f.index_copy(0, order, fb[ks, pos])
    return pi[..., None] * f.reshape(S, B, -1), choice


def mot_forward_loop(experts: dict, theta: torch.Tensor, x: torch.Tensor, mask: torch.Tensor | None, heads: int,
                     r: torch.Tensor | None = None):
    """The same as ``mot_forward`` with a Python loop over seeds and experts (each expert runs on the
    samples routed to it): the reference the batched version is tested and timed against."""
    S, B, L, p = x.shape
    M = theta.shape[-1]
    choice, pi = route(gate_scores(theta, x, mask), r)
    out = []
    for s in range(S):
        f = None
        for m in range(M):
            sel = (choice[s] == m).nonzero()[:, 0]
            if sel.numel() == 0:
                continue
            Pm = {k: v[s, m][None] for k, v in experts.items()}
            fm = vit_forward(Pm, x[s, sel][None], None if mask is None else mask[s, sel][None], heads)[0]
            if f is None:
                f = fm.new_zeros(B, fm.shape[-1])
            f = f.index_copy(0, sel, fm)
        out.append(f)
    return pi[..., None] * torch.stack(out), choice


# ============================================================================ sizing
def model_sizes(p: int, L: int, C: int, cfg: ModelConfig) -> dict:
    """Widths and parameter counts (per seed) of every model; the baselines sized to the MoT's total."""
    D, hid, M = cfg.width, cfg.mlp_ratio * cfg.width, cfg.M
    g = p * L if cfg.gate == "flat" else p
    mot_total = M * vit_param_count(p, L, D, hid, C) + g * M
    H = cfg.heads_single
    cands = range(H, 64 * D + 1, H)
    Ds = min(cands, key=lambda w: abs(vit_param_count(p, L, w, cfg.mlp_ratio * w, C) - mot_total))
    base = vit_param_count(p, L, D, 0, C, attention=False)  # an expert without MLP hidden units
    per = 2 * D + 1                                          # parameters per MLP hidden unit
    hid_moe = max(1, int(round(((mot_total - g * M) / M - base) / per)))
    return {
        "MoT": dict(width=D, hidden=hid, heads=cfg.heads_expert, M=M, params=mot_total),
        "MoT (joint)": dict(width=D, hidden=hid, heads=cfg.heads_expert, M=M, params=mot_total),
        "single ViT": dict(width=Ds, hidden=cfg.mlp_ratio * Ds, heads=H, M=1,
                           params=vit_param_count(p, L, Ds, cfg.mlp_ratio * Ds, C)),
        "attention-free MoE": dict(width=D, hidden=hid_moe, heads=0, M=M,
                                   params=M * vit_param_count(p, L, D, hid_moe, C, attention=False) + g * M),
    }


# ============================================================================ training
_MODEL_CODE = {"MoT": 1, "MoT (joint)": 1, "single ViT": 2, "attention-free MoE": 3}


@dataclass
class RealRun:
    """One model trained on every seed: a tidy history (model, seed, epoch, stage, train_loss,
    test_loss, test_acc), the final test-set routing (seed x class x expert counts) for the MoEs."""
    model: str
    seeds: list
    history: pd.DataFrame
    params: int
    size: dict
    dispatch: np.ndarray | None = None
    trivial_error: float = math.nan   # the test error of learning nothing on its data (``trivial_error``)

    def wide(self, quantity: str) -> pd.DataFrame:
        """index epoch, one column per seed."""
        return self.history.pivot(index="epoch", columns="seed", values=quantity)

    def final(self, quantity: str) -> pd.Series:
        return self.wide(quantity).iloc[-1]


def init_model(model: str, seed: int, data: RealData, size: dict, cfg: ModelConfig) -> dict:
    """One seed's parameters (CPU, float32), drawn from a generator seeded by (seed, model), so a seed's
    run does not depend on which other seeds share the batch."""
    gen = torch.Generator().manual_seed(1_000_003 * seed + _MODEL_CODE[model])
    p, L, C = data.p, data.L, data.n_classes
    if model == "single ViT":
        return init_vit(gen, (), p, L, size["width"], size["hidden"], C, True, cfg.sigma_qk)
    att = model != "attention-free MoE"
    P = init_vit(gen, (size["M"],), p, L, size["width"], size["hidden"], C, att, cfg.sigma_qk)
    P["theta"] = torch.zeros(p * L if cfg.gate == "flat" else p, size["M"])
    return P


def stage_of(epoch: int, cfg: ModelConfig, schedule: str) -> str:
    if schedule == "joint":
        return "joint"
    return "I" if epoch <= cfg.T1 else ("II" if epoch <= cfg.T2 else "III")


def _forward(model: str, P: dict, size: dict, x, mask, r=None):
    """Logits (S, B, C) and routing choice (S, B) or None."""
    if model == "single ViT":
        return vit_forward(P, x, mask, size["heads"]), None
    experts = {k: v for k, v in P.items() if k != "theta"}
    return mot_forward(experts, P["theta"], x, mask, max(size["heads"], 1), r)


def _batch(X, mask, idx):
    return X[idx], (None if mask is None else mask[idx])


@torch.no_grad()
def evaluate(model: str, P: dict, size: dict, data: RealData, S: int, chunk: int):
    """Test loss and accuracy per seed (S,), and the routing choice (S, n_test) (None for the single ViT)."""
    n = data.y_test.shape[0]
    loss = torch.zeros(S, device=data.X_test.device)
    correct = torch.zeros(S, device=data.X_test.device)
    choices = []
    step = max(1, chunk // S)
    for a in range(0, n, step):
        x = data.X_test[a:a + step]
        x = x[None].expand(S, *x.shape)
        m = None if data.mask_test is None else data.mask_test[a:a + step][None].expand(S, -1, -1)
        y = data.y_test[a:a + step]
        logits, choice = _forward(model, P, size, x, m)
        loss += F.cross_entropy(logits.transpose(1, 2), y[None].expand(S, -1), reduction="none").sum(1)
        correct += (logits.argmax(-1) == y).sum(1)
        if choice is not None:
            choices.append(choice)
    ch = torch.cat(choices, 1).cpu().numpy() if choices else None
    return (loss / n).cpu().numpy(), (correct / n).cpu().numpy(), ch


def train(model: str, data: RealData, seeds, cfg: ModelConfig, device="cpu", schedule: str | None = None) -> RealRun:
    """Train ``model`` (one of MODELS) on ``data`` for every seed at once with minibatch Adam.

    Returns the per-epoch history; raises DivergenceError if a loss turns NaN/inf."""
    if model not in MODELS:
        raise ValueError(f"model={model!r} is not allowed; choose one of {list(MODELS)}")
    device = resolve_device(device) if isinstance(device, str) else device
    schedule = schedule or ("three_stage" if model == "MoT" else "joint")
    seeds = list(seeds)
    S = len(seeds)
    size = model_sizes(data.p, data.L, data.n_classes, cfg)[model]
    per = [init_model(model, s, data, size, cfg) for s in seeds]
    P = {k: torch.stack([q[k] for q in per]).to(device).requires_grad_(True) for k in per[0]}
    gate = [P["theta"]] if "theta" in P else []
    opt = torch.optim.Adam([{"params": [v for k, v in P.items() if k != "theta"], "lr": cfg.lr}]
                           + ([{"params": gate, "lr": cfg.lr_gate}] if gate else []))
    data = data.to(device)
    n = data.y_train.shape[0]
    rngs = [np.random.default_rng([seed, 7]) for seed in seeds]
    gens = [torch.Generator().manual_seed(1_000_003 * seed + 11) for seed in seeds]
    rows = []
    for epoch in range(1, cfg.epochs + 1):
        stage = stage_of(epoch, cfg, schedule)
        frozen = set(ATTN) if stage in ("I", "III") else (set(P) - set(ATTN) - {"theta"} if stage == "II" else set())
        perms = torch.from_numpy(np.stack([g.permutation(n) for g in rngs])).to(device)
        tot = torch.zeros(S, device=device)
        for a in range(0, n, cfg.batch_size):
            idx = perms[:, a:a + cfg.batch_size]
            x, m = _batch(data.X_train, data.mask_train, idx)
            y = data.y_train[idx]
            r = None
            if gate:
                r = torch.stack([torch.rand(idx.shape[1], size["M"], generator=g) for g in gens]).to(device) * cfg.lam
            logits, _ = _forward(model, P, size, x, m, r)
            ls = F.cross_entropy(logits.transpose(1, 2), y, reduction="none").mean(1)
            loss = ls.sum()
            if not torch.isfinite(loss):
                raise DivergenceError(f"{model}: the training loss is {loss.item()} at epoch {epoch}; "
                                      f"lower lr={cfg.lr:g} or lr_gate={cfg.lr_gate:g}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            for k in frozen:
                P[k].grad = None
            opt.step()
            tot += ls.detach() * idx.shape[1]
        tl, acc, choice = evaluate(model, P, size, data, S, cfg.eval_chunk)
        if not np.all(np.isfinite(tl)):
            raise DivergenceError(f"{model}: the test loss is not finite at epoch {epoch}")
        train_loss = (tot / n).cpu().numpy()
        for i, seed in enumerate(seeds):
            rows.append(dict(model=model, seed=seed, epoch=epoch, stage=stage, train_loss=float(train_loss[i]),
                             test_loss=float(tl[i]), test_acc=float(acc[i])))
    dispatch = None
    if choice is not None:
        y = data.y_test.cpu().numpy()
        dispatch = np.zeros((S, data.n_classes, size["M"]), np.int64)
        for i in range(S):
            np.add.at(dispatch[i], (y, choice[i]), 1)
    return RealRun(model, seeds, pd.DataFrame(rows), size["params"], size, dispatch,
                   trivial_error(data.y_train.cpu().numpy(), data.y_test.cpu().numpy(), data.n_classes))


def train_all(data: RealData, seeds, cfg: ModelConfig, device="cpu", models=MODELS) -> dict[str, RealRun]:
    """Every model in ``models`` on the same data and seeds ("MoT (joint)" is the MoT trained jointly)."""
    return {m: train(m, data, seeds, cfg, device, schedule="joint" if m == "MoT (joint)" else None) for m in models}


# ============================================================================ measurements
def epochs_to_target(run: RealRun, target: float) -> pd.Series:
    """Per seed: the first epoch whose test accuracy reaches ``target`` (NaN if none does)."""
    w = run.wide("test_acc")
    hit = w >= target
    return pd.Series([float(w.index[hit[c].to_numpy()][0]) if hit[c].any() else float("nan") for c in w.columns],
                     index=w.columns)


def experts_used(dispatch: np.ndarray, used_share: float) -> np.ndarray:
    """Per seed: experts that receive at least ``used_share / M`` of the test samples (used_share=0.5:
    at least half an even share)."""
    counts = dispatch.sum(1)  # (S, M)
    M = counts.shape[1]
    frac = counts / counts.sum(1, keepdims=True)
    return (frac >= used_share / M).sum(1)


def summary_table(runs: dict[str, RealRun], target: float) -> pd.DataFrame:
    """Per model: parameters, width, final test error and loss (median over seeds), epochs to target."""
    out = []
    for name, run in runs.items():
        e = epochs_to_target(run, target)
        out.append({"model": name, "parameters": run.params, "width": run.size["width"],
                    "MLP hidden": run.size["hidden"], "experts": run.size["M"],
                    "final test error": float(np.median(1 - run.final("test_acc"))),
                    "final test loss": float(np.median(run.final("test_loss"))),
                    f"epochs to {target:g} (median)": float(np.nanmedian(e)) if e.notna().any() else float("nan"),
                    "seeds reaching it": int(e.notna().sum())})
    return pd.DataFrame(out).set_index("model")


def learned_nothing(run: RealRun, margin: float = CHANCE_MARGIN) -> str:
    """Why ``run`` learned nothing (its median final test error over seeds is not below its data's trivial
    error by ``margin``), or "" if it learned something or its trivial error is unknown."""
    if not np.isfinite(run.trivial_error):
        return ""
    err = float(np.median(1 - run.final("test_acc")))
    if err > run.trivial_error - margin:
        return (f"the {run.model} learned nothing: its median final test error {err:.3g} is not below the trivial "
                f"error {run.trivial_error:.3g} (chance or the most frequent class) by chance_margin={margin:g}")
    return ""


def verdict_rows(runs: dict[str, RealRun], target: float, share_pass: float, label: str = "",
                 chance_margin: float = CHANCE_MARGIN) -> list[dict]:
    """The chapter's population verdicts (see the chapter for the rules):

    1-2. MoT's final test error below the single ViT's / the attention-free MoE's: mean over seeds of the
         paired difference (baseline error - MoT error), Student-t 95%; holds if the interval lies above 0
         (0 itself excluded: a tie is not a win).
    3.   MoT reaches ``target`` test accuracy in fewer epochs than the single ViT: share of seeds where it
         does (a seed where the MoT never reaches it fails), Wilson 95%; holds if the interval lies above
         ``share_pass`` (excluded; 1 included), does not hold if below.
    A row is inconclusive, with the reason in its note, when a model it compares learned nothing
    (``learned_nothing`` with ``chance_margin``, a rule fixed before looking: 0.05, five points of error).
    """
    tag = f" ({label})" if label else ""
    err = {k: (1 - r.final("test_acc")).to_numpy() for k, r in runs.items()}
    n = len(err["MoT"])
    rows = []

    def add(row, models):
        why = [w for w in (learned_nothing(runs[m], chance_margin) for m in models) if w]
        if why:
            row.update(verdict="inconclusive", note="; ".join(why + ([row["note"]] if row.get("note") else [])))
        rows.append(row)

    for base in ("single ViT", "attention-free MoE"):
        if base not in err:
            continue
        d = err[base] - err["MoT"]
        add(rates.population_row(
            f"MoT's final test error is below the {base}'s{tag}", "mean paired difference > 0",
            rates.mean_t(d), rates.above(0.0), "mean over seeds of (baseline error - MoT error), Student t 95%", n),
            ("MoT", base))
    if "single ViT" in runs:
        em, es = epochs_to_target(runs["MoT"], target), epochs_to_target(runs["single ViT"], target)
        passed = [bool(np.isfinite(a) and (not np.isfinite(b) or a < b)) for a, b in zip(em, es)]
        add(rates.population_row(
            f"MoT reaches test accuracy {target:g} in fewer epochs than the single ViT{tag}",
            f"share of seeds > {share_pass:g}", rates.share(passed), rates.above(share_pass, 1.0),
            "share of seeds where it does, Wilson 95%", n), ("MoT", "single ViT"))
    return rows


def used_verdict_row(used10: np.ndarray, used100: np.ndarray) -> dict:
    """The gate uses more experts on CIFAR-100 than on CIFAR-10: mean paired (by seed) difference in
    experts used, Student-t 95%; holds if the interval lies above 0 (0 excluded: the same count is not more)."""
    d = np.asarray(used100, float) - np.asarray(used10, float)
    return rates.population_row("the gate uses more experts on CIFAR-100 than on CIFAR-10",
                                "mean paired difference > 0", rates.mean_t(d), rates.above(0.0),
                                "mean over seeds of (experts used on CIFAR-100 - on CIFAR-10), Student t 95%", len(d))


# ============================================================================ the chapter
@register("07_real_data")
@dataclass(frozen=True)
class RealDataParams(ChapterParams):
    """Parameters of notebooks/07_real_data.ipynb (None: the data set's preset, see PRESETS)."""
    seeds: tuple = tuple(range(10))
    dataset: str = "digits"          # digits | cifar10 | cifar100 | cifar10+cifar100 | text
    data_dir: str | None = None      # CIFAR: the folder of python pickles (or its parent)
    text_csv: str | None = None      # text: CSV with header label,text
    text_test_csv: str | None = None  # text: optional test CSV (else a seeded 80/20 split)
    device: str = "auto"             # auto | cpu | cuda
    M: int | None = None             # experts (preset: 5; CIFAR-100: 12)
    patch: int | None = None         # patch side in pixels (preset: digits 4, CIFAR 4)
    width: int | None = None         # experts' token width D (preset: digits 16, CIFAR 64, text 32)
    mlp_ratio: int = 2
    heads_single: int = 4
    gate: str = "mean"               # the gate reads the mean token (mean) or all tokens (flat)
    epochs: int | None = None        # preset: digits 15, CIFAR 20, text 20
    T1: int | None = None            # end of Stage I in epochs (None: epochs // 3)
    T2: int | None = None            # end of Stage II in epochs (None: 2 * epochs // 3)
    batch_size: int = 64
    lr: float = 0.01
    lr_gate: float = 0.01
    lam: float = 1.0
    noise_share: float = 0.25        # the main runs' share of replaced patches
    noise_shares: tuple = (0.0, 0.25, 0.5)  # the sweep (the main runs' share is reused, not rerun)
    target_acc: float | None = None  # preset: digits 0.75, CIFAR-10 0.5, CIFAR-100 0.2, text 0.7
    used_share: float = 0.5          # an expert is used if it gets >= used_share / M of the test samples
    share_pass: float = 0.5          # the share of seeds a per-seed property must exceed
    data_seed: int = 0               # the split and the noise pattern (fixed across seeds)
    seq_len: int = 64
    max_vocab: int = 5000
    text_dim: int = 32
    max_train: int | None = None     # keep only the first max_train training samples
    eval_chunk: int = 4096

    def __post_init__(self):
        super().__post_init__()
        _check("dataset", self.dataset, choices=DATASETS)
        _check("device", self.device, choices=DEVICES)
        for name in ("data_dir", "text_csv", "text_test_csv"):
            v = getattr(self, name)
            if v is not None and not isinstance(v, str):
                raise ValueError(f"{name}={v!r} must be a path (a string) or None")
        if self.dataset.startswith("cifar"):
            if self.data_dir is None:
                raise ValueError(f"dataset={self.dataset!r} needs data_dir, a folder in the official CIFAR "
                                 "python pickle format")
            if not Path(self.data_dir).is_dir():
                raise ValueError(f"data_dir={self.data_dir!r}: no such folder")
        if self.dataset == "text":
            if self.text_csv is None:
                raise ValueError("dataset='text' needs text_csv, a CSV file with the header 'label,text'")
            for name in ("text_csv", "text_test_csv"):
                v = getattr(self, name)
                if v is not None and not Path(v).is_file():
                    raise ValueError(f"{name}={v!r}: no such file")
        for name, lo, hi in (("M", 1, 256), ("patch", 1, 32), ("width", 2, 4096), ("epochs", 1, 10_000),
                             ("T1", 0, 10_000), ("T2", 0, 10_000), ("max_train", 1, 10_000_000)):
            if getattr(self, name) is not None:
                _check(name, getattr(self, name), kind=int, lo=lo, hi=hi)
        _check("noise_share", self.noise_share, lo=0.0, hi=1.0)
        v = _check_list("noise_shares", self.noise_shares)
        object.__setattr__(self, "noise_shares", v)
        if not v:
            raise ValueError("noise_shares=() needs at least one value")
        for x in v:
            _check("noise_shares", x, lo=0.0, hi=1.0)
        if self.target_acc is not None:
            _check("target_acc", self.target_acc, lo=0.0, hi=1.0, lo_open=True)
        _check("used_share", self.used_share, lo=0.0, hi=1.0, lo_open=True)
        _check("share_pass", self.share_pass, lo=0.0, hi=1.0, hi_open=True)
        _check("data_seed", self.data_seed, kind=int, lo=0, hi=2**31 - 1)
        _check("seq_len", self.seq_len, kind=int, lo=1, hi=100_000)
        _check("max_vocab", self.max_vocab, kind=int, lo=3, hi=10_000_000)
        _check("text_dim", self.text_dim, kind=int, lo=1, hi=4096)
        for ds in self.datasets():
            self.model_config(ds)   # validates sizes and stage boundaries per data set

    def datasets(self) -> list[str]:
        return ["cifar10", "cifar100"] if self.dataset == "cifar10+cifar100" else [self.dataset]

    def preset(self, ds: str, name: str):
        v = getattr(self, name)
        if v is not None:
            return v
        return PRESETS[ds][name]

    def model_config(self, ds: str) -> ModelConfig:
        """The models' sizes and schedule on data set ``ds`` (quick=True: half the epochs)."""
        epochs = self.preset(ds, "epochs")
        T1 = epochs // 3 if self.T1 is None else self.T1
        T2 = max(T1, 2 * epochs // 3) if self.T2 is None else self.T2
        if self.quick:
            epochs, T1, T2 = max(2, epochs // 2), T1 // 2, T2 // 2
        return ModelConfig(M=self.preset(ds, "M"), width=self.preset(ds, "width"), mlp_ratio=self.mlp_ratio,
                           heads_single=self.heads_single, epochs=epochs, T1=T1, T2=T2, batch_size=self.batch_size,
                           lr=self.lr, lr_gate=self.lr_gate, lam=self.lam, gate=self.gate, eval_chunk=self.eval_chunk)

    def run_seeds(self) -> list[int]:
        return list(self.seeds[:4]) if self.quick else list(self.seeds)

    def data(self, ds: str, noise_share: float) -> RealData:
        return prepare(ds, noise_share=noise_share, patch=self.preset(ds, "patch"), data_seed=self.data_seed,
                       data_dir=self.data_dir, text_csv=self.text_csv, text_test_csv=self.text_test_csv,
                       seq_len=self.seq_len, max_vocab=self.max_vocab, text_dim=self.text_dim,
                       max_train=self.max_train)


def run_dataset(P: RealDataParams, ds: str, device="cpu", sweep_models=("MoT", "single ViT", "attention-free MoE")):
    """Everything the chapter shows for one data set: the main runs (every model, ``P.noise_share``), and
    the noise sweep (``sweep_models`` at every other share in ``P.noise_shares``).  All data sets are
    loaded and checked before anything is trained."""
    cfg = P.model_config(ds)
    seeds = P.run_seeds()
    shares = [s for s in P.noise_shares if s != P.noise_share]
    data = {P.noise_share: P.data(ds, P.noise_share)}
    for s in shares:
        data[s] = P.data(ds, s)
    runs = train_all(data[P.noise_share], seeds, cfg, device)
    sweep = []
    for s in sorted(set(P.noise_shares) | {P.noise_share}):
        rs = runs if s == P.noise_share else train_all(data[s], seeds, cfg, device, models=sweep_models)
        for name, run in rs.items():
            if name not in sweep_models:
                continue
            err = 1 - run.final("test_acc")
            for seed, e in err.items():
                sweep.append(dict(noise_share=s, model=name, seed=seed, final_test_error=float(e),
                                  final_test_loss=float(run.final("test_loss")[seed])))
    return dict(dataset=ds, cfg=cfg, data=data[P.noise_share], runs=runs, sweep=pd.DataFrame(sweep),
                target=P.preset(ds, "target_acc"))
