"""Host-free phase tracking: statistics, time series, triggers, snapshots and plots.

``statistics`` reduces per-rank labels to global fractions and profiles, ``timeseries``
writes them to a crash-safe HDF5 file, ``triggers`` decides when a phase event deserves a
checkpoint and ``snapshot`` writes the per-atom file it asks for; ``plotting`` and
``colors`` draw a series. ``offline`` runs the same pipeline over a dump file. The LAMMPS
adapter (``lpfm_insitu.lammps.tracking``) feeds the same pipeline from a running simulation.
"""
