"""Section 5: what a classification and a denoising step cost on this machine.

A ~11,000-atom FCC crystal (Gaussian-perturbed, sigma 0.1 Å at the reference density) is
timed in its parts: building the neighbour graph, the forward pass, and forward plus the
gradient of log p (one denoising step also needs a fresh graph). The best of a few
repeats is reported (timed as ``lpfm bench`` times, with ``bench.timing``). bf16 autocast
is compared with fp32 label by label.
"""

from __future__ import annotations

import os
import time

import numpy as np
import torch

from ..bench.timing import best_time, in_model_units, load_average, perturbed_crystal
from ..training.prototypes import FCC, build_prototype
from .precision import bf16_call


def run_cost(model, threads: int = 2, n_cells: int = 14, repeats: int = 3, seed: int = 3,
             log=print) -> dict:
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        atoms = perturbed_crystal(build_prototype(FCC, 15.0, primitive=False), n_cells, seed)
        load_before = load_average()
        pos, cell, n, cand = in_model_units(model, atoms)
        from ..model.graph import periodic_graph
        from ..model.inference import NoHalo

        def graph_of(model_positions, cutoff=model.cutoff):
            return periodic_graph(model_positions, cell, True, cutoff)

        t_graph, graph = best_time(lambda: graph_of(pos), repeats)
        t_fwd, (logits32, _) = best_time(
            lambda: model.logits_and_gradient(pos, graph, n, cand, False), repeats)
        t_grad, _ = best_time(lambda: model.logits_and_gradient(pos, graph, n, cand, True), repeats)
        t_average, _ = best_time(lambda: model.average_over_neighbours(
            logits32, pos, n, graph_of, NoHalo(), network_graph=graph), repeats)

        # one timed call each (a new graph, the pass, the average for labels): what a
        # caller pays, including whatever one part leaves behind for the next (numpy's
        # spinning BLAS threads after the graph did, until blas_threads)
        t_classification, _ = best_time(lambda: model.evaluate(
            pos, n, graph_of, cand, NoHalo(), need_gradient=False, average=True), repeats)
        t_step, _ = best_time(lambda: model.evaluate(
            pos, n, graph_of, cand, NoHalo(), need_gradient=True, average=False), repeats)
        t_classify, classified32 = best_time(lambda: model.classify_atoms(atoms), repeats)
        t_one_step, _ = best_time(lambda: model.classify_atoms(atoms, denoise_steps=1), 2)
        start = time.perf_counter()
        (logits16, _), bf16_mode, bf16_error = bf16_call(
            model, lambda m: m.logits_and_gradient(pos, graph, n, cand, False))
        t_bf16 = time.perf_counter() - start
        labels16 = bf16_call(model, lambda m: m.classify_atoms(atoms).labels)[0]
        load_after = load_average()
        us = lambda t: 1e6 * t / n  # noqa: E731
        out = {
            "n_atoms": n, "threads": threads, "edges_per_atom": graph.n_edges / n,
            "graph_us_per_atom": us(t_graph),
            "forward_us_per_atom": us(t_fwd),
            "forward_gradient_us_per_atom": us(t_grad),
            "averaging_radius": model.averaging_radius,
            "average_us_per_atom": us(t_average),
            "classification_us_per_atom": us(t_classification),
            "denoising_step_us_per_atom": us(t_step),
            "classify_atoms_us_per_atom": us(t_classify),
            "classify_atoms_1step_minus_0step_us_per_atom": us(t_one_step - t_classify),
            "bf16_forward_us_per_atom": us(t_bf16),
            "bf16_mode": bf16_mode, "bf16_native_error": bf16_error,
            # the labels users get; the per-atom argmax of the bare forward pass beside them
            "bf16_label_agreement": float(np.mean(labels16 == classified32.labels)),
            "bf16_forward_argmax_agreement": float(np.mean(np.argmax(logits16, 1)
                                                           == np.argmax(logits32, 1))),
            "bf16_max_abs_logit_difference": float(np.max(np.abs(logits16 - logits32))),
            "load_average_before": load_before, "load_average_after": load_after,
            "cpu_count": os.cpu_count(),
        }
        out["under_load"] = bool(load_before and load_before[0] > 0.5 * threads + 0.25)
        log(f"  classification {out['classification_us_per_atom']:.0f} us/atom, denoising step "
            f"{out['denoising_step_us_per_atom']:.0f} us/atom at {threads} threads "
            f"(load average {load_before[:1]})")
        return out
    finally:
        torch.set_num_threads(previous)
