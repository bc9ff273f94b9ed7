"""Model files: weights plus everything needed to use them, in one safetensors file.

safetensors holds tensors and a string-to-string header and nothing executable, so
opening a model received from someone else cannot run code. The header carries the
architecture, phase list, length scale, confidence threshold, training configuration
and versions; loading checks them before building anything.
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file, safe_open

from .. import __version__
from ..errors import LPFMError
from .allocator import keep_freed_memory
from .inference import REFERENCE_ATOMIC_VOLUME, PhaseModel
from .network import LPFMNetwork, ModelSpec, build_network, mace_architecture

FORMAT_NAME = "lpfm-model"
FORMAT_VERSION = 1
SHIPPED_MODELS_PACKAGE = "lpfm_insitu.model.shipped"
#: the shipped model that ``load_model()`` and the tools use when none is named; the name
#: "default" always means this one, so inputs and scripts need not change when it does
DEFAULT_MODEL = "shape_aware"
DEFAULT_ALIAS = "default"


class ModelFileError(LPFMError):
    """A model file that this version cannot use, with what to do about it."""


def save_model(path: str | Path, model: PhaseModel, spec: ModelSpec, *,
               training: dict[str, Any] | None = None) -> Path:
    path = Path(path)
    header = {
        "format": FORMAT_NAME,
        "format_version": str(FORMAT_VERSION),
        "package_version": __version__,
        "spec": json.dumps(spec.to_dict()),
        "reference_atomic_volume": repr(REFERENCE_ATOMIC_VOLUME),
        "confidence_threshold": repr(model.confidence_threshold),
        "step_thresholds": json.dumps({str(k): v for k, v in model.step_thresholds.items()}),
        "log_prior": json.dumps(model.log_prior),
        "step_log_priors": json.dumps({str(k): v for k, v in model.step_log_priors.items()}),
        "phase_thresholds": json.dumps({str(k): v for k, v in model.phase_thresholds.items()}),
        "candidate_margins": json.dumps({",".join(names): {str(k): v for k, v in by_steps.items()}
                                         for names, by_steps in model.candidate_margins.items()}),
        "step_size": repr(model.step_size),
        "max_step": repr(model.max_step),
        "averaging_radius": repr(model.averaging_radius),
        "training": json.dumps(training or {}),
        "metadata": json.dumps(model.metadata),
    }
    state = {k: v.detach().cpu().contiguous() for k, v in model.network.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(state, str(tmp), metadata=header)
    tmp.replace(path)  # a crash mid-write never leaves a truncated model under the real name
    return path


def read_header(path: str | Path) -> dict[str, str]:
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file {str(path)!r} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelFileError(
            f"{str(path)!r} is not an LPFM model file (not a readable safetensors file: {exc}); "
            f"make one with 'lpfm train' or use the shipped model {DEFAULT_MODEL!r}") from exc
    if header.get("format") != FORMAT_NAME:
        raise ModelFileError(
            f"{str(path)!r} is a safetensors file but not an LPFM model (format "
            f"{header.get('format')!r}, expected {FORMAT_NAME!r})")
    version = int(header.get("format_version", "0"))
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{str(path)!r} uses model format {version}, newer than this lpfm_insitu "
            f"{__version__} understands ({FORMAT_VERSION}); upgrade lpfm_insitu")
    for key in ("spec", "confidence_threshold"):
        if key not in header:
            raise ModelFileError(f"{str(path)!r} lacks the header field {key!r}; the file is "
                                 "damaged or was not written by save_model")
    return header


def resolve_model_path(name_or_path: str | Path) -> Path:
    """A shipped model's name ('shape_aware', or 'default' for the default) or a file path."""
    candidate = Path(name_or_path)
    if candidate.suffix or candidate.exists() or "/" in str(name_or_path):
        return candidate
    if str(name_or_path) == DEFAULT_ALIAS:
        name_or_path = DEFAULT_MODEL
    shipped = resources.files(SHIPPED_MODELS_PACKAGE) / f"{name_or_path}.safetensors"
    if not shipped.is_file():
        raise ModelFileError(
            f"no shipped model named {str(name_or_path)!r}; shipped models: {shipped_models()} "
            f"({DEFAULT_ALIAS!r} is {DEFAULT_MODEL!r}); or give the path of a model file")
    return Path(str(shipped))


def shipped_models() -> list[str]:
    folder = resources.files(SHIPPED_MODELS_PACKAGE)
    return sorted(p.name[: -len(".safetensors")] for p in folder.iterdir()
                  if p.name.endswith(".safetensors"))


def _shipped_name(path: Path) -> str | None:
    folder = Path(str(resources.files(SHIPPED_MODELS_PACKAGE)))
    try:
        same_folder = path.resolve().parent == folder.resolve()
    except OSError:
        return None
    return path.stem if same_folder and path.suffix == ".safetensors" else None


