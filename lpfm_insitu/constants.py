"""Constants shared by the core, the LAMMPS adapter and the tools."""

#: Label written for atoms whose confidence is below the model's calibrated threshold.
UNKNOWN_PHASE = -1

