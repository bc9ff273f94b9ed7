"""GPU throughput: us/atom end to end and for the network alone, memory per atom, where the
time goes, and how many atoms fit on the GPU. Runs only where torch sees CUDA.

End to end is ``PhaseModel.evaluate`` as a classification makes it (graph, copies, network,
neighbour average); the network alone is its forward pass on tensors already on the GPU.
The crystal is the throughput section's (FCC Cu, sigma 0.1 Å). Times are the best of
``repeats`` calls after a warm-up, with the GPU synchronised around each; memory per atom
is the peak allocated during a classification over the atoms.

    python -m lpfm_insitu.bench.gpu --model default
"""

from __future__ import annotations

import argparse
import json

from ..model.inference import PRECISIONS
from .timing import best_time, in_model_units

SIZES = (10_000, 100_000, 1_000_000)


def no_cuda_reason() -> str | None:
    """Why the GPU rows cannot run here, or None when they can."""
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        return "torch sees no CUDA device on this machine"
    return None


def _best(fn, repeats: int, sync) -> float:
    # one warm-up call: kernel selection, allocator growth
    return best_time(fn, repeats, warmup=1, sync=sync)[0]


def measure(model_name: str, n_atoms: int, precision: str, repeats: int = 3) -> dict:
    import torch

    from ..model.graph import periodic_graph
    from ..model.inference import NoHalo
    from ..model.files import load_model
    from .throughput import crystal

    device = torch.device("cuda")
    sync = torch.cuda.synchronize
    model = load_model(model_name).to(device, precision)
    positions, cell, n, candidates = in_model_units(model, crystal(n_atoms))

    def graph_of(p, cutoff=model.cutoff):  # on the GPU, as classify_atoms searches there
        return periodic_graph(p, cell, True, cutoff, device=model.graph_device())

    def classify():
        model.evaluate(positions, n, graph_of, candidates, NoHalo(), need_gradient=False,
                       average=True)

    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    end_to_end = _best(classify, repeats, sync)
    peak = torch.cuda.max_memory_allocated(device) - base

    graph = graph_of(positions)
    pos = torch.tensor(positions, dtype=torch.float32, device=device)
    edge_index = graph.edge_index
    shifts = graph.shifts.to(torch.float32)

    def network():
        with torch.inference_mode(), model._autocast():
            model.network(pos, edge_index, shifts, n)

    network_s = _best(network, repeats, sync)

    def copies():  # what crosses the bus: positions in (the graph is searched on the GPU)
        model._to_device(positions, torch.float32)

    copy_s = _best(copies, repeats, sync)
    graph_s = _best(lambda: graph_of(positions), repeats, sync)
    free, total = torch.cuda.mem_get_info(device)
    per_atom = peak / n
    us = 1e6 / n
    return {"n_atoms": n, "precision": precision,
            "end_to_end_us_per_atom": end_to_end * us,
            "network_us_per_atom": network_s * us,
            "split_us_per_atom": {"graph": graph_s * us, "host->device copies": copy_s * us,
                                  "network": network_s * us,
                                  "rest (average, device->host, glue)":
                                      max(0.0, end_to_end - graph_s - copy_s - network_s) * us},
            "peak_kib_per_atom": per_atom / 1024,
            "atoms_that_fit": int(0.9 * total / per_atom) if per_atom > 0 else None,
            "gpu": torch.cuda.get_device_name(device), "gpu_memory_gib": total / 2**30}


def run_gpu(model: str = "default", sizes=SIZES, precisions=PRECISIONS, repeats: int = 3,
            log=print) -> dict:
    """Every (size, precision) on the GPU; a section that only says why when there is none."""
    reason = no_cuda_reason()
    if reason:
        log(f"  GPU rows skipped: {reason}")
        return {"skipped": reason, "model": model}
    rows = []
    for n_atoms in sizes:
        for precision in precisions:
            row = measure(model, n_atoms, precision, repeats)
            rows.append(row)
            log(f"  {row['n_atoms']:>8} atoms {precision}: {row['end_to_end_us_per_atom']:.3f} "
                f"us/atom end to end, network {row['network_us_per_atom']:.3f}, peak "
                f"{row['peak_kib_per_atom']:.2f} KiB/atom")
    return {"rows": rows, "model": model, "repeats": repeats, "gpu": rows[0]["gpu"]}


def gpu_markdown(section: dict) -> list[str]:
    lines = ["## GPU throughput", ""]
    if "skipped" in section:
        return lines + [f"Skipped: {section['skipped']} (these rows run where CUDA is present).",
                        ""]
    lines += [f"On {section['gpu']}; best of {section['repeats']} calls after a warm-up.", "",
              "| atoms | precision | end to end (us/atom) | network alone (us/atom) | graph | "
              "copies | rest | peak KiB/atom | atoms that fit |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in section["rows"]:
        s = r["split_us_per_atom"]
        lines.append(f"| {r['n_atoms']} | {r['precision']} | {r['end_to_end_us_per_atom']:.3f} | "
                     f"{r['network_us_per_atom']:.3f} | {s['graph']:.3f} | "
                     f"{s['host->device copies']:.3f} | "
                     f"{s['rest (average, device->host, glue)']:.3f} | "
                     f"{r['peak_kib_per_atom']:.2f} | {r['atoms_that_fit']:.3g} |")
    return lines + [""]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--atoms", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--precision", nargs="+", default=list(PRECISIONS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    section = run_gpu(args.model, args.atoms, args.precision, args.repeats)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(section, handle, indent=1)
    print("\n".join(gpu_markdown(section)))


if __name__ == "__main__":
    main()
