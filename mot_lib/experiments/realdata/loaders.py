"""Real data sets as tokens: digits, CIFAR-10/100 (a safe pickle reader), a text CSV; patch tokens, noise, splits."""
from __future__ import annotations

import csv
import pickle
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ...engine.config import _check


DATASETS = ("digits", "cifar10", "cifar100", "cifar10+cifar100", "text")
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
    """A tokenised data set: tokens (n, L, p) float32 (standardised per feature with training statistics; the
    training casts them to ``compute_dtype``), labels, an optional (n, L) mask of real tokens (text), and the
    replaced-token masks."""
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

    def to(self, device, dtype: torch.dtype | None = None) -> "RealData":
        """The data on ``device``; the tokens (floating tensors) also in ``dtype`` when given."""
        def mv(t):
            if t is None:
                return None
            return t.to(device, dtype) if dtype is not None and t.is_floating_point() else t.to(device)
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
