"""Host-independent inference: a set of atoms in, per-atom labels, confidence, OPs and score out.

The same ``PhaseModel`` serves a periodic ``ase.Atoms`` (offline), and an MPI rank's
subdomain of local plus ghost atoms (in situ). A subdomain needs two things from its
host, supplied as a ``HaloExchange``: spreading owner values to ghost copies (positions
after a denoising step) and summing ghost contributions back into owners (the score,
exactly as LAMMPS reverse-communicates forces). With those, every atom's answer is
independent of how the box is split.
"""

from __future__ import annotations

import contextlib
from copy import copy as shallow_copy
from dataclasses import dataclass, field
from typing import Protocol, Sequence

import numpy as np
import torch

from .blas_threads import single_threaded_numpy_blas
from ..constants import UNKNOWN_PHASE
from .graph import Graph, open_graph, periodic_graph
from .local_scale import (REFERENCE_ATOMIC_VOLUME, REFERENCE_NN_DISTANCE,  # noqa: F401
                          SEARCH_REACH, LocalScale, equivalent_nn_distance,
                          estimate_local_scale)
from .network import LPFMNetwork

PRECISIONS = ("fp32", "bf16", "fp16")


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


class PhaseModel:
    """A trained LPFM with everything needed to apply it: phases, length scale, threshold."""

    def __init__(self, network: LPFMNetwork, phases: Sequence[str], *,
                 confidence_threshold: float = -np.inf, step_size: float = 0.02,
                 max_step: float = 0.2, metadata: dict | None = None,
                 device: str | torch.device = "cpu", precision: str = "fp32",
                 step_thresholds: dict[int, float] | None = None,
                 log_prior: dict[str, float] | None = None, averaging_radius: float = 0.0,
                 step_log_priors: dict[int, dict[str, float]] | None = None):
        self.network = network.eval()
        self.phases = tuple(phases)
        self.log_prior = log_prior or {}
        self.step_log_priors = step_log_priors or {}
        self.averaging_radius = averaging_radius
        self.confidence_threshold = float(confidence_threshold)
        # Denoising raises every atom's confidence, a liquid's too, so a threshold that
        # rejects a liquid before denoising lets it through after 8 steps. Thresholds
        # calibrated after k steps (k -> value) are used for runs of at least k steps.
        self.step_thresholds = {int(k): float(v) for k, v in (step_thresholds or {}).items()}
        self.step_size = float(step_size)  # Å^2 (model units): r += step_size * score
        self.max_step = float(max_step)  # Å (model units) per atom per step
        self.metadata = dict(metadata or {})
        self.device = torch.device("cpu")
        self.precision = "fp32"
        self.to(device, precision)

    # --- configuration -----------------------------------------------------------------

    def to(self, device: str | torch.device, precision: str | None = None) -> "PhaseModel":
        device = torch.device(device)
        precision = precision or self.precision
        if precision not in PRECISIONS:
            raise ValueError(f"precision {precision!r} is not one of {PRECISIONS}")
        if precision == "fp16" and device.type != "cuda":
            raise ValueError("fp16 autocast needs a CUDA device; use 'bf16' or 'fp32' on the CPU")
        self.network.to(device)
        self.device, self.precision = device, precision
        return self

    def sharing_network(self) -> "PhaseModel":
        """A PhaseModel on this one's network with settings of its own (prior, averaging
        radius, thresholds, step size, precision), so a setting added later is not lost."""
        twin = shallow_copy(self)
        twin.step_thresholds = dict(self.step_thresholds)
        twin._step_log_priors = dict(self._step_log_priors)
        twin.metadata = dict(self.metadata)
        return twin

    @property
    def log_prior(self) -> dict[str, float]:
        """Per-phase log prior added to the network's logits (phases not named: 0).

        The network is trained on every prototype equally often, so its logits carry a
        uniform prior. Near melting, thermal noise makes a hot FCC crystal look as much
        like its stretched (bct In) or restacked (dhcp) relatives as like FCC, and with a
        uniform prior the rare relative wins as often as the common lattice. A negative
        log prior on the rare prototypes settles those ties. It is a decision prior: it
        shifts labels, confidence and OPs, while the score stays the gradient of the
        network's own ``log p(x) = sum_i logsumexp_c l[i, c]``, the density score matching
        trained. (With the prior inside the score, denoising pulled rare crystals towards
        the common lattices: `balanced` labelled 88.5% of the synthetic crystals right
        after 8 steps at sigma 0.15 Å, 93.0% with the network's own score, and 100% of the
        hot MD crystals either way.) The common lattices' logits are those of the network.
        Restricting ``candidates`` replaces the prior: the caller's candidates are the
        prior then, uniform over them. This is the prior of runs without denoising;
        ``step_log_priors`` may give denoised runs weaker ones. Setting it sets the prior
        of every run length (it clears ``step_log_priors``).
        """
        return self._prior_as_dict(self._log_prior)

    @log_prior.setter
    def log_prior(self, values: dict[str, float]) -> None:
        self._log_prior = self.log_prior_vector(values)
        self._step_log_priors = {}

    @property
    def step_log_priors(self) -> dict[int, dict[str, float]]:
        """Log priors for runs of at least k denoising steps (k -> prior, as ``log_prior``).

        The prior settles ties that thermal noise makes: a hot FCC atom looks as much like
        bct In as like FCC. Denoising removes that noise, after which the network tells the
        two apart by itself, and a prior strong enough for undenoised hot crystals would
        then only hide the rare prototype (bct In, FCC stretched 7.6%, was labelled FCC at
        every noise level). Runs shorter than every k use ``log_prior``.
        """
        return {k: self._prior_as_dict(v) for k, v in self._step_log_priors.items()}

    @step_log_priors.setter
    def step_log_priors(self, values: dict[int, dict[str, float]]) -> None:
        priors = {}
        for steps, prior in values.items():
            if int(steps) != steps or int(steps) < 1:
                raise ValueError(f"step_log_priors are keyed by denoising steps >= 1 (0 is "
                                 f"log_prior's), got {steps!r}")
            priors[int(steps)] = self.log_prior_vector(prior)
        self._step_log_priors = priors

    def _prior_as_dict(self, vector: np.ndarray) -> dict[str, float]:
        return {p: float(v) for p, v in zip(self.phases, vector) if v != 0.0}

    def log_prior_vector(self, values: dict[str, float]) -> np.ndarray:
        """A log prior given by phase name as the per-phase vector added to the logits."""
        unknown = sorted(set(values) - set(self.phases))
        if unknown:
            raise ValueError(f"log prior given for phase(s) {unknown} that this model does "
                             f"not have; its phases: {list(self.phases)}")
        bad = {p: v for p, v in values.items() if not np.isfinite(v)}
        if bad:
            raise ValueError(f"log prior values must be finite numbers, got {bad}")
        return np.array([float(values.get(p, 0.0)) for p in self.phases])

    @property
    def averaging_radius(self) -> float:
        """Radius (model units) of the neighbourhood whose logits make an atom's OPs; 0: none.

        One hot atom's own environment can sit nearer a neighbouring prototype than its
        crystal's (a near-melting FCC atom looks like bct In one time in twenty), while the
        shell around it rarely does: averaging the logits over the atom and its neighbours
        within this radius, as Lechner and Dellago average bond-order parameters, removes
        those isolated errors at the price of blurring interfaces by one shell. Labels,
        confidence and the reported OPs come from the averaged logits; the score stays the
        gradient of the per-atom ``log p``.
        """
        return self._averaging_radius

    @averaging_radius.setter
    def averaging_radius(self, radius: float) -> None:
        radius = float(radius)
        # A subdomain holds ghosts out to the receptive field, and their logits come from
        # their owners, so any radius up to one cutoff is exact on every rank.
        if not 0.0 <= radius <= self.cutoff:
            raise ValueError(f"averaging_radius must be between 0 (off) and the model's "
                             f"cutoff {self.cutoff:g} (model units), got {radius:g}")
        self._averaging_radius = radius

    def log_prior_for(self, denoise_steps: int) -> np.ndarray:
        """The per-phase log prior of a run of ``denoise_steps`` steps over all phases."""
        calibrated = [k for k in self._step_log_priors if k <= denoise_steps]
        return self._step_log_priors[max(calibrated)] if calibrated else self._log_prior

    def _prior_for(self, candidates: np.ndarray, denoise_steps: int = 0) -> np.ndarray:
        if len(np.unique(candidates)) < len(self.phases):
            return np.zeros(len(self.phases))
        return self.log_prior_for(denoise_steps)

    def threshold_for(self, denoise_steps: int) -> float:
        """The unknown threshold for a run of ``denoise_steps`` steps."""
        calibrated = [k for k in self.step_thresholds if k <= denoise_steps]
        if not calibrated:
            return self.confidence_threshold
        return self.step_thresholds[max(calibrated)]

    def candidate_indices(self, candidates: Sequence[str] | None) -> np.ndarray:
        if candidates is None:
            return np.arange(len(self.phases))
        from ..training.prototypes import resolve_phases  # common names ("hcp") or AFLOW labels

        return np.array([self.phases.index(c) for c in resolve_phases(candidates, self.phases)])

    @property
    def cutoff(self) -> float:
        return self.network.r_max

    def receptive_field(self, length_scale: float = 1.0, denoise_steps: int = 0) -> float:
        """Distance (input units) within which atoms influence an atom's answer.

        The network's reach (num_interactions x r_max), plus what denoising can move atoms
        into it: at most ``max_step`` per step for an atom and for its neighbour.
        """
        model_units = (self.network.num_interactions * self.network.r_max
                       + 2 * int(denoise_steps) * self.max_step)
        return model_units / length_scale

    @staticmethod
    def length_scale(atomic_volume: float | None = None, nn_distance: float | None = None) -> float:
        """Factor mapping input lengths onto the model's reference density."""
        if nn_distance is not None:
            if not nn_distance > 0:
                raise ValueError(f"nn_distance must be positive, got {nn_distance}")
            return REFERENCE_NN_DISTANCE / float(nn_distance)
        if atomic_volume is None or not atomic_volume > 0:
            raise ValueError(f"atomic volume must be positive, got {atomic_volume}")
        return (REFERENCE_ATOMIC_VOLUME / float(atomic_volume)) ** (1.0 / 3.0)

    # --- one evaluation ------------------------------------------------------------------

    def _autocast(self):
        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def _to_device(self, values, dtype: torch.dtype) -> torch.Tensor:
        """A numpy array (or tensor) as a tensor of ``dtype`` on the model's device.

        To a GPU through pinned memory, asynchronously (torch caches the pinned blocks);
        a tensor already there (a device graph's) stays where it is.
        """
        if torch.is_tensor(values):
            return values.to(self.device, dtype)
        host = torch.from_numpy(np.ascontiguousarray(values)).to(dtype)
        if self.device.type == "cuda":
            return host.pin_memory().to(self.device, non_blocking=True)
        return host

    def graph_device(self) -> torch.device | None:
        """Where neighbour graphs are searched: on a GPU the model's device (vesin-torch),
        so edges never cross the bus; None on the CPU (vesin on numpy arrays)."""
        return self.device if self.device.type == "cuda" else None

    def logits_and_gradient(self, positions: np.ndarray, graph: Graph, n_owned: int,
                            candidates: np.ndarray, need_gradient: bool,
                            atom_scale: np.ndarray | None = None):
        """The network's logits of the first ``n_owned`` atoms (no prior), and d/dr of their
        summed log-density.

        Positions and graph are in model units, or in input units with ``atom_scale`` (each
        atom's factor onto model units, held fixed: the gradient is then d/dr of the input
        positions). The gradient has a row for every atom, ghosts included: a ghost's row
        belongs to its owner.
        """
        if len(positions) == 0:  # an MPI rank without atoms: MACE cannot reshape empty tensors
            return (np.zeros((0, len(self.phases))),
                    np.zeros((0, 3)) if need_gradient else None)
        pos = self._to_device(positions, torch.float32).requires_grad_(need_gradient)
        edge_index = self._to_device(graph.edge_index, torch.int64)
        shifts = self._to_device(graph.shifts, torch.float32)
        cand = torch.as_tensor(candidates, device=self.device)
        scale = None if atom_scale is None else self._to_device(atom_scale, torch.float32)
        # classifying keeps no autograd graph (less memory, no bookkeeping)
        grad_mode = torch.enable_grad() if need_gradient else torch.inference_mode()
        with grad_mode, self._autocast():
            logits = self.network(pos, edge_index, shifts, n_owned, atom_scale=scale).float()
        gradient = None
        if need_gradient:
            # the density score matching trained (uniform over phases); see ``log_prior``
            log_density = torch.logsumexp(logits[:, cand], dim=1).sum()
            (gradient,) = torch.autograd.grad(log_density, pos)
            gradient = gradient.detach().cpu().numpy().astype(np.float64)
        return logits.detach().cpu().numpy().astype(np.float64), gradient

    # --- whole workflows -------------------------------------------------------------------

    def classify_atoms(self, atoms, *, denoise_steps: int = 0, nn_distance: float | None = None,
                       candidates: Sequence[str] | None = None, keep_history: bool = False,
                       tolerance: float | None = None) -> PhaseResult:
        """Classify an ``ase.Atoms``: a periodic cell, a cell with vacuum, or open atoms.

        Each atom's length scale is read from its own neighbourhood (``local_scale``), so
        vacuum in the cell changes nothing; ``nn_distance`` instead maps every atom with one
        scale, that of an FCC crystal with this neighbour distance.
        ``tolerance`` (input length units) ends denoising early, once no atom moved further
        than it in a step. Subdomains (MPI) always run their ``denoise_steps``: stopping
        early on one rank only would leave the others waiting in a halo exchange.
        """
        if tolerance is not None and not tolerance > 0:
            raise ValueError(f"tolerance must be a positive length, got {tolerance}")
        positions = np.asarray(atoms.get_positions(), dtype=np.float64)
        check_positions(positions)
        pbc = np.asarray(atoms.pbc, dtype=bool)
        cell = np.asarray(atoms.cell, dtype=np.float64)
        if pbc.any() and abs(np.linalg.det(cell)) <= 0:
            raise ValueError(f"the cell is periodic along {pbc.tolist()} but has zero volume "
                             f"(cell {cell.tolist()}); set the cell, or set pbc=False for "
                             f"atoms in open space")

        def graph_of(input_positions, cutoff, device=self.graph_device()):
            return periodic_graph(input_positions, cell, pbc, cutoff, device=device)

        if nn_distance is not None:
            scales = self._fixed_scale(len(positions), self.length_scale(nn_distance=nn_distance))
        else:
            typical = typical_neighbour_distance(positions, cell, pbc)
            scales = self.local_scale(positions, len(positions), graph_of, NoHalo(), typical)
        return self._run(positions, scales, len(positions), graph_of, NoHalo(), denoise_steps,
                         candidates, keep_history, tolerance=tolerance)

    def classify_subdomain(self, positions: np.ndarray, n_local: int,
                           length_scale: float | None, halo: HaloExchange, *,
                           denoise_steps: int = 0, candidates: Sequence[str] | None = None,
                           max_atoms_per_chunk: int | None = None,
                           typical_distance: float | None = None,
                           scales: LocalScale | None = None) -> PhaseResult:
        """Classify a rank's local atoms (first ``n_local`` rows) using its ghosts.

        ``length_scale`` fixes one scale for every atom; ``None`` reads it per atom
        (``local_scale``; give ``typical_distance``, the same on every rank, or the
        ``scales`` already computed by ``local_scale``). Ghosts must cover
        ``receptive_field`` around the local atoms. Every rank must call this the same
        number of times (the halo exchange is collective), also with zero atoms.
        """
        positions = np.asarray(positions, dtype=np.float64)
        check_positions(positions)

        def graph_of(input_positions, cutoff, device=self.graph_device()):
            return open_graph(input_positions, cutoff, device=device)

        if length_scale is not None:
            scales = self._fixed_scale(len(positions), float(length_scale))
        elif scales is None:
            if typical_distance is None:
                raise ValueError("classify_subdomain needs length_scale, typical_distance or "
                                 "scales")
            scales = self.local_scale(positions, n_local, graph_of, halo, typical_distance)
        return self._run(positions, scales, n_local, graph_of, halo, denoise_steps,
                         candidates, False, max_atoms_per_chunk)

    @staticmethod
    def _fixed_scale(n_atoms: int, scale: float) -> LocalScale:
        return LocalScale(np.full(n_atoms, scale), np.zeros(n_atoms), np.zeros(n_atoms, bool))

    def local_scale(self, positions: np.ndarray, n_owned: int, graph_of, halo: HaloExchange,
                    typical_distance: float) -> LocalScale:
        """Per-atom length scales read from each atom's neighbourhood (see ``local_scale``).

        ``typical_distance`` (input units, the same on every rank) sizes the neighbour
        search: an upper estimate of the nearest-neighbour distance, such as the box's.
        ``graph_of(positions, cutoff, device=None)`` searches on the host: the estimate
        is numpy work, and the first network pass reuses its graph from there.
        """
        if not np.isfinite(typical_distance) or typical_distance <= 0:
            raise ValueError(f"typical_distance must be a positive length, got "
                             f"{typical_distance}")

        searched = {}

        def neighbours(cutoff):
            graph = searched[cutoff] = graph_of(positions, cutoff, device=None)
            sender, receiver = graph.edge_index
            # each receiver's edges (searches come sorted by receiver), centre -> neighbour
            return receiver, sender, positions[sender] - positions[receiver] - graph.shifts

        scales = estimate_local_scale(positions, n_owned, neighbours, halo.forward,
                                      SEARCH_REACH * float(typical_distance),
                                      REFERENCE_ATOMIC_VOLUME)
        ((scales.search_reach, scales.search_graph),) = searched.items()
        return scales

    def _run(self, positions, scales: LocalScale, n_owned, graph_of, halo, denoise_steps,
             candidates, keep_history, max_atoms_per_chunk=None, tolerance=None) -> PhaseResult:
        cand = self.candidate_indices(candidates)
        if denoise_steps < 0:
            raise ValueError(f"denoise_steps must be >= 0, got {denoise_steps}")
        atom_scale = scales.scale
        own_scale = atom_scale[:n_owned, None]
        current = positions.copy()
        graph_of = _reusing(scales, current, graph_of)
        history = []
        converged = False
        for step in range(denoise_steps + 1):
            need_gradient = step < denoise_steps and not converged
            logits, gradient = self.evaluate(
                current, n_owned, graph_of, cand, halo, need_gradient=need_gradient,
                average=keep_history or not need_gradient,  # labels are read from these
                max_atoms_per_chunk=max_atoms_per_chunk, atom_scale=atom_scale)
            logits = logits + self._prior_for(cand, step)  # a decision prior, after the score
            if keep_history:
                history.append({"step": step,
                                "labels": self._labels(logits, cand, step, scales)[0],
                                "logits": logits})
            if need_gradient:
                # the gradient is d log p / d r in input units; a step is taken in model units
                score = halo.reverse(gradient) / own_scale
                move = self.step_size * score
                norm = np.linalg.norm(move, axis=1, keepdims=True)
                move *= np.minimum(1.0, self.max_step / np.maximum(norm, 1e-12))
                move /= own_scale
                if tolerance is not None and len(move):
                    converged = float(np.linalg.norm(move, axis=1).max()) < tolerance
                current = current + halo.forward(move)
            else:
                break
        labels, confidence, probability = self._labels(logits, cand, step, scales)
        displacement = current[:n_owned] - positions[:n_owned]
        return PhaseResult(self.phases, labels, confidence, probability, logits, displacement,
                           history, denoise_steps_done=step,
                           length_scale=atom_scale[:n_owned].copy(),
                           at_surface=scales.at_surface[:n_owned].copy())

    def evaluate(self, model_positions, n_owned, graph_of, candidates, halo, *,
                 need_gradient: bool, average: bool, max_atoms_per_chunk: int | None = None,
                 atom_scale: np.ndarray | None = None):
        """One pass of the network: ``(logits, gradient)`` of the first ``n_owned`` atoms
        (the network's logits: the caller adds the prior for its number of steps).

        ``graph_of(positions, cutoff)`` builds the neighbour graph; positions are in model
        units, or in input units with ``atom_scale`` (per atom, onto model units).
        With ``average`` the logits are those labels are read from, averaged over
        ``averaging_radius``. Collective on a subdomain when ``average`` is set.
        """
        if atom_scale is None:
            atom_scale = np.ones(len(model_positions))
        with single_threaded_numpy_blas():
            return self._evaluate(model_positions, n_owned, graph_of, candidates, halo,
                                  need_gradient, average, max_atoms_per_chunk,
                                  np.asarray(atom_scale, dtype=np.float64))

    def _evaluate(self, positions, n_owned, graph_of, candidates, halo, need_gradient,
                  average, max_atoms_per_chunk, atom_scale):
        if not max_atoms_per_chunk or n_owned <= max_atoms_per_chunk:
            graph = scaled_graph(positions, graph_of, atom_scale, self.cutoff)
            logits, gradient = self.logits_and_gradient(positions, graph, n_owned,
                                                        candidates, need_gradient, atom_scale)
        else:
            graph = None
            logits, gradient = self._evaluate_in_chunks(positions, n_owned, graph_of,
                                                        candidates, need_gradient,
                                                        max_atoms_per_chunk, atom_scale)
        if average:
            logits = self.average_over_neighbours(logits, positions, n_owned, graph_of,
                                                  halo, network_graph=graph,
                                                  atom_scale=atom_scale)
        return logits, gradient

    def average_over_neighbours(self, logits, model_positions, n_owned, graph_of, halo,
                                network_graph: Graph | None = None,
                                atom_scale: np.ndarray | None = None):
        """Each owned atom's logits averaged with those of its neighbours (``averaging_radius``).

        ``graph_of(positions, cutoff)`` builds the neighbour graph as for the network;
        ``network_graph``, the network's own graph of these positions, saves that search
        (the radius is at most the network's cutoff, so its edges are a subset).
        Collective on a subdomain (the ghosts' logits come from their owners), so every
        rank calls it whatever its atom count.
        """
        if self.averaging_radius == 0.0:
            return logits
        every_atom = halo.forward(logits)  # ghosts get their owners' logits
        if n_owned == 0:
            return logits
        if atom_scale is None:
            atom_scale = np.ones(len(model_positions))
        graph = network_graph if network_graph is not None else \
            scaled_graph(model_positions, graph_of, atom_scale, self.averaging_radius)
        graph = within_scaled(graph, model_positions, atom_scale, self.averaging_radius)
        # on the graph's device (a GPU's for a device graph); every pair is there both
        # ways, so summing senders into owned receivers sums each owned atom's neighbours
        edge_index = torch.as_tensor(graph.edge_index)
        sender, receiver = edge_index[0], edge_index[1]
        device = receiver.device
        keep = receiver < n_owned
        centre, neighbour = receiver[keep], sender[keep]
        every_atom = torch.as_tensor(np.asarray(every_atom, dtype=np.float64), device=device)
        summed = torch.as_tensor(np.array(logits, dtype=np.float64), device=device).index_add_(
            0, centre, every_atom[neighbour])
        count = 1.0 + torch.bincount(centre, minlength=n_owned).to(summed.dtype)
        return (summed / count[:, None]).cpu().numpy()

    def _evaluate_in_chunks(self, positions, n_owned, graph_of, cand, need_gradient, chunk,
                            atom_scale):
        """Slabs of owned atoms, each with every atom within the receptive field around it.

        Summing each slab's gradient gives the gradient of the whole sum, so chunking
        changes memory, not answers.
        """
        reach = self.receptive_field(float(atom_scale.min()))
        axis = int(np.argmax(np.ptp(positions[:n_owned], axis=0)))
        order = np.argsort(positions[:n_owned, axis], kind="stable")
        logits = np.zeros((n_owned, len(self.phases)))
        gradient = np.zeros_like(positions) if need_gradient else None
        for start in range(0, n_owned, chunk):
            owned = order[start:start + chunk]
            lo, hi = positions[owned, axis].min() - reach, positions[owned, axis].max() + reach
            near = np.flatnonzero((positions[:, axis] >= lo) & (positions[:, axis] <= hi))
            others = np.setdiff1d(near, owned, assume_unique=True)
            members = np.concatenate([owned, others])
            sub, sub_scale = positions[members], atom_scale[members]
            part_logits, part_grad = self.logits_and_gradient(
                sub, scaled_graph(sub, graph_of, sub_scale, self.cutoff), len(owned), cand,
                need_gradient, sub_scale)
            logits[owned] = part_logits
            if need_gradient:
                np.add.at(gradient, members, part_grad)
        return logits, gradient

    def _labels(self, logits, cand, denoise_steps: int = 0, scales: LocalScale | None = None):
        sub = logits[:, cand]
        best = np.argmax(sub, axis=1) if len(sub) else np.zeros(0, dtype=int)
        confidence = sub[np.arange(len(sub)), best] if len(sub) else np.zeros(0)
        shifted = sub - confidence[:, None] if len(sub) else sub
        probability = 1.0 / np.exp(shifted).sum(axis=1) if len(sub) else np.zeros(0)
        labels = cand[best].astype(np.int64)
        labels[confidence < self.threshold_for(denoise_steps)] = UNKNOWN_PHASE
        if scales is not None:
            # a free-surface atom's environment is half a crystal's: no prototype describes
            # it, though its logits may still favour one (measured: 99% of a Cu slab's outer
            # layer at FCC's confidence, alpha-Hg after denoising)
            labels[scales.at_surface[:len(labels)]] = UNKNOWN_PHASE
        return labels, confidence, probability


