"""HDF5 time series of global phase statistics, written while the run goes on.

Design choices and why:

* Only rank 0 touches the file; every public method is nevertheless called
  by all ranks, and rank 0 broadcasts whether its I/O worked, so an I/O
  error raises everywhere instead of leaving ranks stuck in a collective.
* The file format of HDF5 1.8 (superblock version 2, ``LIBVER``) plus a flush
  after every write: after a flush everything appended is on disk and the
  file is consistent, so a person can open it with plain
  ``h5py.File(path, "r")`` (or ``read_time_series``, ``lpfm plot``) to plot the
  run while it goes on, and a writer killed by SIGKILL or a batch-system
  timeout leaves every row appended so far readable by any HDF5 reader.
  Not SWMR: SWMR needs the 1.10 format, whose superblock records "open for
  write" and makes every plain reader refuse the file of a killed writer
  until ``h5clear`` is run. The price is that a reader that opens the file
  during the millisecond of a flush can see it half-written: readers retry.
  All datasets (including the ``triggers`` group and the optional profile)
  are created up front, so an append only grows datasets.
* ``step`` is written last in each row, so it acts as the commit marker: a
  reader (and a reopening writer) uses the shortest row dataset's length,
  which hides a half-written last row.
* Restart continuation: a LAMMPS restart from a checkpoint at step S
  replays the steps after S.  Reopening the file appends, and the first
  write at a step not after the last stored one first drops every row (and
  trigger record) at or after that step, so the file keeps one row per step.
* A file written by an earlier version (SWMR, 1.10 format) whose writer died
  carries the "open for write" flag, and HDF5 refuses to reopen it.  It is
  readable in SWMR-read mode, so it is recovered by copying it to a fresh
  file (this version's format, without the flag) that atomically replaces
  the old one (``os.replace``).  This assumes no other writer is alive,
  which holds for a restarted simulation.
* Files are written, and read, without HDF5's file lock, so a plotting
  session still holding the file cannot block a restarted run.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import h5py
import numpy as np

from ..errors import LPFMError
from .hdf5_attrs import jsonable, read_attrs, to_str, write_attrs
from .ranks import root_call
from .statistics import PhaseStatistics

__all__ = ["PhaseTimeSeries", "read_time_series", "FORMAT_NAME", "FORMAT_VERSION"]

FORMAT_NAME = "lpfm_insitu.phase_time_series"
FORMAT_VERSION = 1

_RESERVED_ATTRS = frozenset({"format", "format_version", "phases", "json_attrs", "profile_bins"})
_TRIGGER_FIELDS = ("time", "description", "files", "step")  # "step" last: commit marker
#: HDF5 format bounds: the 1.8 format (superblock version 2) has no "open for write" flag,
#: so the file of a killed writer opens with any reader (see the module notes)
LIBVER = ("v108", "latest")
#: a reader that opens the file during a writer's flush may see it half-written
READ_ATTEMPTS = 5


# --------------------------------------------------------------------------
# File layout helpers (rank 0 only)
# --------------------------------------------------------------------------
def _row_specs(n_phases: int, profile_bins: int | None) -> dict[str, tuple[tuple, str]]:
    """name -> (shape of one row, dtype); insertion order = write order."""
    k = n_phases + 1
    specs = {
        "time": ((), "f8"),
        "counts": ((k,), "i8"),
        "fractions": ((k,), "f8"),
        "n_atoms": ((), "i8"),
        "mean_confidence": ((), "f8"),
        "mean_confidence_per_phase": ((k,), "f8"),
        "mean_op": ((n_phases,), "f8"),
    }
    if profile_bins:
        specs["profile"] = ((profile_bins, k), "f8")
        specs["profile_edges"] = ((profile_bins + 1,), "f8")
    specs["step"] = ((), "i8")  # last: commit marker
    return specs


def _chunk_rows(row_shape: tuple, itemsize: int = 8) -> int:
    row_bytes = itemsize * int(np.prod(row_shape, dtype=np.int64)) if row_shape else itemsize
    return int(np.clip((1 << 17) // max(row_bytes, 1), 1, 1024))


def _create_file(path: str, phases_all: list[str], attrs, profile_bins) -> h5py.File:
    f = h5py.File(path, "w-", libver=LIBVER, locking=False)
    try:
        f.attrs["format"] = FORMAT_NAME
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["phases"] = phases_all
        f.attrs["profile_bins"] = int(profile_bins or 0)
        write_attrs(f, attrs, _RESERVED_ATTRS)
        for name, (row, dtype) in _row_specs(len(phases_all) - 1, profile_bins).items():
            f.create_dataset(
                name, shape=(0,) + row, maxshape=(None,) + row,
                chunks=(_chunk_rows(row),) + row, dtype=dtype,
            )
        g = f.create_group("triggers")
        str_dt = h5py.string_dtype("utf-8")
        for name, dtype in (("time", "f8"), ("description", str_dt), ("files", str_dt), ("step", "i8")):
            g.create_dataset(name, shape=(0,), maxshape=(None,), chunks=(256,), dtype=dtype)
        f.flush()
    except BaseException:
        # Never leave a half-made file that a later open would try to continue.
        f.close()
        os.remove(path)
        raise
    return f


def _open_existing_for_append(path: str) -> h5py.File:
    """Open for appending; recover a file whose writer was killed."""
    try:
        # No HDF5 file lock: a SWMR reader (someone plotting) still holding
        # the file from the previous run must not block the restarted run.
        return h5py.File(path, "r+", libver=LIBVER, locking=False)
    except OSError as exc:
        if "already open for write" not in str(exc):
            raise
    # Previous writer died without closing: the status flag blocks writing.
    tmp = path + ".recover.tmp"
    try:
        with h5py.File(path, "r", swmr=True, locking=False) as src, \
                h5py.File(tmp, "w", libver=LIBVER, locking=False) as dst:
            for key, value in src.attrs.items():
                dst.attrs[key] = value
            for name in src:
                src.copy(src[name], dst, name=name)
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise OSError(
            f"{path} was left open by a writer that did not close it and could not be "
            f"recovered ({exc}); start a new time series file"
        ) from exc
    warnings.warn(
        f"{path}: previous writer did not close the file (killed?); recovered all "
        "flushed rows into a clean copy", RuntimeWarning, stacklevel=3,
    )
    return h5py.File(path, "r+", libver=LIBVER, locking=False)


def _row_datasets(f: h5py.File) -> list[h5py.Dataset]:
    n_phases = len(f.attrs["phases"]) - 1
    bins = int(f.attrs.get("profile_bins", 0)) or None
    return [f[name] for name in _row_specs(n_phases, bins)]


def _truncate(datasets: Sequence[h5py.Dataset], n: int) -> None:
    for ds in datasets:
        if ds.shape[0] != n:
            ds.resize(n, axis=0)


def _drop_from_step(f: h5py.File, step: int) -> int | None:
    """Drop rows and trigger records with step >= ``step``; return last trigger step."""
    steps = f["step"][:]
    keep = int(np.argmax(steps >= step)) if np.any(steps >= step) else steps.size
    _truncate(_row_datasets(f), keep)
    g = f["triggers"]
    tsteps = g["step"][:]
    tkeep = int(np.argmax(tsteps >= step)) if np.any(tsteps >= step) else tsteps.size
    _truncate([g[name] for name in _TRIGGER_FIELDS], tkeep)
    return int(tsteps[tkeep - 1]) if tkeep else None


def _append_row(datasets: Mapping[str, h5py.Dataset], values: Mapping[str, Any]) -> None:
    """Write one row; dataset order puts ``step`` last (commit marker)."""
    n = datasets["step"].shape[0]
    for name, ds in datasets.items():
        ds.resize(n + 1, axis=0)
        ds[n] = values[name]


def _new_name_suggestion(path: str) -> str:
    p = Path(path)
    for i in range(2, 10_000):
        cand = p.with_name(f"{p.stem}_{i}{p.suffix}")
        if not cand.exists():
            return str(cand)
    return str(p.with_name(f"{p.stem}_new{p.suffix}"))


# --------------------------------------------------------------------------
# Writer
# --------------------------------------------------------------------------
class PhaseTimeSeries:
    """Append-only, crash-tolerant HDF5 time series (all ranks call all methods).

    Use :meth:`open` (or the constructor with the same arguments)::

        with PhaseTimeSeries.open("phases.h5", phases, {"model": "lpfm-v1"}, comm) as ts:
            ts.append(step, time, stats, profile=prof, profile_edges=edges)
            ts.record_trigger(step, time, "appear:B>0.05", ["restart.1000"])
    """

    def __init__(self, path, phases, attrs=None, comm=None, profile_bins=None):
        self.path = os.fspath(path)
        self.phases = tuple(str(p) for p in phases)
        if len(set(self.phases)) != len(self.phases) or "unknown" in self.phases:
            raise ValueError(f"phases must be distinct and not 'unknown': {list(self.phases)}")
        if profile_bins is not None and int(profile_bins) < 1:
            raise ValueError(f"profile_bins must be a positive integer or None, got {profile_bins}")
        self.comm = comm
        self._file: h5py.File | None = None
        self._closed = False
        self._first_write = True
        phases_all = list(self.phases) + ["unknown"]
        requested_bins = int(profile_bins) if profile_bins else None

        def _open():
            if not os.path.exists(self.path):
                self._file = _create_file(self.path, phases_all, attrs, requested_bins)
                return None, None, requested_bins
            f = _open_existing_for_append(self.path)
            try:
                info = self._check_existing(f, phases_all, attrs, requested_bins)
                f.flush()
            except BaseException:
                f.close()
                raise
            self._file = f
            return info

        self._last_step, self._last_trigger_step, bins = root_call(
            comm, _open, f"opening {self.path}"
        )
        self.profile_bins: int | None = bins

    @classmethod
    def open(cls, path, phases, attrs: dict | None, comm=None, profile_bins: int | None = None):
        """Create ``path``, or reopen it to continue a restarted run (collective)."""
        return cls(path, phases, attrs, comm=comm, profile_bins=profile_bins)

    def _check_existing(self, f, phases_all, attrs, requested_bins):
        if to_str(f.attrs.get("format", "")) != FORMAT_NAME:
            raise ValueError(f"{self.path} exists but is not an lpfm_insitu phase time series")
        stored = [to_str(p) for p in f.attrs["phases"]]
        if stored != phases_all:
            raise ValueError(
                f"{self.path} holds phases {stored[:-1]} but this run classifies into "
                f"{phases_all[:-1]} (plus 'unknown'); a time series cannot mix phase lists. "
                f"Write to a new file, e.g. {_new_name_suggestion(self.path)!r}"
            )
        bins = int(f.attrs.get("profile_bins", 0)) or None
        if requested_bins is not None and bins != requested_bins:
            raise ValueError(
                f"{self.path} stores profiles with {bins} bins, this run asks for "
                f"{requested_bins}; use the same profile_bins or a new file, e.g. "
                f"{_new_name_suggestion(self.path)!r}"
            )
        old, new = read_attrs(f, _RESERVED_ATTRS), dict(attrs or {})
        changed = sorted(k for k in set(old) | set(new) if jsonable(old.get(k)) != jsonable(new.get(k)))
        if changed:
            warnings.warn(
                f"{self.path}: continuing a time series whose attributes differ for "
                f"{changed}; the file keeps the original values", RuntimeWarning, stacklevel=4,
            )
        # A killed writer may have left a half-written last row: cut to the
        # commit marker so every row is complete before appending.
        rows = _row_datasets(f)
        _truncate(rows, min(ds.shape[0] for ds in rows))
        trig = [f["triggers"][name] for name in _TRIGGER_FIELDS]
        _truncate(trig, min(ds.shape[0] for ds in trig))
        steps, tsteps = f["step"], f["triggers"]["step"]
        last = int(steps[-1]) if steps.shape[0] else None
        last_trig = int(tsteps[-1]) if tsteps.shape[0] else None
        return last, last_trig, bins

    # -- writing ----------------------------------------------------------
    def _check_open(self):
        if self._closed:
            raise ValueError(f"time series {self.path} is closed")

    def _restart_cut(self, step: int) -> int | None:
        """Step from which stored data is dropped on the first write, or None."""
        if not self._first_write:
            return None
        known = [s for s in (self._last_step, self._last_trigger_step) if s is not None]
        return step if known and step <= max(known) else None

    def append(self, step, time, stats: PhaseStatistics, profile=None, profile_edges=None) -> None:
        """Append one row (collective; arguments must be the global values).

        ``profile`` is the (profile_bins, n_phases + 1) array from
        :func:`~lpfm_insitu.tracking.statistics.spatial_profile`; ``profile_edges``
        its bin edges (stored per row because a shocked box may move).
        Rows of a file with profiles but no profile given are stored as NaN.
        """
        self._check_open()
        step = int(step)
        if tuple(stats.phases) != self.phases:
            raise ValueError(f"stats are for phases {list(stats.phases)}, file has {list(self.phases)}")
        k = len(self.phases) + 1
        prof = edges = None
        if profile is not None and not self.profile_bins:
            raise ValueError("profile given but the time series was opened without profile_bins")
        if self.profile_bins:
            prof = np.full((self.profile_bins, k), np.nan)
            edges = np.full(self.profile_bins + 1, np.nan)
            if profile is not None:
                p = np.asarray(profile, dtype=np.float64)
                if p.shape != prof.shape:
                    raise ValueError(f"profile must have shape {prof.shape}, got {p.shape}")
                prof = p
            if profile_edges is not None:
                e = np.asarray(profile_edges, dtype=np.float64).reshape(-1)
                if e.shape != edges.shape:
                    raise ValueError(f"profile_edges must have {edges.size} values, got {e.size}")
                edges = e
        cut = self._restart_cut(step)
        if cut is None and self._last_step is not None and step <= self._last_step:
            raise ValueError(
                f"step {step} is not after the last stored step {self._last_step}; steps must "
                "increase within a run (after reset_timestep, write to a new file)"
            )
        values = {
            "step": step,
            "time": float(time),
            "counts": stats.counts,
            "fractions": stats.fractions,
            "n_atoms": stats.n_atoms,
            "mean_confidence": stats.mean_confidence,
            "mean_confidence_per_phase": stats.mean_confidence_per_phase,
            "mean_op": stats.mean_op,
        }
        if self.profile_bins:
            values["profile"] = prof
            values["profile_edges"] = edges

        def _write():
            f = self._file
            last_trig = self._last_trigger_step
            if cut is not None:
                last_trig = _drop_from_step(f, cut)
            _append_row({name: f[name] for name in _row_specs(len(self.phases), self.profile_bins)}, values)
            f.flush()
            return last_trig

        self._last_trigger_step = root_call(self.comm, _write, f"appending to {self.path}")
        self._first_write = False
        self._last_step = step

    def record_trigger(self, step, time, description: str, files: Sequence[str] = ()) -> None:
        """Record that a checkpoint trigger fired (collective).

        ``files`` are the paths written for it (restart file, snapshot), so
        the time series says where to look for the atoms at that moment.
        """
        self._check_open()
        step = int(step)
        cut = self._restart_cut(step)
        if cut is None and self._last_trigger_step is not None and step < self._last_trigger_step:
            raise ValueError(
                f"trigger step {step} is before the last recorded trigger step {self._last_trigger_step}"
            )
        values = {
            "step": step,
            "time": float(time),
            "description": str(description),
            "files": json.dumps([os.fspath(x) for x in files]),
        }

        def _write():
            f = self._file
            last = self._last_step
            if cut is not None:
                _drop_from_step(f, cut)
                steps = f["step"]
                last = int(steps[-1]) if steps.shape[0] else None
            g = f["triggers"]
            _append_row({name: g[name] for name in _TRIGGER_FIELDS}, values)
            f.flush()
            return last

        self._last_step = root_call(self.comm, _write, f"recording trigger in {self.path}")
        self._first_write = False
        self._last_trigger_step = step

    def flush(self) -> None:
        """Push buffered data to disk (collective; append already does this)."""
        self._check_open()
        root_call(self.comm, lambda: self._file.flush(), f"flushing {self.path}")

    def close(self) -> None:
        """Close the file (collective, idempotent)."""
        if self._closed:
            return
        self._closed = True

        def _close():
            if self._file is not None:
                f, self._file = self._file, None
                f.close()

        root_call(self.comm, _close, f"closing {self.path}")

    @property
    def last_step(self) -> int | None:
        """Last stored step (same value on every rank)."""
        return self._last_step

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


# --------------------------------------------------------------------------
# Reader
# --------------------------------------------------------------------------
def _open_for_read(path) -> h5py.File:
    """Read without taking a file lock, so reading never blocks a writer.

    HDF5 refuses to open a file twice in one process with different locking
    settings, so if this process already holds it with locking, follow that.
    SWMR read opens the file of a killed writer of an earlier version.
    """
    last = None
    for kwargs in ({"locking": False}, {}, {"swmr": True, "locking": False}, {"swmr": True}):
        try:
            return h5py.File(path, "r", **kwargs)
        except OSError as exc:
            last = exc
    raise last


def _not_a_time_series(path, why: str) -> LPFMError:
    return LPFMError(
        f"{os.fspath(path)!r} is not an lpfm phase time series ({why}): expected the HDF5 "
        "file written by track() in LAMMPS or by `lpfm track`; make one from a dump with "
        f"`lpfm track DUMP --output track.h5`")


def read_time_series(path) -> dict[str, Any]:
    """Everything in a time series file as numpy arrays (safe during a run); see
    :func:`_read_time_series`. A file that is not a time series raises LPFMError."""
    if not os.path.isfile(path):
        raise LPFMError(f"time series file {os.fspath(path)!r} does not exist")
    with open(path, "rb") as fh:
        if fh.read(8) != b"\x89HDF\r\n\x1a\n":
            raise _not_a_time_series(path, "not an HDF5 file")
    for attempt in range(READ_ATTEMPTS):
        try:
            return _read_time_series(path)
        except (OSError, KeyError, RuntimeError):
            # opened during a writer's flush: the next flush is milliseconds away
            if attempt == READ_ATTEMPTS - 1:
                raise
            time.sleep(0.05 * (attempt + 1))


def _read_time_series(path) -> dict[str, Any]:
    """Everything in a time series file as numpy arrays (safe during a run).

    Keys: the row datasets (``step``, ``time``, ``fractions``, ``counts``,
    ``n_atoms``, ``mean_confidence``, ``mean_confidence_per_phase``,
    ``mean_op``, and ``profile``/``profile_edges`` if stored), ``phases``
    (list incl. "unknown" last), ``attrs`` (caller attributes, JSON decoded),
    ``format_version`` and ``triggers`` (dict of ``step``, ``time``,
    ``description`` list, ``files`` list of lists).
    """
    with _open_for_read(path) as f:
        if to_str(f.attrs.get("format", "")) != FORMAT_NAME:
            raise _not_a_time_series(path, "an HDF5 file without the format attribute "
                                           f"{FORMAT_NAME!r}")
        rows = _row_datasets(f)
        n = min(ds.shape[0] for ds in rows)
        out: dict[str, Any] = {ds.name.lstrip("/"): ds[:n] for ds in rows}
        out["phases"] = [to_str(p) for p in f.attrs["phases"]]
        out["attrs"] = read_attrs(f, _RESERVED_ATTRS)
        out["format_version"] = int(f.attrs["format_version"])
        g = f["triggers"]
        m = min(g[name].shape[0] for name in _TRIGGER_FIELDS)
        out["triggers"] = {
            "step": g["step"][:m],
            "time": g["time"][:m],
            "description": [to_str(s) for s in g["description"][:m]],
            "files": [json.loads(to_str(s)) for s in g["files"][:m]],
        }
    return out
