"""lpfm_insitu: in-situ crystal-phase classification with a log-probability foundation model.

``load_model`` gives a ``PhaseModel``; ``PhaseModel.classify_atoms`` classifies an
``ase.Atoms``; ``lpfm_insitu.lammps`` runs the same model inside parallel LAMMPS.
"""

__version__ = "0.1.0"

try:  # torch is a dependency, but `lpfm doctor` must still run (and say so) without it
    from . import _torch_compat  # noqa: F401  (lets e3nn import under torch >= 2.6)
except ImportError:  # pragma: no cover - reported by `lpfm doctor`
    pass

__all__ = ["__version__", "load_model", "PhaseModel", "PhaseResult"]


def __getattr__(name):
    # Lazy, so that `lpfm --version` and `lpfm doctor` do not pay for importing MACE.
    if name == "load_model":
        from .modelfile import load_model
        return load_model
    if name in ("PhaseModel", "PhaseResult"):
        from . import inference
        return getattr(inference, name)
    raise AttributeError(f"module 'lpfm_insitu' has no attribute {name!r}")
