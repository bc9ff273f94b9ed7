#!/usr/bin/env python
"""PTM phase fractions per z-bin for the frames of a LAMMPS dump (OVITO 3.x).

Usage:
    python analyze_ptm.py dump.shock.lammpstrj [--bin 20] [--every 1]
                          [--rmsd-cutoff 0.1] [--cp-threshold 0.3] [--omega]

z is the shock direction; the reflecting wall sits at the bottom of the box
and the shocked/transformed material grows upward from it.

Per frame:  "# step S  N=..  Other= FCC= HCP= BCC=  HCP+FCC=  front_z="
    global PTM fractions; HCP+FCC is the transformed (close-packed) fraction
    for the Fe BCC -> HCP/FCC demo; front_z is the top of the highest z-bin
    whose HCP+FCC fraction is >= --cp-threshold ("none" before it starts).
Per z-bin:  "z lo hi  n=  Other= FCC= HCP= BCC="   (ICO/SC are enabled and
    are in neither column; they are ~0 here).

--rmsd-cutoff: PTM RMSD cutoff (OVITO default 0.1; 0 = assign every atom to
    its best-matching template).  Hot (~1000 K), strongly compressed
    crystal puts many atoms just above 0.1, which then count as "Other".

--omega (for the Ti alpha -> omega attempts): also print "om", the
    fraction of atoms whose neighbour shell closes after 11 or 14
    neighbours (largest jump d(n+1)/d(n) in sorted neighbour distances,
    n = 8..15).  Ideal omega (P6/mmm, sites 1a: 14 NN, 2d: 11 NN) gives
    f11 = 0.67, f14 = 0.33; HCP/FCC give 12; BCC gives 14.  PTM has no omega
    template: an ideal omega lattice (0-0.12 A noise) is 100 % "Other".
"""
import argparse
import numpy as np
from ovito.io import import_file
from ovito.data import NearestNeighborFinder
from ovito.modifiers import PolyhedralTemplateMatchingModifier as PTM


def gap_cn(data, nmax=16):
    """Neighbour count before the largest relative gap (n in 8..15)."""
    nf = NearestNeighborFinder(nmax, data)
    _, vec = nf.find_all()                      # (N, nmax, 3) neighbour vectors
    d = np.sort(np.linalg.norm(vec, axis=2), axis=1)
    ratio = d[:, 8:] / d[:, 7:-1]               # d[n]/d[n-1], 0-based n = 8..15
    return 8 + np.argmax(ratio, axis=1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dump")
    ap.add_argument("--bin", type=float, default=20.0, help="z-bin width (Angstrom)")
    ap.add_argument("--every", type=int, default=1, help="analyse every k-th frame")
    ap.add_argument("--rmsd-cutoff", type=float, default=0.1, help="PTM RMSD cutoff (0 = none)")
    ap.add_argument("--cp-threshold", type=float, default=0.3,
                    help="HCP+FCC fraction for a bin to count as transformed (front_z)")
    ap.add_argument("--omega", action="store_true", help="also print the 11/14-neighbour omega signature")
    args = ap.parse_args()

    pipe = import_file(args.dump)
    ptm = PTM(rmsd_cutoff=args.rmsd_cutoff)
    ptm.structures[PTM.Type.ICO].enabled = True
    ptm.structures[PTM.Type.SC].enabled = True
    pipe.modifiers.append(ptm)

    for f in range(0, pipe.source.num_frames, args.every):
        d = pipe.compute(f)
        st = np.asarray(d.particles["Structure Type"])
        z = np.asarray(d.particles.positions)[:, 2]
        step = d.attributes.get("Timestep", f)
        g = gap_cn(d) if args.omega else None
        cp = (st == PTM.Type.FCC) | (st == PTM.Type.HCP)

        edges = np.arange(np.floor(z.min()), z.max() + args.bin, args.bin)
        b = np.digitize(z, edges) - 1
        bins = [k for k in range(len(edges) - 1) if (b == k).sum() >= 10]
        cp_bins = [k for k in bins if cp[b == k].mean() >= args.cp_threshold]
        front = f"{edges[max(cp_bins) + 1]:.1f}" if cp_bins else "none"

        def fr(m):
            return (f"Other={np.mean(st[m] == PTM.Type.OTHER):.2f} FCC={np.mean(st[m] == PTM.Type.FCC):.2f} "
                    f"HCP={np.mean(st[m] == PTM.Type.HCP):.2f} BCC={np.mean(st[m] == PTM.Type.BCC):.2f}")

        def om(m):
            if g is None:
                return ""
            f11, f14 = np.mean(g[m] == 11), np.mean(g[m] == 14)
            return f"  om={f11 + f14:.2f} (f11={f11:.2f} f14={f14:.2f})"

        allm = np.ones(len(st), bool)
        print(f"# step {step}  N={len(st)}  {fr(allm)}  HCP+FCC={cp.mean():.3f}  front_z={front}{om(allm)}")
        for k in bins:
            m = b == k
            print(f"  z {edges[k]:7.1f} {edges[k + 1]:7.1f}  n={m.sum():5d}  {fr(m)}{om(m)}")


if __name__ == "__main__":
    main()
