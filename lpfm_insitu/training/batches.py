"""Training batches as tensors, on the network's device, built ahead of the step that uses them.

On a GPU a training step's network work takes milliseconds, while drawing the structures
and building their neighbour graphs is CPU work of the same order (0.10 s per step for 64
structures, issue 19's measurement on an H200). ``BatchesAhead`` builds the next batches in
a background thread while the device trains on the current one. Each step's batch depends
on ``(seed, step)`` alone, so building ahead changes no batch, and a run resumed from a
checkpoint still continues exactly as the uninterrupted run would have.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, NamedTuple

import numpy as np
import torch

from ..errors import LPFMError
from ..model.graph import periodic_graph


class TrainingBatch(NamedTuple):
    """Structures concatenated into one graph, with the per-atom targets."""

    positions: torch.Tensor  # (n_atoms, 3) float32
    edge_index: torch.Tensor  # (2, n_edges) int64
    shifts: torch.Tensor  # (n_edges, 3) float32
    labels: torch.Tensor  # (n_atoms,) int64: class index per atom
    eps: torch.Tensor  # (n_atoms, 3) float32: the noise each atom was given
    sigma: torch.Tensor  # (n_atoms,) float32: its structure's noise level

    def to(self, device: torch.device) -> "TrainingBatch":
        """On ``device``; from pinned host memory without waiting, on a GPU."""
        if torch.device(device).type == "cpu":
            return self
        return TrainingBatch(*(t.to(device, non_blocking=True) for t in self))


def batch_tensors(samples, cutoff: float, pin: bool = False) -> TrainingBatch:
    """Concatenate structures into one graph; ``pin`` puts the tensors in page-locked
    memory (for asynchronous copies to a GPU)."""
    positions, edges, shifts, labels, eps, sigma_atom = [], [], [], [], [], []
    offset = 0
    for s in samples:
        atoms = s.atoms
        pos = atoms.get_positions()
        graph = periodic_graph(pos, np.asarray(atoms.cell), atoms.pbc, cutoff)
        positions.append(pos)
        edges.append(graph.edge_index + offset)
        shifts.append(graph.shifts)
        labels.append(np.asarray(s.label_index))
        # logits ignore rigid translations, so the score cannot undo the mean noise
        eps.append(s.eps - s.eps.mean(axis=0))
        sigma = max(float(s.sigma), 1e-6)
        sigma_atom.append(np.full(len(pos), sigma))
        offset += len(pos)
    batch = TrainingBatch(torch.tensor(np.concatenate(positions), dtype=torch.float32),
                          torch.tensor(np.concatenate(edges, axis=1)),
                          torch.tensor(np.concatenate(shifts), dtype=torch.float32),
                          torch.tensor(np.concatenate(labels)),
                          torch.tensor(np.concatenate(eps), dtype=torch.float32),
                          torch.tensor(np.concatenate(sigma_atom), dtype=torch.float32))
    return TrainingBatch(*(t.pin_memory() for t in batch)) if pin else batch


def training_device(requested: str) -> torch.device:
    """The device a training run asks for: "cpu", "cuda", "cuda:N", or "auto" (the first
    GPU torch sees, else the CPU)."""
    cuda = torch.cuda.is_available()
    if requested == "auto":
        return torch.device("cuda" if cuda else "cpu")
    try:
        device = torch.device(requested)
    except (RuntimeError, ValueError):
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise LPFMError(f"training device {requested!r} is not one of 'cpu', 'cuda', "
                        "'cuda:N' or 'auto'")
    if device.type == "cuda":
        count = torch.cuda.device_count() if cuda else 0
        if device.index is not None and device.index >= count or count == 0:
            raise LPFMError(f"training device {requested!r}, but torch sees "
                            f"{count} CUDA device(s) here: train with device 'cpu' or "
                            "'auto', or on a machine with a GPU")
    return device


class BatchesAhead:
    """``make(step)`` for ``start, start + 1, ..., stop - 1``, up to ``depth`` of them
    built ahead by one background thread (so in order, one at a time); ``next(step)``
    returns them in that order. An exception in ``make`` is raised by ``next``."""

    def __init__(self, make: Callable[[int], object], start: int, stop: int, depth: int):
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        self._make, self._next_step, self._stop = make, start, stop
        self._expected = start
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lpfm-batches")
        self._pending: deque[Future] = deque()
        for _ in range(depth):
            self._submit()

    def _submit(self) -> None:
        if self._next_step < self._stop:
            self._pending.append(self._pool.submit(self._make, self._next_step))
            self._next_step += 1

    def next(self, step: int):
        if step != self._expected or not self._pending:
            raise ValueError(f"batch of step {step} asked for; the next built is "
                             f"{self._expected} (of steps up to {self._stop - 1})")
        batch = self._pending.popleft().result()
        self._expected += 1
        self._submit()
        return batch

    def close(self) -> None:
        for future in self._pending:
            future.cancel()
        self._pool.shutdown(wait=True)

    def __enter__(self) -> "BatchesAhead":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
