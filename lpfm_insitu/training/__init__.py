"""Learning the model: prototypes, synthetic data, the trainer and threshold calibration.

``prototypes`` names the phases (AFLOW labels and common names), ``synthetic`` draws
strained, noised supercells of them, ``trainer`` fits a network to those, and
``calibration`` chooses the unknown thresholds and priors of a trained model.
Nothing here imports the evaluation tools or LAMMPS.
"""

_LAZY = {"Trainer": "trainer", "TrainingConfig": "trainer"}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
