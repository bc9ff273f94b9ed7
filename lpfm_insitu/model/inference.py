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
from typing import Sequence

import numpy as np
import torch

from .blas_threads import single_threaded_numpy_blas
from ..constants import UNKNOWN_PHASE
from .chunking import evaluate_in_chunks
from .denoising import denoise_and_label
from .graph import Graph, periodic_graph, subdomain_search
from .local_scale import (REFERENCE_ATOMIC_VOLUME, REFERENCE_NN_DISTANCE,  # noqa: F401
                          SEARCH_REACH, LocalScale, Neighbours,
                          equivalent_nn_distance,
                          estimate_local_scale)
from .neighbourhood import (average_over_neighbours, scaled_graph,  # noqa: F401
                            typical_neighbour_distance)
from .network import LPFMNetwork
from .results import HaloExchange, NoHalo, PhaseResult  # noqa: F401  (the core's interface)

PRECISIONS = ("fp32", "bf16", "fp16")


def check_precision(precision: str, device_type: str | None = None) -> None:
    """Raise ``ValueError`` for a precision this model cannot run (on ``device_type``)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {PRECISIONS}")
    if precision == "fp16" and device_type is not None and device_type != "cuda":
        raise ValueError("fp16 autocast needs a CUDA device; use 'bf16' or 'fp32' on the CPU")


def labels_from_logits(logits: np.ndarray, candidates: np.ndarray | None = None,
                       threshold: float = -np.inf, at_surface: np.ndarray | None = None,
                       margin: float | None = None):
    """``(labels, confidence, probability)`` per atom from ``(n, n_phases)`` logits.

    The label is the argmax over the ``candidates`` (phase indices; None: all), as an
    index into all phases, or ``UNKNOWN_PHASE`` where the confidence (that largest logit)
    is below ``threshold`` (one value, or one per phase of ``logits``: the label's) or the
    atom is ``at_surface``. With a ``margin``, an atom below the threshold keeps its
    label where that logit leads the next candidate's by at least ``margin``: it fits
    none of the candidates well, but it is clearly nearer one of them than the others
    (a crystal compressed past what the network was trained on), where a liquid's atom
    is near several at once. The probability is the softmax probability of the label
    among the candidates.
    """
    logits = np.asarray(logits)
    cand = np.arange(logits.shape[1]) if candidates is None else np.asarray(candidates)
    sub = logits[:, cand]
    best = np.argmax(sub, axis=1) if len(sub) else np.zeros(0, dtype=int)
    confidence = sub[np.arange(len(sub)), best] if len(sub) else np.zeros(0)
    shifted = sub - confidence[:, None] if len(sub) else sub
    probability = 1.0 / np.exp(shifted).sum(axis=1) if len(sub) else np.zeros(0)
    labels = cand[best].astype(np.int64)
    # one threshold, or one per phase (all phases), read at each atom's label
    limit = np.asarray(threshold, dtype=float)[labels] if np.ndim(threshold) else threshold
    doubtful = confidence < limit
    if margin is not None and sub.shape[1] > 1 and len(sub):
        runner_up = np.partition(sub, -2, axis=1)[:, -2]
        doubtful &= confidence - runner_up < margin
    labels[doubtful] = UNKNOWN_PHASE
    if at_surface is not None:
        # a free-surface atom's environment is half a crystal's: no prototype describes
        # it, though its logits may still favour one (measured: 99% of a Cu slab's outer
        # layer at FCC's confidence, alpha-Hg after denoising)
        labels[at_surface[:len(labels)]] = UNKNOWN_PHASE
    return labels, confidence, probability


def calibrated_for(by_steps: dict, denoise_steps: int, default):
    """The setting calibrated for the most denoising steps not above ``denoise_steps``
    (settings calibrated after k steps hold for runs of at least k), else ``default``."""
    calibrated = [k for k in by_steps if k <= denoise_steps]
    return by_steps[max(calibrated)] if calibrated else default


class PhaseModel:
    """A trained LPFM with everything needed to apply it: phases, length scale, threshold."""

    def __init__(self, network: LPFMNetwork, phases: Sequence[str], *,
                 confidence_threshold: float = -np.inf, step_size: float = 0.02,
                 max_step: float = 0.2, metadata: dict | None = None,
                 device: str | torch.device = "cpu", precision: str = "fp32",
                 step_thresholds: dict[int, float] | None = None,
                 log_prior: dict[str, float] | None = None, averaging_radius: float = 0.0,
                 step_log_priors: dict[int, dict[str, float]] | None = None,
                 phase_thresholds: dict[int, dict[str, float]] | None = None,
                 candidate_margins: dict[Sequence[str], dict[int, float]] | None = None):
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
        # A lattice a near-melting liquid's atoms mimic (HCP: icosahedral-like order) may
        # need a higher threshold than the others, and one whose hot crystal no liquid
        # atom imitates (beta BCC) a lower one; k -> {phase: threshold}, which replaces
        # the step's shared threshold for atoms labelled that phase.
        self.phase_thresholds = {int(k): {str(p): float(t) for p, t in v.items()}
                                 for k, v in (phase_thresholds or {}).items()}
        # Restricted to a calibrated candidate set, an atom below the threshold keeps its
        # label where it leads the next candidate by this much (``labels_from_logits``);
        # candidate set -> {k: margin after k steps}
        self.candidate_margins = candidate_margins or {}
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
        check_precision(precision, device.type)
        self.network.to(device)
        self.device, self.precision = device, precision
        return self

    def sharing_network(self) -> "PhaseModel":
        """A PhaseModel on this one's network with settings of its own (prior, averaging
        radius, thresholds, step size, precision), so a setting added later is not lost."""
        twin = shallow_copy(self)
        twin.step_thresholds = dict(self.step_thresholds)
        twin.phase_thresholds = {k: dict(v) for k, v in self.phase_thresholds.items()}
        twin._step_log_priors = dict(self._step_log_priors)
        twin._candidate_margins = {k: dict(v) for k, v in self._candidate_margins.items()}
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
        return calibrated_for(self._step_log_priors, denoise_steps, self._log_prior)

    def restricts(self, candidates) -> bool:
        """Whether ``candidates`` (indices or names; None: all) leave phases out: such a
        run reads neither the prior nor the per-phase thresholds, both set over all."""
        return candidates is not None and len(np.unique(candidates)) < len(self.phases)

    def decision_prior(self, candidates: np.ndarray, denoise_steps: int = 0) -> np.ndarray:
        """The log prior added to the logits before deciding: ``log_prior_for``, or
        none when the candidates are a subset (they are the prior then)."""
        if self.restricts(candidates):
            return np.zeros(len(self.phases))
        return self.log_prior_for(denoise_steps)

    def threshold_for(self, denoise_steps: int) -> float:
        """The unknown threshold for a run of ``denoise_steps`` steps."""
        return calibrated_for(self.step_thresholds, denoise_steps, self.confidence_threshold)

    def unknown_thresholds(self, denoise_steps: int, candidates=None) -> np.ndarray:
        """The threshold of each phase (an atom labelled it is unknown below) for a run of
        ``denoise_steps`` steps: ``threshold_for``, or the phase's own where
        ``phase_thresholds`` has one, unless the ``candidates`` (indices or names) are a
        subset: the phases' own were set on the logits over all phases, with their prior, as a
        candidate run reads neither (measured: HCP Ti compressed 10% along c is 45% hcp
        over fcc/bcc/hcp/omega at step 0 with the shared threshold, 4% with hcp's)."""
        limits = np.full(len(self.phases), self.threshold_for(denoise_steps))
        if self.restricts(candidates):
            return limits
        for phase, value in calibrated_for(self.phase_thresholds, denoise_steps, {}).items():
            if phase in self.phases:
                k = self.phases.index(phase)
                limits[k] = value
        return limits

    @property
    def candidate_margins(self) -> dict[tuple[str, ...], dict[int, float]]:
        """Per candidate set (its phases, sorted), the margin after k denoising steps by
        which an atom's label must lead the next candidate's to stand below the threshold.

        A crystal compressed uniaxially past what the network was trained on fits no
        prototype well: HCP Ti compressed 10% along c reaches a confidence of 2.2-3.8
        over fcc/bcc/hcp/omega, a liquid's range, so the threshold calls 58% of it unknown,
        though its hcp logit leads the next candidate's by 4.7 or more on every atom,
        where 99% of a liquid's atoms lead by less than 2.3 (measured at step 0). The
        margins are calibrated on liquids for named candidate sets (``lpfm calibrate``);
        a run over any other set reads the threshold alone.
        """
        return {k: dict(v) for k, v in self._candidate_margins.items()}

    @candidate_margins.setter
    def candidate_margins(self, values) -> None:
        margins = {}
        for phases, by_steps in dict(values).items():
            names = tuple(sorted(phases.split(",") if isinstance(phases, str) else phases))
            unknown = [p for p in names if p not in self.phases]
            if unknown or len(names) < 2:
                raise ValueError(f"candidate margins need a set of at least two of this "
                                 f"model's phases, got {list(names)} (not phases: {unknown})")
            margins[names] = {int(k): float(v) for k, v in by_steps.items()}
        self._candidate_margins = margins

    def candidate_margin(self, denoise_steps: int, candidates=None) -> float | None:
        """The margin of ``candidate_margins`` for a run over ``candidates`` (indices or
        names) of ``denoise_steps`` steps; None over all phases or an uncalibrated set."""
        if not self.restricts(candidates):
            return None
        chosen = np.unique(np.asarray(candidates))
        if np.issubdtype(chosen.dtype, np.integer):
            names = {self.phases[int(c)] for c in chosen}
        else:
            from ..training.prototypes import resolve_phases  # common names ("hcp") too

            names = set(resolve_phases([str(c) for c in chosen], self.phases))
        by_steps = self._candidate_margins.get(tuple(sorted(names)))
        return None if by_steps is None else calibrated_for(by_steps, denoise_steps, None)

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
        return self._classify_cell(atoms.get_positions(), atoms.cell, atoms.pbc,
                                   denoise_steps=denoise_steps, nn_distance=nn_distance,
                                   candidates=candidates, keep_history=keep_history,
                                   tolerance=tolerance)

    def classify_periodic(self, positions: np.ndarray, cell: np.ndarray, *,
                          length_scale: float | None = None, denoise_steps: int = 0,
                          candidates: Sequence[str] | None = None) -> PhaseResult:
        """Classify the atoms of a cell periodic along all three axes.

        ``positions`` are relative to the cell's origin; atoms outside the cell are
        wrapped into it first (an MD code lets atoms stray between reneighborings).
        ``cell`` has the cell vectors as rows. ``length_scale`` fixes one scale for every
        atom (model units per input unit, ``length_scale()``); None reads it per atom.
        """
        cell = np.asarray(cell, dtype=np.float64)
        positions = np.asarray(positions, dtype=np.float64)
        fractional = np.linalg.solve(cell.T, positions.T).T
        fractional -= np.floor(fractional)
        return self._classify_cell(fractional @ cell, cell, (True, True, True),
                                   denoise_steps=denoise_steps, length_scale=length_scale,
                                   candidates=candidates)

    def _classify_cell(self, positions, cell, pbc, *, denoise_steps: int = 0,
                       nn_distance: float | None = None, length_scale: float | None = None,
                       candidates: Sequence[str] | None = None, keep_history: bool = False,
                       tolerance: float | None = None) -> PhaseResult:
        if tolerance is not None and not tolerance > 0:
            raise ValueError(f"tolerance must be a positive length, got {tolerance}")
        positions = np.asarray(positions, dtype=np.float64)
        check_positions(positions)
        pbc = np.asarray(pbc, dtype=bool)
        cell = np.asarray(cell, dtype=np.float64)
        if pbc.any() and abs(np.linalg.det(cell)) <= 0:
            raise ValueError(f"the cell is periodic along {pbc.tolist()} but has zero volume "
                             f"(cell {cell.tolist()}); set the cell, or set pbc=False for "
                             f"atoms in open space")

        def graph_of(input_positions, cutoff, device=self.graph_device()):
            return periodic_graph(input_positions, cell, pbc, cutoff, device=device)

        if nn_distance is not None:
            length_scale = self.length_scale(nn_distance=nn_distance)
        if length_scale is not None:
            scales = self._fixed_scale(len(positions), float(length_scale))
        else:
            typical = typical_neighbour_distance(positions, cell, pbc)
            scales = self.local_scale(positions, len(positions), graph_of, NoHalo(), typical)
        return denoise_and_label(self, positions, scales, len(positions), graph_of, NoHalo(),
                                 denoise_steps, candidates, keep_history, tolerance=tolerance)

    def classify_subdomain(self, positions: np.ndarray, n_local: int,
                           length_scale: float | None, halo: HaloExchange, *,
                           denoise_steps: int = 0, candidates: Sequence[str] | None = None,
                           max_atoms_per_chunk: int | None = None,
                           typical_distance: float | None = None,
                           scales: LocalScale | None = None, cell: np.ndarray | None = None,
                           pbc=(False, False, False)) -> PhaseResult:
        """Classify a rank's local atoms (first ``n_local`` rows) using its ghosts.

        ``length_scale`` fixes one scale for every atom; ``None`` reads it per atom
        (``local_scale``; give ``typical_distance``, the same on every rank, or the
        ``scales`` already computed by ``local_scale``). Ghosts must cover
        ``receptive_field`` around the local atoms, except along ``pbc`` axes, along
        which the atoms are periodic with ``cell`` (rows: cell vectors) and need no
        ghost images. Every rank must call this the same number of times (the halo
        exchange is collective), also with zero atoms.
        """
        positions = np.asarray(positions, dtype=np.float64)
        check_positions(positions)
        if max_atoms_per_chunk and any(pbc):
            raise ValueError(f"max_atoms_per_chunk={max_atoms_per_chunk} cuts the subdomain "
                             f"into slabs in open space; with pbc={tuple(pbc)} give the "
                             "ghost images instead (pbc=(False, False, False))")
        search = subdomain_search(cell, pbc)

        def graph_of(input_positions, cutoff, device=self.graph_device()):
            return search(input_positions, cutoff, device=device)

        if length_scale is not None:
            scales = self._fixed_scale(len(positions), float(length_scale))
        elif scales is None:
            if typical_distance is None:
                raise ValueError("classify_subdomain needs length_scale, typical_distance or "
                                 "scales")
            scales = self.local_scale(positions, n_local, graph_of, halo, typical_distance)
        return denoise_and_label(self, positions, scales, n_local, graph_of, halo,
                                 denoise_steps, candidates, False, max_atoms_per_chunk)

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

            def vectors(edges):
                return positions[sender[edges]] - positions[receiver[edges]] - graph.shifts[edges]

            # each receiver's edges (searches come sorted by receiver), centre -> neighbour
            return Neighbours(receiver, sender, graph.lengths, vectors)

        scales = estimate_local_scale(positions, n_owned, neighbours, halo.forward,
                                      SEARCH_REACH * float(typical_distance),
                                      REFERENCE_ATOMIC_VOLUME)
        # the last search is the one the scale used, and the widest
        scales.search_reach, scales.search_graph = list(searched.items())[-1]
        return scales

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
            logits, gradient = evaluate_in_chunks(self, positions, n_owned, graph_of,
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
        """Each owned atom's logits averaged with those of its neighbours within
        ``averaging_radius`` (``neighbourhood.average_over_neighbours``; collective)."""
        return average_over_neighbours(logits, model_positions, n_owned, graph_of, halo,
                                       self.averaging_radius, network_graph, atom_scale)

    def decide(self, logits, cand, denoise_steps: int = 0, scales: LocalScale | None = None):
        """``labels_from_logits`` with this model's thresholds for ``denoise_steps`` steps;
        free-surface atoms of ``scales`` are unknown."""
        return labels_from_logits(logits, cand, self.unknown_thresholds(denoise_steps, cand),
                                  None if scales is None else scales.at_surface,
                                  self.candidate_margin(denoise_steps, cand))


def check_positions(positions: np.ndarray) -> None:
    if positions.ndim != 2 or positions.shape[1] != 3:
        raise ValueError(f"positions must have shape (n_atoms, 3), got {positions.shape}")
    if not np.isfinite(positions).all():
        bad = np.flatnonzero(~np.isfinite(positions).all(axis=1))
        raise ValueError(f"non-finite positions for {len(bad)} atom(s), first at row {bad[0]}")