def load_model(name_or_path: str | Path = DEFAULT_MODEL, *, device: str = "cpu",
               precision: str = "fp32") -> PhaseModel:
    """Load a model file (or a shipped model by name) without executing anything from it."""
    keep_freed_memory()  # once per process: evaluations reuse the memory they free
    path = resolve_model_path(name_or_path)
    header = read_header(path)
    try:
        spec_dict = json.loads(header["spec"])
        spec = ModelSpec(**{**spec_dict, "phases": tuple(spec_dict["phases"])})
    except (TypeError, KeyError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{str(path)!r} has an unreadable architecture header: {exc}") from exc
    network = build_network(spec)
    state = load_file(str(path))
    missing, unexpected = _compare_keys(network, state)
    if missing or unexpected:
        raise ModelFileError(
            f"{str(path)!r} does not match its own architecture header: missing weights "
            f"{missing[:5]}, unexpected weights {unexpected[:5]}")
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelFileError(f"{str(path)!r}: weights do not fit the architecture: {exc}") from exc
    metadata = json.loads(header.get("metadata", "{}"))
    shipped_name = _shipped_name(path)
    if shipped_name is not None and metadata.get("name") != shipped_name:
        # a shipped model is known by its file name (what users type, what track.h5 and
        # reports should record), not by the run name it was trained under
        metadata["trained_as"] = metadata.get("name")
        metadata["name"] = shipped_name
    metadata.update(path=str(path), training=json.loads(header.get("training", "{}")),
                    package_version=header.get("package_version"))
    return PhaseModel(network, spec.phases,
                      confidence_threshold=float(header["confidence_threshold"]),
                      step_size=float(header.get("step_size", 0.02)),
                      max_step=float(header.get("max_step", 0.2)),
                      step_thresholds=json.loads(header.get("step_thresholds", "{}")),
                      log_prior=json.loads(header.get("log_prior", "{}")),
                      step_log_priors={int(k): v for k, v in
                                       json.loads(header.get("step_log_priors", "{}")).items()},
                      averaging_radius=float(header.get("averaging_radius", 0.0)),
                      phase_thresholds={int(k): v for k, v in
                                        json.loads(header.get("phase_thresholds", "{}")).items()},
                      candidate_margins=json.loads(header.get("candidate_margins", "{}")),
                      metadata=metadata, device=device, precision=precision)


_LOADED: dict = {}


def load_model_cached(name_or_path: str | Path) -> PhaseModel:
    """``load_model``, once per process and file; each call gets its own ``PhaseModel``.

    Building the MACE network is the slow part of loading (seconds), and LAMMPS input
    scripts often configure two classifiers from one model (raw and denoised). The models
    returned share the network (so they must use the same device); precision, prior and
    thresholds stay separate. A file changed on disk is loaded anew.
    """
    resolved = resolve_model_path(name_or_path)
    try:
        stat = os.stat(resolved)
        key = (os.path.realpath(resolved), stat.st_mtime_ns, stat.st_size)
    except OSError:
        key = None
    base = _LOADED.get(key) if key else None
    if base is None:
        base = load_model(resolved)
        if key:
            _LOADED[key] = base
    return base.sharing_network()


def _compare_keys(network: LPFMNetwork, state: dict[str, torch.Tensor]):
    expected = set(network.state_dict())
    return sorted(expected - set(state)), sorted(set(state) - expected)


def download_mace_mp(name: str) -> Path:
    """A MACE-MP foundation model file by release name ('small', 'medium', 'medium-mpa-0',
    ...), from mace-torch's cache or downloaded by mace-torch (needs network)."""
    from mace.calculators.foundations_models import download_mace_mp_checkpoint, mace_mp_names

    names = [n for n in mace_mp_names if n]
    if name not in names:
        raise ModelFileError(f"unknown MACE-MP release {name!r}; mace-torch knows {names}")
    try:
        return Path(download_mace_mp_checkpoint(name))
    except Exception as exc:  # urllib, HTTP and file errors alike: say what to do instead
        raise ModelFileError(
            f"could not get the MACE-MP model {name!r} through mace-torch ({exc}); download "
            "it on a machine with network access and give the file as backbone.mace_file") from exc


def spec_for_mace_file(mace_path: str | Path, phases, *, element: int | None = None,
                       decoder: dict | None = None) -> tuple[ModelSpec, torch.nn.Module]:
    """The paper's backbone: a frozen MACE model from a local file as featurizer.

    MACE's own files are pickled modules, so this (and only this) loads with
    ``weights_only=False``: use MACE files from a source you trust, such as the
    MACE-MP release. The LPFM file written afterwards is a plain safetensors file.
    """
    mace = torch.load(str(mace_path), map_location="cpu", weights_only=False)
    if not hasattr(mace, "interactions") or not hasattr(mace, "products"):
        raise ModelFileError(f"{str(mace_path)!r} does not hold a MACE model "
                             f"(got {type(mace).__name__})")
    numbers = [int(z) for z in mace.atomic_numbers]
    if element is None:
        element = numbers[0]
    if element not in numbers:
        raise ModelFileError(f"element Z={element} is not embedded by {str(mace_path)!r}; "
                             f"it knows Z in {numbers}")
    spec = ModelSpec(phases=tuple(phases), backbone_kind="mace_file",
                     backbone=mace_architecture(mace), decoder=decoder or {},
                     element_index=numbers.index(element))
    return spec, mace.float()
