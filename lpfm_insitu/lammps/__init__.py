"""The LAMMPS adapter: gather a rank's atoms, run the core, write answers back.

Kept thin on purpose: everything about the model lives in the host-independent core
(``lpfm_insitu.model.inference``); this package only speaks LAMMPS and MPI.

``configure`` sets up in-situ classification from a LAMMPS input script
and returns the ``fix python/invoke`` callback; ``driver`` runs the same from Python for
LAMMPS builds without the PYTHON package; ``hooks`` lets other tools receive every
invocation's answers.
"""

__all__ = ["configure", "InsituError"]


def __getattr__(name):
    # Lazy, so that importing the adapter (e.g. by `lpfm doctor`) does not import torch.
    if name == "configure":
        from .configuration import configure
        return configure
    if name == "InsituError":
        from .errors import InsituError
        return InsituError
    raise AttributeError(f"module 'lpfm_insitu.lammps' has no attribute {name!r}")
