"""A rank's first invocation: its communicators, its device and threads, and the checks of
the LAMMPS side (fix, columns, atom types) that stop every rank together if wrong."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .announce import fix_line
from .devices import default_threads, rank_device
from .errors import ErrorSync, describe
from .gather import custom_width
from .writeback import has_column


@dataclass
class RankLink:
    """The LAMMPS world, a private duplicate for the adapter's own collectives, the error
    agreement on it, and this rank's place on its node."""

    world: Any
    comm: Any
    sync: ErrorSync
    node_rank: int
    node_ranks: int


def connect(lmp, error_timeout: float | None) -> RankLink:
    """The LAMMPS world communicator and a private duplicate for our own collectives."""
    from mpi4py import MPI

    world = lmp.get_mpi_comm()
    if world is None:
        world = MPI.COMM_WORLD
    comm = world.Dup()  # private: our collectives never match LAMMPS' or hooks'
    node = world.Split_type(MPI.COMM_TYPE_SHARED)
    link = RankLink(world, comm, ErrorSync(comm, error_timeout),
                    node.Get_rank(),  # picks this rank's GPU
                    node.Get_size())
    node.Free()
    return link


def set_up_rank(classifier, lmp) -> None:
    """Check columns, types and device, and put the model on the device; stop on all ranks
    if wrong. Sets the classifier's ``units`` and ``device``.

    Every rank runs the same collectives whatever happens locally: local problems are
    collected and agreed on at the final sync point.
    """
    s = classifier.settings
    link = classifier.link
    n_ops = len(classifier.op_indices)
    problems = []
    needed = [(s.phase_column, None), (s.conf_column, None)]
    if n_ops:
        needed.append((s.op_column, n_ops))
    if s.export_displacement:
        needed.append((s.disp_column, 3))
    widths = np.full(len(needed), -1, dtype=np.int64)
    missing = []
    try:
        classifier.units = lmp.extract_global("units")
        if not lmp.has_id("fix", s.fix):
            problems.append(f"there is no fix with ID {s.fix!r}: add\n  {fix_line(s, n_ops)}\n"
                            "before the `fix ... python/invoke` line (or pass the ID of "
                            "your property/atom fix as configure(fix=...))")
        missing = [name for name, _ in needed if not has_column(lmp, name)]
        if missing:
            problems.append(f"fix property/atom {s.fix!r} lacks the column(s) "
                            f"{', '.join(missing)}; declare all columns this configuration "
                            f"writes:\n  {fix_line(s, n_ops)}")
        for k, (name, width) in enumerate(needed):
            if width is not None and name not in missing:
                widths[k] = custom_width(lmp, name) or -1
        ntypes = int(lmp.extract_global("ntypes"))
        bad = [t for t in (s.types or ()) if t > ntypes]
        if bad:
            problems.append(f"configure(types={list(s.types)}): type(s) {bad} do not "
                            f"exist; this system has atom types 1..{ntypes}")
        try:
            classifier.device = rank_device(s.device, link.node_rank, link.node_ranks)
            classifier.model.to(classifier.device, s.precision)
            threads = s.threads or default_threads(link.node_ranks)
            if threads:
                import torch

                torch.set_num_threads(int(threads))
        except Exception as exc:  # noqa: BLE001
            problems.append(f"cannot put the model on device {s.device!r} with precision "
                            f"{s.precision!r}: {exc}")
    except Exception as exc:  # noqa: BLE001
        problems.append(describe(exc))

    # a rank may hold too few atoms to read a column's width: take the known one
    from mpi4py import MPI

    agreed = np.empty_like(widths)
    link.comm.Allreduce(widths, agreed, op=MPI.MAX)
    for (name, want), got in zip(needed, agreed):
        if want is not None and got > 0 and got != want:
            what = ("order parameters (ops=" + repr(classifier.op_names()) + ")"
                    if name == s.op_column else "displacement components")
            problems.append(f"fix property/atom {s.fix!r} declares {name} with {got} "
                            f"column(s), but {want} {what} are written: use "
                            f"`{name} {want}`, i.e.\n  {fix_line(s, n_ops)}")
    link.sync.check("\n".join(problems) if problems else None)
