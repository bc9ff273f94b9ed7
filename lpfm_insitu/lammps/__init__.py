"""The LAMMPS adapter: gather a rank's atoms, run the core, write answers back.

Kept thin on purpose: everything about the model lives in the host-independent core
(``lpfm_insitu.inference``); this package only speaks LAMMPS and MPI.
"""
