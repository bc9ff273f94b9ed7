"""What a command reads from the files the user names: structure frames and the model.

Frames come through ASE (LAMMPS text dumps and data files included, their format guessed
from the name or the first lines). A file that cannot be read, or a model file that does
not load, stops the command with one line naming it and the option to give
(:class:`~lpfm_insitu.errors.LPFMError`).
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import LPFMError

FORMAT_HINT = ("give the format with --format (e.g. lammps-dump-text, lammps-data, extxyz, "
               "vasp, cif; any name `ase info --formats` lists)")
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def guess_format(path: Path) -> str | None:
    """The ASE format of a LAMMPS file (dump or data) from its name or first lines; None
    lets ASE guess. An HDF5 file is refused with what to do instead."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError as exc:
        raise LPFMError(f"cannot read {str(path)!r}: {exc.strerror or exc}") from None
    if head.startswith(_HDF5_SIGNATURE):
        raise LPFMError(f"{str(path)!r} is an HDF5 file, not a structure: an lpfm time series "
                        f"is plotted with `lpfm plot {path}`; to classify atoms give a dump, "
                        "data or structure file")
    name = path.name
    if head.startswith(b"ITEM: TIMESTEP") or ".dump" in name or name.startswith("dump.") \
            or path.suffix == ".lammpstrj":
        return "lammps-dump-text"
    text = head.decode("utf-8", "replace")
    if re.search(r"^\s*\d+\s+atoms\s*$", text, re.M) and "xlo xhi" in text:
        return "lammps-data"
    return None


def _data_atom_style(path: Path) -> str:
    """The atom style of a LAMMPS data file from its ``Atoms # style`` line (default atomic)."""
    with open(path, errors="replace") as fh:
        for line in fh:
            m = re.match(r"\s*Atoms\s*#\s*(\w+)", line)
            if m:
                return m.group(1)
    return "atomic"


def read_frames(path: str | Path, index: str = "-1", fmt: str | None = None,
                atom_style: str | None = None):
    """The frames ``index`` of ``path`` as ``ase.Atoms``; LPFMError if unreadable."""
    from ase.io import read

    path = Path(path)
    if not path.is_file():
        raise LPFMError(f"input file {str(path)!r} does not exist")
    fmt = fmt or guess_format(path)
    kwargs = {}
    if fmt == "lammps-data":
        kwargs = {"atom_style": atom_style or _data_atom_style(path), "units": "metal"}
    as_what = f"as {fmt}" if fmt else "(format guessed by ASE from the file name)"
    try:
        frames = read(str(path), index=index, format=fmt, **kwargs)
    except Exception as exc:  # noqa: BLE001 - ASE raises anything on a foreign file
        why = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise LPFMError(f"cannot read {str(path)!r} {as_what} ({why}); {FORMAT_HINT}"
                        + (", and --atom-style for a data file" if fmt == "lammps-data"
                           else "")) from None
    frames = frames if isinstance(frames, list) else [frames]
    if not frames or not len(frames[0]):
        raise LPFMError(f"{str(path)!r} {as_what} holds no atoms for --index {index!r}; "
                        f"{FORMAT_HINT}")
    return frames


def load_model_for_cli(name: str, **kwargs):
    """``load_model`` with a model file error as one line (LPFMError)."""
    from ..model.mace_import import import_mace_quietly

    import_mace_quietly()
    from ..model.files import ModelFileError, load_model

    try:
        return load_model(name, **kwargs)
    except ModelFileError as exc:
        raise LPFMError(f"cannot load model {name!r}: {exc}") from None
