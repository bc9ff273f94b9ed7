"""Per-atom HDF5 snapshot written when a checkpoint trigger fires.

The time series says *that* something happened; the snapshot keeps *which
atoms* were in which phase at that moment, with positions and velocities,
so the event can be analysed (or the classifier re-run) afterwards.

Why it is built this way:

* The atoms are spread over ranks; they are gathered to rank 0 with
  ``Gatherv`` (ranks may hold zero atoms) and sorted by atom id, so the file
  is independent of the domain decomposition and of atom migration.
* Before the gather every rank shares its atom count and any local input
  problem with one ``allgather``, so a bad array on one rank raises on all
  ranks instead of leaving the others stuck in ``Gatherv``.
* The file is written to ``path + ".tmp"``, fsynced and renamed with
  ``os.replace``: the final name either holds the previous complete file or
  the new complete one, never a half-written file, even after SIGKILL.
* In ``phases`` (as read back) "unknown" is last, so ``phases[label]`` is
  the phase name for every label including -1.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

import h5py
import numpy as np

from .hdf5_attrs import read_attrs, to_str, write_attrs
from .ranks import gather_rows, root_call
from .statistics import as_labels

__all__ = ["write_snapshot", "read_snapshot", "SNAPSHOT_FORMAT", "SNAPSHOT_VERSION"]

SNAPSHOT_FORMAT = "lpfm_insitu.tracking.snapshot"
SNAPSHOT_VERSION = 1
_RESERVED = frozenset({"format", "format_version", "phases", "json_attrs", "step", "time"})


def _local_arrays(ids, types, positions, velocities, labels, confidence, ops, n_phases):
    """Validated, typed copies of this rank's arrays (raises ValueError)."""
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    n = ids.size

    def vec(name, a, dtype):
        a = np.asarray(a, dtype=dtype).reshape(-1)
        if a.size != n:
            raise ValueError(f"{name} has {a.size} entries for {n} ids")
        return a

    def mat(name, a, width, dtype):
        a = np.asarray(a, dtype=dtype)
        if a.size != n * width or (a.ndim == 2 and a.shape != (n, width)):
            raise ValueError(f"{name} must have shape ({n}, {width}), got {a.shape}")
        return a.reshape(n, width)

    out = {
        "ids": ids,
        "types": vec("types", types, np.int32),
        "positions": mat("positions", positions, 3, np.float64),
    }
    if velocities is not None:
        out["velocities"] = mat("velocities", velocities, 3, np.float64)
    lab = as_labels(labels, n_phases)
    if lab.size != n:
        raise ValueError(f"labels has {lab.size} entries for {n} ids")
    out["labels"] = lab.astype(np.int32)
    # Model outputs: float32 is their native precision and halves the file.
    out["confidence"] = vec("confidence", confidence, np.float32)
    out["ops"] = mat("ops", ops, n_phases, np.float32)
    return out


def _box_arrays(box) -> dict[str, np.ndarray]:
    try:
        lo, hi, *rest = box
        tilts = rest[0] if rest else None
        out = {
            "lo": np.asarray(lo, dtype=np.float64).reshape(3),
            "hi": np.asarray(hi, dtype=np.float64).reshape(3),
            "tilts": np.zeros(3) if tilts is None else np.asarray(tilts, dtype=np.float64).reshape(3),
        }
    except (TypeError, ValueError) as exc:
        raise ValueError(f"box must be (lo[3], hi[3], tilts[3] or None), got {box!r}") from exc
    return out


def _write_contents(f: h5py.File, step, time, box, arrays, phases_all, attrs) -> None:
    """Fill an open HDF5 file (separate so tests can inject a failure)."""
    f.attrs["format"] = SNAPSHOT_FORMAT
    f.attrs["format_version"] = SNAPSHOT_VERSION
    f.attrs["phases"] = phases_all
    f.attrs["step"] = int(step)
    f.attrs["time"] = float(time)
    write_attrs(f, attrs, _RESERVED)
    g = f.create_group("box")
    for key, value in box.items():
        g.create_dataset(key, data=value)
    for name, value in arrays.items():
        f.create_dataset(name, data=value)


