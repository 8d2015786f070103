"""The committed data files: content hashes and row counts, and writes that never leave anything partial.

A *table set* is a folder under ``data/`` (``rows.csv``, ``curves.csv`` where the table keeps curves, and
``manifest.json``); the replication (``data/replication``) is one too.  Its manifest lists every file with its
sha256 and its number of rows (``files``); ``check_files`` compares them with the files on disk and raises,
naming the first file that is missing or changed, the sha256 and rows it has against those recorded, and the
command that recomputes it.

``write_set`` writes a whole set into a fresh folder beside its destination and swaps it in with one rename:
on Linux ``renameat2(RENAME_EXCHANGE)`` exchanges the two folders atomically; elsewhere the old folder is moved
aside and moved back if the second rename fails.  A failure at any write leaves the committed set as it was and
nothing beside it.  ``write_files`` does the same for loose files (a CSV and its manifest beside it), with the
old files moved back on a failure.  Partial results of a running computation go under ``WORK`` (outside
``data/``, ignored by git), never under ``data/``.
"""
from __future__ import annotations

import ctypes
import errno
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "data"
#: where running computations keep their partial results (a stopped run keeps them there), outside data/
WORK = REPO / "_build" / "work"
MANIFEST = "manifest.json"


class MissingFile(FileNotFoundError, ValueError):
    """A file a table needs is missing (a FileNotFoundError, and a ValueError like every other data error)."""


def rel(path) -> str:
    """``path`` relative to the repository when it lies inside it (``data/x.csv``), else as given."""
    p = Path(path)
    try:
        return p.resolve().relative_to(REPO).as_posix()
    except ValueError:
        return str(p)


def count_rows(data: bytes, name: str) -> int | None:
    """Rows of a file's content: a CSV's lines after the header, a JSON list's items (None: not a JSON list)."""
    if name.endswith(".json"):
        try:
            items = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None
        return len(items) if isinstance(items, list) else None
    lines = data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)
    return max(lines - 1, 0)


def entry(data: bytes, name: str) -> dict:
    """A manifest's record of one file: its sha256 and rows."""
    return {"sha256": hashlib.sha256(data).hexdigest(), "rows": count_rows(data, name)}


def check_files(folder, manifest: dict, redo: str, where: str = "") -> None:
    """Raise (ValueError, naming the file) unless every file ``manifest["files"]`` lists under ``folder`` is there
    with its recorded sha256 and rows.  ``redo``: how to recompute it (said in the message); ``where``: the
    manifest's path for a message about the manifest itself."""
    folder = Path(folder)
    files = manifest.get("files")
    if not isinstance(files, dict) or not files or not all(
            isinstance(v, dict) and isinstance(v.get("sha256"), str) for v in files.values()):
        raise ValueError(f"{where or rel(folder / MANIFEST)}: the manifest lists no files with their sha256 and rows, "
                         f"so their content cannot be checked; {redo}")
    for name, want in files.items():
        p = folder / name
        if not p.is_file():
            raise MissingFile(f"{rel(p)} is missing (its manifest lists it with {want.get('rows')} rows, sha256 "
                              f"{want['sha256'][:12]}); {redo}")
        got = entry(p.read_bytes(), name)
        if got != {"sha256": want["sha256"], "rows": want.get("rows")}:
            raise ValueError(f"{rel(p)} changed since it was written: sha256 {got['sha256'][:12]}, {got['rows']} rows, "
                             f"where its manifest records {want['sha256'][:12]}, {want.get('rows')} rows; {redo}")


def redo_text(command: str, folder) -> str:
    """The message's last part: the command that recomputes a table set, or (inside the repository) git to
    restore the committed one."""
    inside = not Path(rel(folder)).is_absolute()
    return f"recompute it with `{command}`" + (f" or restore the committed one with `git checkout -- {rel(folder)}`"
                                              if inside else "")


def read_manifest(folder, redo: str) -> dict:
    """The manifest of a table set (a dict); missing or unreadable raises, naming it."""
    mf = Path(folder) / MANIFEST
    if not mf.is_file():
        raise MissingFile(f"{rel(mf)} is missing; {redo}")
    try:
        meta = json.loads(mf.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{rel(mf)}: not readable JSON ({e}); {redo}") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{rel(mf)}: not a manifest (a JSON object); {redo}")
    return meta


