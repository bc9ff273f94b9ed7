"""Training on synthetic perturbed prototypes: cross-entropy plus denoising score matching.

``L = L_CE + lambda * L_SM`` (LPFM Eqs. 9-11), where ``L_SM`` is the sigma^2-weighted squared
error between the predicted score and the Gaussian score ``-(x_noisy - x) / sigma^2``.
Every step draws its batch from a generator seeded by ``(seed, step)``, so a run resumed
from a checkpoint continues exactly as the uninterrupted run would have. The network trains
on ``device`` (a GPU with ``device: cuda``), where the next batches are drawn and graphed
ahead on the CPU (``batches.BatchesAhead``).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import LPFMError
from ..model.inference import PhaseModel
from ..model.network import ModelSpec, build_network
from ..model.files import save_model
from .batches import BatchesAhead, TrainingBatch, batch_tensors, training_device


@dataclass
class TrainingConfig:
    output: str = "lpfm_model.safetensors"
    phases: list[str] | None = None  # default: every prototype of the library
    # compact MACE settings, or the paper's frozen featurizer: mace_file / mace_mp, element
    backbone: dict[str, Any] = field(default_factory=dict)
    decoder: dict[str, Any] = field(default_factory=dict)
    steps: int = 2000
    batch_size: int = 4
    learning_rate: float = 2e-3
    final_learning_rate: float = 2e-4
    weight_decay: float = 1e-4
    score_weight: float = 0.1  # lambda
    target_atoms: int = 120
    sigma_max: float = 0.36  # Å at the reference density
    # share of structures with sigma ~ U(0, low_noise_sigma_max) instead of U(0, sigma_max)
    low_noise_fraction: float = 0.0
    low_noise_sigma_max: float = 0.06  # Å at the reference density
    # elastic augmentation, passed to SyntheticSampler (its defaults when empty); the
    # keywords it takes: synthetic.STRAIN_SETTINGS
    strain: dict[str, Any] = field(default_factory=dict)
    # relative sampling weight per prototype (1 for those not named): oversamples hard pairs
    phase_weights: dict[str, float] = field(default_factory=dict)
    seed: int = 0
    checkpoint_every: int = 100
    validate_every: int = 200
    threads: int | None = None
    # where the network trains: "cpu", "cuda", "cuda:N" or "auto" (a GPU if torch sees one)
    device: str = "cpu"
    # batches drawn and graphed ahead by a background thread while the device trains
    # (None: 2 on a GPU, 0 on the CPU, where that thread takes the training's cores: the
    # default config's step went from 0.134 to 0.196 s with it on 2 threads)
    prefetch: int | None = None
    calibration_quantile: float = 0.95  # fraction of amorphous atoms labelled unknown

    @classmethod
    def from_file(cls, path: str | Path) -> "TrainingConfig":
        path = Path(path)
        text = path.read_text()
        if path.suffix in (".yaml", ".yml"):
            import yaml
            values = yaml.safe_load(text) or {}
        else:
            values = json.loads(text)
        known = set(cls.__dataclass_fields__)
        unknown = set(values) - known
        if unknown:
            raise LPFMError(f"{path}: unknown training setting(s) {sorted(unknown)}; "
                             f"known settings: {sorted(known)}")
        return cls(**values)


def training_losses(network, batch, score_weight: float):
    """Cross-entropy and score-matching losses, and the logits, of ``batch``: a
    ``TrainingBatch`` on the network's device, or a list of samples (built here)."""
    if not isinstance(batch, TrainingBatch):
        batch = batch_tensors(batch, network.r_max)
    pos, edge_index, shifts, labels, eps, sigma = batch
    pos = pos.clone().requires_grad_(True)  # the batch's own tensor stays a leaf without grad
    logits = network(pos, edge_index, shifts)
    ce = torch.nn.functional.cross_entropy(logits, labels)
    if score_weight == 0:
        return ce, torch.zeros((), device=ce.device), logits
    log_density = torch.logsumexp(logits, dim=1).sum()
    (score,) = torch.autograd.grad(log_density, pos, create_graph=True)
    # sigma^2 |s - (-eps/sigma)|^2 = |sigma s + eps|^2: every noise level weighs alike
    sm = ((sigma[:, None] * score + eps) ** 2).sum(dim=1).mean()
    return ce, sm, logits


#: ``backbone`` keys that select the paper's path: a frozen MACE model (e.g. MACE-MP) as
#: featurizer under a new trainable decoder, instead of a compact MACE trained end to end
FROZEN_BACKBONE_KEYS = frozenset({"mace_file", "mace_mp", "element"})