def _fsync_path(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:
        pass  # e.g. directories on some file systems: best effort only
    finally:
        os.close(fd)


def write_snapshot(
    path,
    step,
    time,
    box,
    ids,
    types,
    positions,
    velocities,
    labels,
    confidence,
    ops,
    phases,
    attrs: Mapping[str, Any] | None = None,
    comm=None,
) -> str:
    """Gather all atoms to rank 0 and write one snapshot file (collective).

    ``box`` is ``(lo, hi, tilts)`` with 3 values each (tilts xy, xz, yz, or
    None for an orthogonal box); ``velocities`` may be None on every rank.
    Returns ``path`` (as str) on every rank.
    """
    path = os.fspath(path)
    phases_all = [str(p) for p in phases] + ["unknown"]
    box_arrays = _box_arrays(box)  # same on all ranks, so raising here is safe
    local, error = None, None
    try:
        local = _local_arrays(ids, types, positions, velocities, labels, confidence, ops, len(phases_all) - 1)
    except (ValueError, TypeError) as exc:
        error = str(exc)
    info = (0 if local is None else int(local["ids"].size), velocities is not None, error)
    infos = [info] if comm is None else comm.allgather(info)
    bad = [(r, e) for r, (_, _, e) in enumerate(infos) if e]
    if bad:
        raise ValueError("write_snapshot: " + "; ".join(f"rank {r}: {e}" for r, e in bad))
    if len({has_vel for _, has_vel, _ in infos}) != 1:
        raise ValueError("write_snapshot: velocities given on some ranks but None on others")
    counts = [n for n, _, _ in infos]
    gathered = {name: gather_rows(comm, arr, counts) for name, arr in local.items()}

    def _write():
        order = np.argsort(gathered["ids"], kind="stable")
        arrays = {name: arr[order] for name, arr in gathered.items()}
        sorted_ids = arrays["ids"]
        dup = sorted_ids[1:][sorted_ids[1:] == sorted_ids[:-1]]
        if dup.size:
            raise ValueError(f"duplicate atom ids in snapshot, e.g. {np.unique(dup)[:5].tolist()}")
        tmp = path + ".tmp"
        try:
            with h5py.File(tmp, "w") as f:
                _write_contents(f, step, time, box_arrays, arrays, phases_all, attrs)
            _fsync_path(tmp)
            os.replace(tmp, path)
            _fsync_path(os.path.dirname(os.path.abspath(path)))
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise
        return path

    return root_call(comm, _write, f"writing snapshot {path}")


def read_snapshot(path) -> dict[str, Any]:
    """Snapshot contents: ``step``, ``time``, ``box`` (dict lo/hi/tilts),
    per-atom arrays sorted by id (``ids``, ``types``, ``positions``,
    ``velocities`` or None, ``labels``, ``confidence``, ``ops``), ``phases``
    (incl. "unknown" last) and ``attrs`` (caller attributes)."""
    with h5py.File(path, "r") as f:
        if to_str(f.attrs.get("format", "")) != SNAPSHOT_FORMAT:
            raise ValueError(f"{path} is not an lpfm_insitu snapshot")
        out: dict[str, Any] = {
            "step": int(f.attrs["step"]),
            "time": float(f.attrs["time"]),
            "phases": [to_str(p) for p in f.attrs["phases"]],
            "format_version": int(f.attrs["format_version"]),
            "attrs": read_attrs(f, _RESERVED),
            "box": {key: f["box"][key][()] for key in f["box"]},
            "velocities": None,
        }
        for name in ("ids", "types", "positions", "velocities", "labels", "confidence", "ops"):
            if name in f:
                out[name] = f[name][()]
    return out