def read_csv(path, redo: str) -> pd.DataFrame:
    """A table set's CSV file; missing (``MissingFile``) or unreadable raises, naming it and ``redo``."""
    path = Path(path)
    if not path.is_file():
        raise MissingFile(f"{rel(path)} is missing; {redo}")
    try:
        return pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise ValueError(f"{rel(path)}: not readable ({' '.join(str(e).split())}); {redo}") from None


def describe(folder) -> str | None:
    """'rows.csv 630 rows, curves.csv 18,360 rows' from a set's manifest (None when there is no readable set)."""
    try:
        files = json.loads((Path(folder) / MANIFEST).read_text()).get("files") or {}
        return ", ".join(f"{n} {v['rows']:,} rows" for n, v in files.items()) or None
    except (OSError, ValueError, AttributeError, TypeError, KeyError):
        return None


# ---------------------------------------------------------------------- writing
def _write_bytes(path: Path, data: bytes) -> None:
    """Every write of a table set goes through here (a test makes it fail at each call in turn)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _as_bytes(content) -> bytes:
    return content if isinstance(content, bytes) else str(content).encode()


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2 with RENAME_EXCHANGE); False when the system cannot."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _swap_in(new: Path, dest: Path) -> None:
    """Put folder ``new`` at ``dest`` in one step; the old ``dest`` (if any) ends up at ``new`` (deleted after)."""
    if not dest.exists():
        os.rename(new, dest)
        return
    if _exchange(new, dest):
        return
    aside = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=dest.parent))
    os.rmdir(aside)
    os.rename(dest, aside)
    try:
        os.rename(new, dest)
    except BaseException:
        os.rename(aside, dest)
        raise
    shutil.rmtree(aside, ignore_errors=True)


def write_set(dest, files: dict, meta: dict) -> Path:
    """Write the table set ``dest`` (a folder): ``files`` maps a name (may hold a subfolder) to its content
    (bytes or text), ``meta`` is its manifest, to which ``files`` (sha256 and rows of each) is added.  Written
    into a fresh folder beside ``dest``, then swapped in by one rename; on any failure ``dest`` is as it was and
    the fresh folder is removed.  Returns ``dest``."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists() and not dest.is_dir():
        raise ValueError(f"{rel(dest)} is a file, not a folder of a table set")
    new = Path(tempfile.mkdtemp(prefix=f".{dest.name}.new-", dir=dest.parent))
    try:
        listed = {}
        for name, content in files.items():
            data = _as_bytes(content)
            _write_bytes(new / name, data)
            listed[name] = entry(data, name)
        _write_bytes(new / MANIFEST, json.dumps({**meta, "files": listed}, indent=2).encode())
        _swap_in(new, dest)
    finally:
        shutil.rmtree(new, ignore_errors=True)      # the fresh folder on a failure, the old set after a swap
    return dest


def write_files(files: dict) -> None:
    """Write loose files (path -> content) so that a failure leaves every one as it was: each is written beside
    its destination first, then the old files are moved aside, the new ones moved in, and on a failure the old
    ones moved back."""
    files = {Path(p): _as_bytes(c) for p, c in files.items()}
    tmp, aside, placed = {}, {}, []
    try:
        for p, data in files.items():
            p.parent.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix=f".{p.name}.new-", dir=p.parent)
            os.close(fd)
            tmp[p] = Path(name)
            _write_bytes(tmp[p], data)
        for p in files:
            if p.exists():
                fd, name = tempfile.mkstemp(prefix=f".{p.name}.old-", dir=p.parent)
                os.close(fd)
                try:
                    os.replace(p, name)
                except BaseException:
                    os.unlink(name)
                    raise
                aside[p] = Path(name)
            os.replace(tmp[p], p)
            del tmp[p]
            placed.append(p)
    except BaseException:
        for p in placed:
            if p not in aside:
                p.unlink(missing_ok=True)
        for p, old in aside.items():
            os.replace(old, p)
        aside = {}
        raise
    finally:
        for t in list(tmp.values()) + list(aside.values()):
            t.unlink(missing_ok=True)


# ---------------------------------------------------------------------- the schema of a table
class Range:
    """Allowed values of a column: ``lo`` to ``hi`` (``hi`` may name a column of the expected rows, such as the
    run's T), the lower end open when ``lo_open``; NaN allowed when ``nan``."""

    def __init__(self, lo=-np.inf, hi=np.inf, lo_open=False, nan=True):
        self.lo, self.hi, self.lo_open, self.nan = lo, hi, lo_open, nan

    def text(self, hi) -> str:
        return f"{'(' if self.lo_open else '['}{self.lo:g}, {hi:g}]"