def _spec_and_network(config: TrainingConfig, phases: tuple[str, ...]):
    backbone = dict(config.backbone)
    if not FROZEN_BACKBONE_KEYS & set(backbone):
        spec = ModelSpec(phases=phases, backbone=backbone, decoder=config.decoder)
        return spec, build_network(spec)
    from ..model.files import download_mace_mp, spec_for_mace_file

    other = sorted(set(backbone) - FROZEN_BACKBONE_KEYS)
    if other or ("mace_file" in backbone) == ("mace_mp" in backbone):
        raise LPFMError(
            f"a frozen MACE backbone takes exactly one of 'mace_file' (a local MACE model file) "
            f"or 'mace_mp' (a MACE-MP release name, downloaded by mace-torch) and optionally "
            f"'element' (atomic number whose embedding is used); got {sorted(backbone)}")
    path = backbone.get("mace_file") or download_mace_mp(backbone["mace_mp"])
    spec, featurizer = spec_for_mace_file(path, phases, element=backbone.get("element"),
                                          decoder=config.decoder)
    return spec, build_network(spec, mace=featurizer)


class Trainer:
    def __init__(self, config: TrainingConfig, progress: bool = True,
                 checkpoint_path: str | Path | None = None):
        from .prototypes import PROTOTYPE_LABELS
        from .synthetic import STRAIN_SETTINGS, SyntheticSampler

        self.config = config
        self.progress = progress
        if config.threads:
            torch.set_num_threads(config.threads)
        phases = tuple(config.phases or PROTOTYPE_LABELS)
        self.device = training_device(config.device)
        if config.prefetch is not None and config.prefetch < 0:
            raise LPFMError(f"prefetch must be 0 (build each batch when it is needed) or a "
                            f"positive number of batches, got {config.prefetch}")
        torch.manual_seed(config.seed)
        self.spec, self.network = _spec_and_network(config, phases)
        self.network.to(self.device)
        self.label_map = np.array([phases.index(p) if p in phases else -1
                                   for p in PROTOTYPE_LABELS])
        strain = dict(config.strain)
        if set(strain) - STRAIN_SETTINGS:
            raise LPFMError(f"unknown strain setting(s) {sorted(set(strain) - STRAIN_SETTINGS)}; "
                             f"known settings: {sorted(STRAIN_SETTINGS)}")
        for key in ("scale_range", "uniaxial_range"):
            if key in strain:
                strain[key] = tuple(strain[key])
        self.sampler = SyntheticSampler(labels=list(phases), target_atoms=config.target_atoms,
                                        sigma_max=config.sigma_max, seed=config.seed,
                                        phase_weights=config.phase_weights,
                                        low_noise_fraction=config.low_noise_fraction,
                                        low_noise_sigma_max=config.low_noise_sigma_max,
                                        **strain)
        params = [p for p in self.network.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=config.learning_rate,
                                           weight_decay=config.weight_decay)
        self._sampler_lock = threading.Lock()
        self.step = 0
        self.log: list[dict[str, float]] = []
        self.elapsed = 0.0
        self.checkpoint_path = Path(checkpoint_path or
                                    Path(config.output).with_suffix(".checkpoint.pt"))

    def learning_rate(self, step: int) -> float:
        c = self.config
        frac = min(step / max(c.steps, 1), 1.0)  # cosine from the initial to the final rate
        # a plain float: numpy scalars in the optimizer state would make the checkpoint
        # unloadable with torch.load(weights_only=True)
        return float(c.final_learning_rate + 0.5 * (c.learning_rate - c.final_learning_rate) * (
            1 + np.cos(np.pi * frac)))

    def batch(self, step: int):
        """Step ``step``'s structures (thread-safe: the sampler's generator is reseeded per
        step, and the background thread of ``BatchesAhead`` draws with it too)."""
        with self._sampler_lock:
            self.sampler.rng = np.random.default_rng([self.config.seed, step])
            samples = self.sampler.sample(self.config.batch_size)
        for s in samples:  # library indices -> this model's class indices
            s.label_index = self.label_map[np.asarray(s.label_index)]
        return samples

    @property
    def prefetch(self) -> int:
        if self.config.prefetch is not None:
            return int(self.config.prefetch)
        return 2 if self.device.type == "cuda" else 0

    def batch_on_host(self, step: int) -> TrainingBatch:
        """Step ``step``'s batch as tensors (pinned for a GPU), built on the CPU."""
        return batch_tensors(self.batch(step), self.network.r_max,
                             pin=self.device.type == "cuda")

    def save_checkpoint(self):
        state = {"step": self.step, "network": self.network.state_dict(),
                 "optimizer": self.optimizer.state_dict(), "elapsed": self.elapsed,
                 "log": json.dumps(self.log), "config": json.dumps(asdict(self.config))}
        self.checkpoint_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.checkpoint_path.with_suffix(".tmp")
        torch.save(state, tmp)
        tmp.replace(self.checkpoint_path)

    def resume(self) -> bool:
        if not self.checkpoint_path.exists():
            return False
        state = torch.load(self.checkpoint_path, weights_only=True, map_location=self.device)
        saved = json.loads(state["config"])
        mismatched = {k for k in ("backbone", "decoder", "phases", "seed", "target_atoms")
                      if saved.get(k) != asdict(self.config).get(k)}
        if mismatched:
            raise LPFMError(f"checkpoint {self.checkpoint_path} was made with other settings "
                             f"({sorted(mismatched)}); remove it or restore those settings")
        self.network.load_state_dict(state["network"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step, self.elapsed = int(state["step"]), float(state["elapsed"])
        self.log = json.loads(state["log"])
        return True

    def fit_standardization(self, n_structures: int = 16) -> None:
        """Standardise the decoder's inputs on synthetic structures (fresh runs only)."""
        with self._sampler_lock:
            self.sampler.rng = np.random.default_rng([self.config.seed, 2**31 - 1])
            samples = self.sampler.sample(n_structures)
        pos, edge_index, shifts, *_ = batch_tensors(samples, self.network.r_max).to(self.device)
        with torch.no_grad():
            features = self.network.features(pos, edge_index, shifts)
        self.network.decoder.fit_standardization(features)

    def train(self, until: int | None = None):
        from ..progress import progress

        if self.step == 0 and self.network.decoder.standardize:
            self.fit_standardization()

        until = self.config.steps if until is None else min(until, self.config.steps)
        self.network.train()
        bar = progress(total=until, initial=self.step, unit="step", enabled=self.progress,
                       leave=True)
        ahead = BatchesAhead(self.batch_on_host, self.step, until, self.prefetch) \
            if self.prefetch and self.step < until else None
        try:
            self._steps(until, bar, ahead)
        finally:
            if ahead is not None:
                ahead.close()
        bar.close()
        self.network.eval()

    def _steps(self, until: int, bar, ahead: BatchesAhead | None) -> None:
        while self.step < until:
            t0 = time.perf_counter()
            for group in self.optimizer.param_groups:
                group["lr"] = self.learning_rate(self.step)
            batch = ahead.next(self.step) if ahead is not None else \
                self.batch_on_host(self.step)
            ce, sm, logits = training_losses(self.network, batch.to(self.device),
                                             self.config.score_weight)
            loss = ce + self.config.score_weight * sm
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.network.parameters(), 10.0)
            self.optimizer.step()
            self.step += 1
            self.elapsed += time.perf_counter() - t0
            self.log.append({"step": self.step, "ce": ce.item(), "sm": sm.item(),
                             "elapsed": self.elapsed})
            bar.update(1)
            bar.set_postfix(ce=f"{ce.item():.3f}", sm=f"{sm.item():.3f}")
            if self.step % self.config.checkpoint_every == 0 or self.step == until:
                self.save_checkpoint()

    def phase_model(self, confidence_threshold: float = -np.inf) -> PhaseModel:
        return PhaseModel(self.network, self.spec.phases, confidence_threshold=confidence_threshold,
                          metadata={"name": Path(self.config.output).stem})

    def finish(self, confidence_threshold: float | None = None) -> Path:
        """Calibrate the unknown threshold and write the model file (on the CPU: a model
        file holds host tensors, and the calibration runs where inference runs)."""
        from .calibration import calibrate_threshold

        self.network.to("cpu")

        model = self.phase_model()
        if confidence_threshold is None:
            confidence_threshold = calibrate_threshold(model, self.config.calibration_quantile,
                                                       seed=self.config.seed)
        model.confidence_threshold = confidence_threshold
        training = {"config": asdict(self.config), "steps_done": self.step,
                    "training_seconds": round(self.elapsed, 1),
                    "final_losses": self.log[-1] if self.log else {}}
        return save_model(self.config.output, model, self.spec, training=training)
