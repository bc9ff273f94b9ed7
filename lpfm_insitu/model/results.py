"""What the core exchanges with its hosts: the halo protocol it needs and the answers it gives.

A subdomain needs two things from its host, supplied as a ``HaloExchange``: spreading
owner values to ghost copies (positions after a denoising step) and summing ghost
contributions back into owners (the score, exactly as LAMMPS reverse-communicates
forces). A periodic cell evaluated whole uses ``NoHalo``. ``PhaseResult`` holds the
per-atom answers for the atoms the caller owns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from ..constants import UNKNOWN_PHASE


class HaloExchange(Protocol):
    """How a host moves per-atom values between owners and ghost copies."""

    def forward(self, local_values: np.ndarray) -> np.ndarray:
        """(n_local, k) owner values -> (n_all, k), ghosts filled from their owners."""

    def reverse(self, all_values: np.ndarray) -> np.ndarray:
        """(n_all, k) -> (n_local, k), ghost contributions summed into their owners."""


class NoHalo:
    """A periodic cell evaluated whole: there are no ghosts to exchange."""

    def forward(self, local_values):
        return local_values

    def reverse(self, all_values):
        return all_values


@dataclass
class PhaseResult:
    """Per-atom answers for the atoms a caller owns."""

    phases: tuple[str, ...]
    labels: np.ndarray  # int, index into phases or UNKNOWN_PHASE
    confidence: np.ndarray  # max logit over the candidate phases
    probability: np.ndarray  # softmax probability of the label
    logits: np.ndarray  # (n, n_phases): the order parameters
    displacement: np.ndarray  # (n, 3) denoising displacement, input length units
    history: list[dict] = field(default_factory=list)  # per denoising step: labels, logits
    denoise_steps_done: int = 0  # fewer than asked when a tolerance stopped the run early
    length_scale: np.ndarray | None = None  # (n,) model units per input unit, per atom
    at_surface: np.ndarray | None = None  # (n,) bool: free-surface atoms (labelled unknown)

    @property
    def label_names(self) -> list[str]:
        return [self.phases[i] if i != UNKNOWN_PHASE else "unknown" for i in self.labels]

    def fractions(self) -> dict[str, float]:
        n = max(len(self.labels), 1)
        counts = np.bincount(self.labels + 1, minlength=len(self.phases) + 1)
        out = {"unknown": counts[0] / n}
        out.update({p: counts[k + 1] / n for k, p in enumerate(self.phases)})
        return {k: float(v) for k, v in out.items()}