KINDS = {"int": ("integers", pd.api.types.is_integer_dtype),
         "num": ("numbers", lambda s: pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)),
         "str": ("text", lambda s: s.dtype == object and s.map(lambda v: isinstance(v, str)).all()),
         "bool": ("True/False", pd.api.types.is_bool_dtype)}


def row_text(df: pd.DataFrame, i, cols) -> str:
    r = df.loc[i]
    return ", ".join(f"{c}={r[c]}" for c in cols if c in df)


def check_schema(df: pd.DataFrame, path, redo: str, kinds: dict, optional=(), key=None, expected=None,
                 source: str = "the current code's job list", ranges: dict | None = None) -> pd.DataFrame:
    """Raise (ValueError naming ``path``, one line) unless ``df`` (read from ``path``) has exactly the columns of
    ``kinds`` (plus any of ``optional``), each of its kind ("int", "num", "str", "bool"); when ``key`` is given,
    exactly one row per row of ``expected`` (a frame of the ``key`` columns and the expected rows' other
    columns, such as the run's T), which ``source`` names in the message; every column of ``ranges`` within its
    ``Range``.  Returns ``df`` with the expected rows' other columns added."""
    where = rel(path)
    cols = list(kinds)
    missing = [c for c in cols if c not in df]
    extra = [c for c in df if c not in kinds and c not in optional]
    if missing or extra:
        raise ValueError(f"{where}: " + "; ".join(
            ([f"it lacks the columns {missing}"] if missing else []) + ([f"the columns {extra} are not expected"]
                                                                          if extra else []))
            + f" (expected {cols}" + (f", optionally {list(optional)}" if optional else "") + f"); {redo}")
    for c, kind in kinds.items():
        words, ok = KINDS[kind]
        if not ok(df[c]):
            bad = df[c][~df[c].map(lambda v: isinstance(v, str))] if kind == "str" else df[c]
            raise ValueError(f"{where}: the column {c} should hold {words}, not {df[c].dtype} "
                             f"(line {bad.index[0] + 2}: {bad.iloc[0]!r}); {redo}")
    out = df
    if key is not None:
        dup = df.duplicated(key, keep="first")
        if dup.any():
            i = dup.idxmax()
            raise ValueError(f"{where}: line {i + 2} repeats the row of {row_text(df, i, key)} ({int(dup.sum())} "
                             f"repeated rows); one row per {', '.join(key)} is expected; {redo}")
        left, expected = df.reset_index(), expected.copy()
        for c in key:      # a number column read as integers (1, 2) against floats (1.0, 2.0): compare as floats
            pair = (left[c], expected[c])
            if any(map(pd.api.types.is_float_dtype, pair)) and all(map(pd.api.types.is_numeric_dtype, pair)):
                left[c], expected[c] = left[c].astype(float), expected[c].astype(float)
        m = left.merge(expected, on=key, how="outer", indicator=True)
        if (m["_merge"] == "left_only").any():
            r = m[m["_merge"] == "left_only"].iloc[0]
            raise ValueError(f"{where}: line {int(r['index']) + 2} ({', '.join(f'{c}={r[c]}' for c in key)}) is not a "
                             f"row of {source}; {redo}")
        if (m["_merge"] == "right_only").any():
            gone = m[m["_merge"] == "right_only"]
            r = gone.iloc[0]
            raise ValueError(f"{where}: no row for {', '.join(f'{c}={r[c]}' for c in key)}"
                             + (f" (and {len(gone) - 1} more of its rows)" if len(gone) > 1 else "")
                             + f", which {source} holds; {redo}")
        out = m.drop(columns="_merge").set_index("index").sort_index()
        out.index.name = None
    for c, rg in (ranges or {}).items():
        if c not in out:
            continue
        v = out[c].astype(float)
        hi = out[rg.hi].astype(float) if isinstance(rg.hi, str) else pd.Series(float(rg.hi), index=out.index)
        bad = (v < rg.lo) | (v <= rg.lo if rg.lo_open else False) | (v > hi) | (v.isna() & (not rg.nan))
        if bad.any():
            i = bad.idxmax()
            what = f"the run's T = {hi[i]:g}" if isinstance(rg.hi, str) else rg.text(hi[i])
            raise ValueError(f"{where}: {c} = {out[c][i]} on line {i + 2}"
                             + (f" ({row_text(out, i, key)})" if key is not None else "")
                             + (" is empty" if np.isnan(v[i]) else f" is beyond {what}" if v[i] > hi[i]
                                else f" is outside {rg.text(hi[i])}")
                             + f"; {redo}")
    return out