def _reusing(scales: LocalScale, positions: np.ndarray, graph_of):
    """``graph_of`` that cuts the local scale's own neighbour search down, where that
    search was of these very positions and reached far enough (the first pass of a run)."""
    search = getattr(scales, "search_graph", None)
    if search is None:
        return graph_of

    def graph_of_reusing(input_positions, cutoff):
        if input_positions is positions and cutoff <= scales.search_reach:
            return search.within(input_positions, cutoff)
        return graph_of(input_positions, cutoff)

    return graph_of_reusing


def scaled_graph(positions: np.ndarray, graph_of, atom_scale: np.ndarray, radius: float) -> Graph:
    """The edges ``sender -> receiver`` no longer than ``radius`` in the receiver's model
    units (its length times the receiver's scale)."""
    smallest = float(atom_scale.min()) if len(atom_scale) else 1.0
    graph = graph_of(positions, radius / smallest)
    if len(atom_scale) == 0 or np.ptp(atom_scale) == 0.0:
        return graph  # one scale: the search's own cutoff is the radius
    return within_scaled(graph, positions, atom_scale, radius)


def within_scaled(graph: Graph, positions: np.ndarray, atom_scale: np.ndarray,
                  radius: float) -> Graph:
    """``graph``'s edges no longer than ``radius`` in their receiver's model units (numpy
    arrays, or tensors on a device graph's device)."""
    sender, receiver = graph.edge_index
    if torch.is_tensor(receiver):
        scale = torch.as_tensor(np.asarray(atom_scale), device=receiver.device)
        lengths = graph.lengths if graph.lengths is not None else torch.linalg.vector_norm(
            torch.as_tensor(positions, device=receiver.device)[receiver]
            - torch.as_tensor(positions, device=receiver.device)[sender] + graph.shifts, dim=1)
        keep = lengths.to(scale.dtype) * scale[receiver] < radius
    else:
        lengths = graph.lengths if graph.lengths is not None else np.linalg.norm(
            positions[receiver] - positions[sender] + graph.shifts, axis=1)
        keep = lengths * atom_scale[receiver] < radius
    return Graph(graph.edge_index[:, keep], graph.shifts[keep], lengths[keep])


def typical_neighbour_distance(positions: np.ndarray, cell: np.ndarray, pbc) -> float:
    """An upper estimate of the nearest-neighbour distance, to size neighbour searches.

    The box's volume per atom overestimates it where there is vacuum; 1.6 x the mean
    nearest distance (thermal noise pulls that ~10% low, and an open structure's first
    shell is short for its density) bounds it there.
    """
    from scipy.spatial import cKDTree

    if len(positions) < 2:
        return 1.0
    estimates = []
    if np.all(pbc):
        volume = abs(np.linalg.det(cell))
        if volume > 0:
            estimates.append(equivalent_nn_distance(volume / len(positions)))
    nearest, _ = cKDTree(positions).query(positions, k=2)
    estimates.append(1.6 * float(np.mean(nearest[:, 1])))
    return min(estimates)


def check_positions(positions: np.ndarray) -> None:
    if positions.ndim != 2 or positions.shape[1] != 3:
        raise ValueError(f"positions must have shape (n_atoms, 3), got {positions.shape}")
    if not np.isfinite(positions).all():
        bad = np.flatnonzero(~np.isfinite(positions).all(axis=1))
        raise ValueError(f"non-finite positions for {len(bad)} atom(s), first at row {bad[0]}")
