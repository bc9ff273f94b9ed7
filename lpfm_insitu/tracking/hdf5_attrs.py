"""HDF5 attributes of the tracking files (time series, snapshots): any value, read back as written.

Scalars are stored as HDF5 attributes; everything else (dicts, lists, None) as JSON text,
with the names of the JSON-encoded ones listed in the attribute ``json_attrs`` so a reader
decodes them without guessing. Each file format passes the attribute names it keeps for
itself (``reserved``).
"""

from __future__ import annotations

import json
from typing import Any, Mapping

import numpy as np

__all__ = ["write_attrs", "read_attrs", "to_str", "jsonable"]


def _json_default(obj):
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    # Provenance must never crash a run: keep a readable form of anything else.
    return str(obj)


def _is_scalar(value) -> bool:
    return isinstance(value, (str, bool, int, float, np.integer, np.floating, np.bool_))


def write_attrs(h5obj, attrs: Mapping[str, Any] | None, reserved) -> None:
    """Store caller attributes; non-scalars (dicts, lists, None) as JSON text.

    A name in ``reserved`` (the format's own attributes) raises ValueError.
    """
    json_keys = []
    for key, value in (attrs or {}).items():
        key = str(key)
        if key in reserved:
            raise ValueError(f"attribute name {key!r} is reserved ({sorted(reserved)})")
        if _is_scalar(value):
            h5obj.attrs[key] = value
        else:
            h5obj.attrs[key] = json.dumps(value, default=_json_default, sort_keys=True)
            json_keys.append(key)
    h5obj.attrs["json_attrs"] = json.dumps(sorted(json_keys))


def read_attrs(h5obj, reserved) -> dict[str, Any]:
    """Inverse of :func:`write_attrs` (``reserved`` attributes excluded)."""
    json_keys = set(json.loads(to_str(h5obj.attrs.get("json_attrs", "[]"))))
    out: dict[str, Any] = {}
    for key, value in h5obj.attrs.items():
        if key in reserved:
            continue
        if key in json_keys:
            out[key] = json.loads(to_str(value))
        elif isinstance(value, bytes):
            out[key] = value.decode("utf-8")
        elif isinstance(value, np.generic):
            out[key] = value.item()
        else:
            out[key] = value
    return out


def to_str(value) -> str:
    """An HDF5 string attribute (bytes or str) as str."""
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def jsonable(value: Any) -> Any:
    """``value`` as it reads back from a file, for comparing a reopened file."""
    return json.loads(json.dumps(value, default=_json_default, sort_keys=True))
