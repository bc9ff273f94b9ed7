"""Model throughput: us/atom for a classification and for one denoising step, and peak memory.

Each (size, precision, task) runs in a fresh process so that its peak resident memory
(``VmHWM``) belongs to that measurement alone; memory per atom is that peak minus the
resident size after the model was loaded and the crystal built, divided by the atoms.
The crystal is FCC Cu (a = 3.615 Å) with Gaussian displacements (sigma 0.1 Å), the
graph is built as ``classify_atoms`` builds it, a classification includes the model's
neighbour average of the logits, and the best of ``repeats`` timed calls after one
warm-up is reported.

    python -m lpfm_insitu.bench.throughput --model default --atoms 1000 10000 100000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

from .timing import in_model_units, perturbed_crystal, timed_calls

SIZES = (1_000, 10_000, 100_000)
#: The precisions the CPU rows measure, of ``model.inference.PRECISIONS``: fp16 is
#: measured on a GPU, by ``bench.gpu``.
CPU_PRECISIONS = ("fp32", "bf16")
TASKS = ("classify", "denoise_step")
LATTICE = 3.615


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}: peak memory cannot be measured here")


def crystal(n_atoms: int, seed: int = 3):
    """About ``n_atoms`` of perturbed FCC Cu (whole cubic cells)."""
    from ase.build import bulk

    cells = max(1, round((n_atoms / 4) ** (1 / 3)))
    return perturbed_crystal(bulk("Cu", "fcc", a=LATTICE, cubic=True), cells, seed)


def _prepared(model_name: str, n_atoms: int, threads: int, precision: str = "fp32"):
    """The model, and the test crystal in model units: (model, positions, cell, n, candidates)."""
    import torch

    from ..model.files import load_model

    torch.set_num_threads(threads)
    model = load_model(model_name).to("cpu", precision)
    return (model, *in_model_units(model, crystal(n_atoms)))


def measure(model_name: str, n_atoms: int, precision: str, task: str, threads: int,
            repeats: int, convolution: str = "fused") -> dict:
    """One measurement in this process (the worker side).

    ``convolution="e3nn"`` swaps e3nn's tensor products back in place of the fused
    first-layer convolutions, to show what the fusion buys.
    """
    from ..model.graph import periodic_graph
    from ..model.inference import NoHalo

    model, positions, cell, n, candidates = _prepared(model_name, n_atoms, threads, precision)
    if convolution == "e3nn":
        from ..model.fused_convolution import unfuse_convolutions

        unfuse_convolutions(model.network.mace)
    need_gradient = task == "denoise_step"
    baseline_kib = _status_kib("VmRSS")

    graph_seconds = []

    def graph_of(model_positions, cutoff=model.cutoff):
        start = time.perf_counter()
        graph = periodic_graph(model_positions, cell, True, cutoff)
        graph_seconds.append(time.perf_counter() - start)
        return graph

    def call():
        graph_seconds.clear()
        # a classification's labels come from the averaged logits; a step needs no average
        model.evaluate(positions, n, graph_of, candidates, NoHalo(),
                       need_gradient=need_gradient, average=not need_gradient)
        return sum(graph_seconds)

    # the warm-up call pays for one-off allocations and kernel selection
    seconds, graph_time = min(timed_calls(call, repeats, warmup=1), key=lambda c: c[0])
    return {"n_atoms": n, "precision": precision, "task": task, "threads": threads,
            "convolution": convolution,
            "us_per_atom": 1e6 * seconds / n,
            "graph_us_per_atom": 1e6 * graph_time / n,
            "peak_kib_per_atom": (_status_kib("VmHWM") - baseline_kib) / n,
            "repeats": repeats}


def profile_forward(model_name: str, n_atoms: int, threads: int, repeats: int = 3) -> dict:
    """Where a forward pass spends its time: us/atom per network block (forward hooks).

    Blocks are timed around their own forward call, so nested blocks overlap their
    parents; the graph build is timed separately. Best of ``repeats`` after a warm-up.
    """
    import torch

    from ..model.blas_threads import single_threaded_numpy_blas
    from ..model.graph import periodic_graph

    model, positions, cell, n, candidates = _prepared(model_name, n_atoms, threads)
    spent: dict[str, float] = {}
    started: dict[str, float] = {}
    blocks = {}
    for name, module in model.network.named_modules():
        depth = name.count(".")
        if name and depth <= 3 and not isinstance(module, torch.jit.ScriptModule):
            blocks[name] = module
    for name, module in blocks.items():
        module.register_forward_pre_hook(
            lambda _m, _i, name=name: started.__setitem__(name, time.perf_counter()))
        module.register_forward_hook(
            lambda _m, _i, _o, name=name: spent.__setitem__(
                name, spent.get(name, 0.0) + time.perf_counter() - started[name]))
    best: dict[str, float] = {}
    for k in range(repeats + 1):
        spent.clear()
        start = time.perf_counter()
        with single_threaded_numpy_blas():  # as in PhaseModel.evaluate
            graph = periodic_graph(positions, cell, True, model.cutoff)
            spent["graph (vesin)"] = time.perf_counter() - start
            model.logits_and_gradient(positions, graph, n, candidates, False)
        spent["whole forward"] = time.perf_counter() - start - spent["graph (vesin)"]
        if k:
            for name, value in spent.items():
                best[name] = min(best.get(name, np.inf), value)
    return {"n_atoms": n, "threads": threads,
            "us_per_atom": {name: 1e6 * value / n for name, value in best.items()}}


def run_throughput(model: str = "default", sizes=SIZES, precisions=CPU_PRECISIONS, tasks=TASKS,
                   threads: int = 2, repeats: int = 3, timeout: float = 1800,
                   compare_e3nn_at: int | None = 10_000, profile_at: int | None = 10_000,
                   log=print) -> dict:
    """Every (size, precision, task), plus fp32 with e3nn's convolution at one size, the
    scaling with size, and a block-by-block profile at ``profile_at`` atoms (default: the
    smallest size)."""
    cases = [(n, p, t, "fused") for n in sizes for p in precisions for t in tasks]
    if compare_e3nn_at:
        cases += [(compare_e3nn_at, "fp32", t, "e3nn") for t in tasks]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    rows = []
    for n_atoms, precision, task, convolution in cases:
        row = _worker(["--model", model, "--atoms", str(n_atoms), "--precision", precision,
                       "--task", task, "--threads", str(threads), "--repeats", str(repeats),
                       "--convolution", convolution], env, timeout)
        rows.append(row)
        log(f"  {row['n_atoms']:>7} atoms {precision} {task:<13} {convolution:<5} "
            f"{row['us_per_atom']:7.1f} us/atom (graph {row['graph_us_per_atom']:.1f}), "
            f"peak {row['peak_kib_per_atom']:.2f} KiB/atom")
    section = {"rows": rows, "threads": threads, "repeats": repeats, "model": model,
               "lattice": f"fcc Cu a={LATTICE} A, sigma 0.1 A"}
    section["scaling_largest_over_smallest"] = scaling_summary(section)
    section["profile"] = _worker(["--profile", "--model", model, "--atoms",
                                  str(profile_at or sizes[0]), "--threads", str(threads)],
                                 env, timeout)
    return section


def _worker(options: list[str], env: dict, timeout: float) -> dict:
    """One measurement in a fresh process (its peak memory is its own); its JSON line."""
    cmd = [sys.executable, "-m", "lpfm_insitu.bench.throughput", "--worker", *options]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"throughput worker failed ({' '.join(cmd)}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def scaling_summary(section: dict) -> dict:
    """us/atom at the largest size over the smallest, per (precision, task)."""
    out = {}
    for precision in {r["precision"] for r in section["rows"]}:
        for task in {r["task"] for r in section["rows"]}:
            rows = sorted((r for r in section["rows"] if r["precision"] == precision
                           and r["task"] == task and r.get("convolution", "fused") == "fused"),
                          key=lambda r: r["n_atoms"])
            if len(rows) > 1:
                out[f"{precision}/{task}"] = rows[-1]["us_per_atom"] / rows[0]["us_per_atom"]
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--atoms", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--precision", nargs="+", default=list(CPU_PRECISIONS))
    parser.add_argument("--task", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--convolution", default="fused", choices=("fused", "e3nn"))
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--profile", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker and args.profile:
        print(json.dumps(profile_forward(args.model, args.atoms[0], args.threads)))
        return
    if args.worker:
        print(json.dumps(measure(args.model, args.atoms[0], args.precision[0], args.task[0],
                                 args.threads, args.repeats, args.convolution)))
        return
    section = run_throughput(args.model, args.atoms, args.precision, args.task, args.threads,
                             args.repeats, compare_e3nn_at=None, profile_at=args.atoms[0])
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(section, handle, indent=1)


if __name__ == "__main__":
    main()
