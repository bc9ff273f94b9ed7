"""Host-free phase tracking: one tracker, its statistics, time series, triggers, snapshots, plots.

``tracker.PhaseTracker`` takes each frame's per-atom answers (from any host, on every MPI
rank) and, with ``options.TrackingOptions``, does the whole pipeline: ``statistics``
reduces the labels to global fractions and profiles, ``timeseries`` appends them to a
crash-safe HDF5 file (attributes encoded by ``hdf5_attrs``), ``triggers`` decides when a
phase event deserves a checkpoint, which the host writes (``snapshot`` writes the
per-atom file in situ), and ``history`` lets a continued run replay what the file holds.
``ranks`` holds the MPI helpers they share; ``summary``, ``plotting`` and ``colors``
report and draw a series. The hosts: ``offline`` (``lpfm track``, dump files) and the
LAMMPS adapter ``lpfm_insitu.lammps.tracking`` (a running simulation).
"""
