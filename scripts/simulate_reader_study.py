"""Simulated readers against a known truth: do the reader-study scores and the active pairing work?

::

    python scripts/simulate_reader_study.py [--seed 0] [--images 100] [--per-image 20] [--sd 3.0] [--nu 0.3]
                                            [--readers 4] [--bootstrap 200] [--seeds 5] [--reps 4]
                                            [--curve-max 2000] [--curve-step 50] [--spread 1,1.5,2,3]

Model and choices: :mod:`mriqa.reader_study.simulate` (latent quality N(0, sd^2) on the Bradley-Terry
scale, Davidson ties, every reader the same model). Prints, for one simulated study at ``--seed``: the
Spearman correlation of the PIPAL Elo and of the Bradley-Terry scores with the truth (target >= 0.95), the
coverage of the truth by the BT 95 % bootstrap intervals (target >= 0.90); the same over ``--seeds``
further studies (min / mean); and active against random pairing: the mean Spearman over ``--reps``
studies after every ``--curve-step`` judgments, and the judgments each needs to reach (and keep) a
Spearman of 0.95 / 0.96 / 0.97. Last, how much the accuracy depends on the spread of the qualities: the same
study at each sd of ``--spread`` (the harder the images are to tell apart, the lower the Spearman a fixed
number of judgments can reach; the reader agreement column says how hard). All computation is in
:mod:`mriqa.reader_study`.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from mriqa.reader_study.simulate import accuracy_curves, acceptance, judgments_needed


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--images", type=int, default=100)
    p.add_argument("--per-image", type=int, default=20, help="judgments per image (each judgment counts for two)")
    p.add_argument("--sd", type=float, default=3.0, help="sd of the latent quality (natural-log BT scale)")
    p.add_argument("--nu", type=float, default=0.3, help="Davidson tie parameter of the simulated readers")
    p.add_argument("--readers", type=int, default=4)
    p.add_argument("--bootstrap", type=int, default=200)
    p.add_argument("--seeds", type=int, default=5, help="further studies for the min / mean lines (0 = none)")
    p.add_argument("--reps", type=int, default=4, help="studies averaged for active vs random (0 = skip)")
    p.add_argument("--curve-max", type=int, default=2000)
    p.add_argument("--curve-step", type=int, default=50)
    p.add_argument("--spread", default="1,1.5,2,3", help="sds for the sensitivity lines ('' = none)")
    args = p.parse_args(argv)
    t0 = time.time()

    kw = dict(n_images=args.images, per_image=args.per_image, sd=args.sd, nu=args.nu, readers=args.readers,
              n_boot=args.bootstrap)
    r = acceptance(args.seed, **kw)
    print(f"simulated reader study: {args.images} images, latent quality ~ N(0, {args.sd:g}^2) on the BT "
          f"(natural-log) scale, Davidson ties nu = {args.nu:g}, {args.readers} readers, {args.per_image} "
          f"judgments per image ({r['judgments']} judgments), active pairing, seed {args.seed}")
    print(f"ties: {100 * r['ties']:.1f} % of judgments; fitted nu = {r['nu']:.3f}")
    print(f"Spearman(Elo, truth) = {r['spearman_elo']:.3f}  (PIPAL Elo: start 1400, M = 400, K = 16, 20 shuffled "
          f"passes, mean of the last 10 steps; target >= 0.95: {_verdict(r['spearman_elo'] >= 0.95)})")
    print(f"Spearman(BT, truth)  = {r['spearman_bt']:.3f}  (Bradley-Terry-Davidson, Firth-penalised ML; "
          f"target >= 0.95: {_verdict(r['spearman_bt'] >= 0.95)})")
    print(f"BT 95 % interval coverage of the truth (both centred to mean 0; basic bootstrap, {args.bootstrap} "
          f"resamples of the judgments) = {r['coverage']:.2f}  (mean width {r['width']:.2f}; target >= 0.90: "
          f"{_verdict(r['coverage'] >= 0.90)})")
    agree = ", ".join(f"{k} {v:.3f}" for k, v in sorted(r["agreement"].items()))
    print(f"agreement of each reader with the other readers' consensus: {agree}")

    if args.seeds:
        seeds = list(range(args.seed + 1, args.seed + 1 + args.seeds))
        rows = [acceptance(s, **kw) for s in seeds]
        for key, name in (("spearman_elo", "Spearman(Elo, truth)"), ("spearman_bt", "Spearman(BT, truth) "),
                          ("coverage", "BT coverage         ")):
            v = np.array([x[key] for x in rows])
            print(f"seeds {seeds[0]}..{seeds[-1]}: {name} min {v.min():.3f}  mean {v.mean():.3f}  "
                  f"({' '.join(f'{x:.3f}' for x in v)})")

    if args.reps:
        reps = list(range(args.seed, args.seed + args.reps))
        c = accuracy_curves(reps, n_images=args.images, step=args.curve_step, max_judgments=args.curve_max,
                            sd=args.sd, nu=args.nu, readers=args.readers)
        act, rnd = np.mean(c["active"], axis=0), np.mean(c["random"], axis=0)
        print(f"\nactive vs random pairing: mean Spearman(BT, truth) over {len(reps)} simulated studies "
              f"(seeds {reps[0]}..{reps[-1]}, same truths for both), after J judgments")
        print(f"{'J':>6} {'active':>8} {'random':>8}")
        for j, x, y in zip(c["judgments"], act, rnd):
            if j % (4 * args.curve_step) == 0 or j == c["judgments"][-1]:
                print(f"{j:>6} {x:>8.4f} {y:>8.4f}")
        for target in (0.95, 0.96, 0.97):
            na = judgments_needed(c["judgments"], act, target)
            nr = judgments_needed(c["judgments"], rnd, target)
            if na is not None and nr is not None:
                extra = f"; active needs {100 * (1 - na / nr):.0f} % fewer" if na < nr else ""
                print(f"judgments to reach Spearman {target:.2f}: active {na}, random {nr}{extra} "
                      f"(active fewer: {'yes' if na < nr else 'no'})")
            else:
                print(f"judgments to reach Spearman {target:.2f}: active {na}, random {nr} "
                      f"(None = not within {args.curve_max})")
    spreads = [float(x) for x in args.spread.split(",") if x.strip()]
    if spreads:
        print(f"\nsensitivity to the spread of the latent quality (seed {args.seed}, {r['judgments']} judgments, "
              "active pairing):")
        print(f"{'sd':>5} {'Spearman Elo':>13} {'Spearman BT':>12} {'BT coverage':>12} {'reader agreement':>17}")
        for sd in spreads:
            x = acceptance(args.seed, **{**kw, "sd": sd})
            print(f"{sd:>5g} {x['spearman_elo']:>13.3f} {x['spearman_bt']:>12.3f} {x['coverage']:>12.2f} "
                  f"{np.mean(list(x['agreement'].values())):>17.3f}")
    print(f"\n({time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
