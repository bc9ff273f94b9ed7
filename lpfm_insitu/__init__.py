"""lpfm_insitu: in-situ crystal-phase classification with a log-probability foundation model.

``load_model`` gives a ``PhaseModel``; ``PhaseModel.classify_atoms`` classifies an
``ase.Atoms``; ``lpfm_insitu.lammps`` runs the same model inside parallel LAMMPS.

Importing the package imports neither torch nor MACE (seconds): ``lpfm --version``,
``lpfm doctor`` and every LAMMPS rank's ``python`` command start fast, and the model
modules are imported on first use of the names below.
"""

import sys

__version__ = "0.1.0"

__all__ = ["__version__", "load_model", "PhaseModel", "PhaseResult"]

_LAZY = {"load_model": ".model.files", "PhaseModel": ".model.inference",
         "PhaseResult": ".model.inference"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'lpfm_insitu' has no attribute {name!r}")


class _E3nnNeedsTorchCompat:
    """Runs ``model.torch_compat`` just before e3nn is first imported, by anyone.

    e3nn loads a constants file at import that torch >= 2.6 refuses without the allow-list
    ``model.torch_compat`` sets; importing it here eagerly would import torch with the package.
    """

    @staticmethod
    def find_spec(name, path=None, target=None):
        if name == "e3nn":
            sys.meta_path.remove(_E3nnNeedsTorchCompat)
            try:
                from .model import torch_compat as _torch_compat  # noqa: F401
            except ImportError:  # pragma: no cover - no torch: e3nn's own import says so
                pass
        return None  # the ordinary finders import e3nn itself


if "e3nn" not in sys.modules and _E3nnNeedsTorchCompat not in sys.meta_path:
    sys.meta_path.insert(0, _E3nnNeedsTorchCompat)
