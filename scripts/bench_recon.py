#!/usr/bin/env python
"""Benchmark: CG-SENSE on the real smallfov slice, ours (torch) vs sigpy.mri.app.SenseRecon, and the FFT floor.

Data: ``../shared/data/mri/kspace/smallfov-brain8ch/smallfov`` (BART; 8 coils, 320 x 168, 96 of 168 phase
lines sampled), relative to the repository root; ESPIRiT maps (``recon.coils.espirit_maps``, calib 24,
thresh 0.02, crop 0.95, one set) computed once and given to both peers.

Both peers solve the same problem for the same number of CG iterations, no early stop (tol = 0):
``(S^H F^H M F S + lam I) x = S^H F^H M y``. sigpy's ``SenseRecon`` builds ``A = sqrt(w) F S`` and
``y' = sqrt(w) y`` with ``w`` = the 0/1 mask, so ``A^H A`` and ``A^H y'`` equal ours; its CG
(``sigpy.alg.ConjugateGradient``, ``tol = 0``) runs exactly ``max_iter`` updates. Timed per run: building the
operator, ``A^H y`` and the CG iterations (ours: ``SenseOperator`` + ``cg_solve``; sigpy: ``SenseRecon(...)``
+ ``.run()``), plus our public ``recon.baselines.cg_sense`` end to end (numpy in, magnitude out). sigpy's CG
also evaluates ``A^H A x0`` for its zero start, i.e. N + 1 normal-operator calls to our N.
Runs alternate between peers in one process (order rotated every round); the table gives the median over
rounds (ratios use medians; "best" is the fastest round, less sensitive to a busy machine). FFT floor: ``2 x iters`` bare batched ``torch.fft.fft2`` / ``ifft2`` over the C coil images (no shifts,
no maps, no mask), i.e. the FFT work one CG-SENSE solve cannot avoid.

Threads: ``--threads N`` (default 1) sets ``torch.set_num_threads(N)`` and ``OMP/MKL/OPENBLAS_NUM_THREADS=N``
before numpy is imported, so both peers get the same thread budget (numpy's FFT, which sigpy uses on CPU,
is single-threaded whatever N is). On a GPU machine our solver also runs on CUDA (synchronised timings) with
sigpy on CPU as the peer.

    .venv/bin/python scripts/bench_recon.py [--iters 20] [--rounds 15] [--threads 1] [--lam 0.003]
    .venv/bin/python scripts/bench_recon.py --fastmri-size [--slices 3] [--threads 2] [--rounds 3]

``--fastmri-size``: a fastMRI-knee-size volume instead (``recon.demo_data.fastmri_size_volume``: 15 coils,
640 x 368, ``--slices`` slices, R = 4 equispaced with fastMRI's centre 0.08). Two parts: (1) ``mriqa recon``
end to end with every method, each in its own subprocess (calibration, the collapse guard and the
reconstruction, no ESPIRiT cache: ``MRIQA_CACHE=off``), wall time and peak resident memory
(``ru_maxrss`` of that process); (2) per slice in this process, with the same calibrated maps: our CG-SENSE
vs sigpy's ``SenseRecon`` (same problem, ``--iters`` iterations, tol 0) and a MoDL forward pass (shipped
weights, K = 10; also with ``self_ensemble``, the denoiser averaged over 8 flips / transposes); with CUDA
present, our CG-SENSE and the MoDL forward also on the GPU (synchronised; the MoDL
row includes the host/device copies, as ``mriqa recon`` pays them); the calibration's time (default and
``select``) and that of the k-space check of ``mriqa recon --quality`` for CG-SENSE (4 more solves) are printed above
that table. ``--no-cli`` skips part (1). Exits 1 when a command fails or goes over 24 GB.

Prints the agreement of the two solutions and a markdown table of milliseconds per slice (median, best, ratios);
README.md's speed paragraph quotes ``--rounds 25``.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path("..") / "shared" / "data" / "mri" / "kspace" / "smallfov-brain8ch" / "smallfov"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(DEFAULT_DATA),
                   help="BART base name (relative paths are taken from the repository root)")
    p.add_argument("--iters", type=int, default=20, help="CG iterations for both peers (default 20)")
    p.add_argument("--rounds", type=int, default=15, help="timed rounds per peer (default 15)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads for torch/BLAS (default 1)")
    p.add_argument("--lam", type=float, default=0.003, help="Tikhonov weight (default 0.003, cg_sense's)")
    p.add_argument("--fastmri-size", action="store_true",
                   help="benchmark a 15-coil 640 x 368 volume end to end instead (see the module docstring)")
    p.add_argument("--slices", type=int, default=3, help="slices of the --fastmri-size volume (default 3)")
    p.add_argument("--no-cli", action="store_true",
                   help="--fastmri-size: skip part (1), the `mriqa recon` runs (e.g. on a GPU machine, for its rows)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    if args.fastmri_size:
        return fastmri_size(args)

    import numpy as np
    import sigpy
    import sigpy.mri
    import torch

    from recon.baselines import cg_sense
    from recon.cg import cg_solve
    from recon.coils import espirit_maps
    from recon.io.bart import cfl_to_kspace, read_cfl
    from recon.physics import SenseOperator

    torch.set_num_threads(args.threads)
    base = Path(args.data)
    if not base.is_absolute():
        base = REPO / base
    kspace = cfl_to_kspace(read_cfl(base), base)  # complex64 [1, C, H, W]
    _, ncoils, h, w = kspace.shape
    cols = np.any(kspace != 0, axis=(0, 1, 2))
    mask = cols.astype(np.float32).reshape(1, 1, 1, w)
    t0 = time.perf_counter()
    maps = espirit_maps(kspace[0], calib_width=24, thresh=0.02, crop=0.95, num_maps=1)  # [C, H, W]
    maps = np.ascontiguousarray(maps)  # sigpy returns them coil-last in memory; give both peers C order
    t_maps = time.perf_counter() - t0
    n, lam = args.iters, args.lam

    y_np = kspace[0]
    w_np = mask[0, 0, 0]  # [W]
    y_t = torch.from_numpy(kspace)
    maps_t = torch.from_numpy(maps[None])
    mask_t = torch.from_numpy(mask)

    def ours(y, m, k, sync=lambda: None):
        with torch.no_grad():
            op = SenseOperator(m, k)
            x = cg_solve(op.normal, op.adjoint(y), lam, max_iter=n, tol=0.0)
        sync()
        return x

    def theirs():
        return sigpy.mri.app.SenseRecon(y_np, maps, lamda=lam, weights=w_np, max_iter=n, show_pbar=False).run()

    def ours_public():
        return cg_sense(kspace, mask, maps[None], lam=lam, max_iter=n, tol=0.0)

    def fft_floor(buf, sync=lambda: None):
        with torch.no_grad():
            for _ in range(n):
                k = torch.fft.fft2(buf, norm="ortho")
                torch.fft.ifft2(k, norm="ortho")
        sync()

    buf_cpu = torch.randn(1, ncoils, h, w, dtype=torch.complex64)
    peers = {
        "ours (torch CG-SENSE)": lambda: ours(y_t, maps_t, mask_t),
        "ours, recon.baselines.cg_sense": ours_public,
        "sigpy SenseRecon": theirs,
        "bare FFT floor": lambda: fft_floor(buf_cpu),
    }
    cuda = torch.cuda.is_available()
    if cuda:
        dev = torch.device("cuda")
        y_g, maps_g, mask_g = y_t.to(dev), maps_t.to(dev), mask_t.to(dev)
        buf_g = buf_cpu.to(dev)
        sync = torch.cuda.synchronize
        peers["ours on CUDA"] = lambda: ours(y_g, maps_g, mask_g, sync)
        peers["bare FFT floor on CUDA"] = lambda: fft_floor(buf_g, sync)

    # correctness: same problem, same iterations
    x_ours = ours(y_t, maps_t, mask_t)[0].numpy()
    x_sp = np.asarray(theirs())
    rel = float(np.linalg.norm(x_ours - x_sp) / np.linalg.norm(x_sp))
    rel_cuda = None
    if cuda:
        x_g = ours(y_g, maps_g, mask_g, sync)[0].cpu().numpy()
        rel_cuda = float(np.linalg.norm(x_g - x_ours) / np.linalg.norm(x_ours))

    names = list(peers)
    for name in names:  # warm-up (plans, allocator, CUDA context)
        peers[name]()
    times = {name: [] for name in names}
    for r in range(args.rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            t0 = time.perf_counter()
            peers[name]()
            times[name].append(time.perf_counter() - t0)
    med = {name: float(np.median(v)) * 1e3 for name, v in times.items()}
    best = {name: float(np.min(v)) * 1e3 for name, v in times.items()}

    print(f"CG-SENSE benchmark: smallfov slice, C = {ncoils} coils, {h} x {w}, {int(cols.sum())}/{w} phase lines, "
          f"ESPIRiT maps ({t_maps:.1f} s, once), lam = {lam}, {n} CG iterations, tol = 0 (no early stop)")
    print(f"CPU threads: torch.set_num_threads({args.threads}), OMP/MKL/OPENBLAS_NUM_THREADS={args.threads}; "
          f"torch {torch.__version__}, sigpy {sigpy.__version__}, numpy {np.__version__}; "
          f"median of {args.rounds} alternating rounds")
    print(f"relative difference ||x_ours - x_sigpy|| / ||x_sigpy|| = {rel:.2e}"
          + (f"; CUDA vs CPU (ours) = {rel_cuda:.2e}" if rel_cuda is not None else "; no CUDA on this machine"))
    print()
    print("| device | method | median ms / slice | best ms | sigpy CPU / this | this / FFT floor (same device) |")
    print("|---|---|---:|---:|---:|---:|")
    floor = {"CPU": med["bare FFT floor"]}
    if cuda:
        floor["CUDA"] = med["bare FFT floor on CUDA"]
    for name in names:
        device = "CUDA" if "CUDA" in name else "CPU"
        label = name.replace(" on CUDA", "")
        speed = med["sigpy SenseRecon"] / med[name]
        print(f"| {device} | {label} | {med[name]:.2f} | {best[name]:.2f} | {speed:.2f}x | "
              f"{med[name] / floor[device]:.2f}x |")
    print()
    ok_fast = med["ours (torch CG-SENSE)"] <= med["sigpy SenseRecon"]
    ok_floor = med["ours (torch CG-SENSE)"] <= 3 * med["bare FFT floor"]
    print(f"acceptance (CPU): ours at least as fast as sigpy: {'yes' if ok_fast else 'NO'}; "
          f"within 3x of the FFT floor: {'yes' if ok_floor else 'NO'}")
    return 0 if ok_fast and ok_floor else 1


RUNNER = """
import json, resource, sys, time
import torch
torch.set_num_threads(int(sys.argv[3]))
from mriqa.cli import main
start = time.perf_counter()
code = main(json.loads(sys.argv[1]))
with open(sys.argv[2], "w") as fh:
    json.dump({"code": code, "seconds": time.perf_counter() - start,
               "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}, fh)
"""
LIMIT_MB = 24 * 1024


def fastmri_size(args) -> int:
    """The ``--fastmri-size`` benchmark (module docstring): prints two markdown tables."""
    import json
    import subprocess
    import tempfile

    import numpy as np
    import sigpy.mri
    import torch

    from recon.calibration import calibrate_maps
    from recon.cg import cg_solve
    from recon.io.fastmri_h5 import write_fastmri_h5
    from recon.masks import make_mask
    from recon.modl import load_modl, modl_reconstruct
    from recon.physics import SenseOperator
    from recon.demo_data import fastmri_size_volume

    torch.set_num_threads(args.threads)
    kspace, rss = fastmri_size_volume(slices=args.slices)
    _, coils, h, w = kspace.shape
    print(f"fastMRI-size benchmark: {args.slices} slices x {coils} coils x {h} x {w}, R = 4 equispaced (centre "
          f"0.08), {args.threads} thread(s); torch {torch.__version__}, sigpy {sigpy.__version__}")
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        raw = write_fastmri_h5(Path(tmp) / "knee-size.h5", kspace, reconstruction_rss=rss)
        if args.no_cli:
            print("\n(--no-cli: the `mriqa recon` runs were skipped)")
        else:
            env = dict(os.environ, MRIQA_CACHE="off")
            print()
            print("| `mriqa recon --method` | exit | wall s (all slices) | s / slice | peak MB |")
            print("|---|---:|---:|---:|---:|")
            for method in ("zf", "sense", "l1", "modl"):
                report = Path(tmp) / f"{method}.json"
                argv = ["recon", str(raw), "--method", method, "--accel", "4", "--mask", "equispaced",
                        "--center-fraction", "0.08", "--out", str(Path(tmp) / f"{method}.h5")]
                proc = subprocess.run([sys.executable, "-c", RUNNER, json.dumps(argv), str(report), str(args.threads)],
                                      env=env, cwd=REPO, capture_output=True, text=True)
                got = json.loads(report.read_text()) if report.is_file() else {"code": proc.returncode,
                                                                                "seconds": float("nan"),
                                                                                "peak_mb": float("nan")}
                failed |= got["code"] != 0 or not got["peak_mb"] <= LIMIT_MB
                print(f"| {method} | {got['code']} | {got['seconds']:.1f} | {got['seconds'] / args.slices:.1f} | "
                      f"{got['peak_mb']:.0f} |")
                if got["code"] != 0:
                    print(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "(no output)")
    mask = make_mask("equispaced", (h, w), 4, center_fraction=0.08, seed=0)
    y = kspace[:1] * mask.mask.numpy()
    t0 = time.perf_counter()
    maps, info = calibrate_maps(y, mask, cache_dir=False)
    t_maps = time.perf_counter() - t0
    t0 = time.perf_counter()
    _, chosen = calibrate_maps(y, mask, cache_dir=False, method="select")
    t_select = time.perf_counter() - t0
    from mriqa.recon_quality.kspace import FOLDS, kspace_check

    t0 = time.perf_counter()
    kspace_check("sense", y, mask, maps)
    t_check = time.perf_counter() - t0
    y_t, maps_t = torch.from_numpy(y), torch.from_numpy(maps)
    mask_t = mask.mask.reshape(1, 1, 1, w)
    w_np = mask.mask.numpy().reshape(w)
    n, lam = args.iters, args.lam

    def ours(y_in=y_t, maps_in=maps_t, mask_in=mask_t, sync=lambda: None):
        with torch.no_grad():
            op = SenseOperator(maps_in, mask_in)
            x = cg_solve(op.normal, op.adjoint(y_in), lam, max_iter=n, tol=0.0)
        sync()
        return x

    def theirs():
        return sigpy.mri.app.SenseRecon(y[0], maps[0], lamda=lam, weights=w_np, max_iter=n, show_pbar=False).run()

    model = load_modl("modl")
    peers = {"ours (torch CG-SENSE)": ours, "sigpy SenseRecon": theirs,
             "MoDL forward (K = 10)": lambda: modl_reconstruct(model, y, mask, sens_maps=maps, device="cpu"),
             "MoDL forward, self-ensemble (x8 denoiser)": lambda: modl_reconstruct(
                 model, y, mask, sens_maps=maps, device="cpu", self_ensemble=True)}
    if torch.cuda.is_available():
        dev = torch.device("cuda")
        y_g, maps_g, mask_g = y_t.to(dev), maps_t.to(dev), mask_t.to(dev)
        peers["ours (torch CG-SENSE) on CUDA"] = lambda: ours(y_g, maps_g, mask_g, torch.cuda.synchronize)
        peers["MoDL forward (K = 10) on CUDA"] = lambda: modl_reconstruct(model, y, mask, sens_maps=maps,
                                                                          device="cuda")
    for fn in peers.values():  # warm-up
        fn()
    times = {name: [] for name in peers}
    names = list(peers)
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            t0 = time.perf_counter()
            peers[name]()
            times[name].append(time.perf_counter() - t0)
    med = {name: float(np.median(v)) for name, v in times.items()}
    print()
    gpu = f"; GPU: {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "; no CUDA on this machine"
    print(f"per slice, same maps (calibrate_maps: {info.short()}, {t_maps:.1f} s; with --calibration select "
          f"{t_select:.1f} s = {t_select / t_maps:.1f}x, chose {chosen.method}), {n} CG iterations, lam = {lam}, "
          f"median of {args.rounds} alternating rounds{gpu}; the k-space check of `mriqa recon --quality` "
          f"(mriqa.recon_quality.kspace, {FOLDS} folds) of CG-SENSE {t_check:.1f} s")
    print()
    print("| per slice | median s | sigpy / this |")
    print("|---|---:|---:|")
    for name in names:
        print(f"| {name} | {med[name]:.3f} | {med['sigpy SenseRecon'] / med[name]:.2f}x |")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
