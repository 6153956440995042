"""Peak memory and wall time of ``mriqa score``, ``estimate-r`` and ``restore`` on a big synthetic photo.

Each command runs in its own subprocess (``python -m mriqa ...`` through a small runner), which reports its
peak resident memory (``resource.getrusage(RUSAGE_SELF).ru_maxrss``, the kernel's high-water mark of the
whole process: Python, torch, the model, the image and every tile) and its wall time. The photo is a 4000 x
3000 RGB JPEG (quality 30: blocky, something to restore) made from smooth gradients, edges and texture; the
gray version (for the full ``estimate-r`` path: a colour photo is out of distribution at once) is a PNG.

    python scripts/bench_big_inputs.py [--size 4000x3000] [--threads 1] [--limit-mb 2048]

Prints one row per command and exits 1 when one failed or went over ``--limit-mb``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

RUNNER = """
import json, resource, sys, time
argv, report = json.loads(sys.argv[1]), sys.argv[2]
import torch
torch.set_num_threads(int(sys.argv[3]))
from mriqa.cli import main
start = time.perf_counter()
code = main(argv)
seconds = time.perf_counter() - start
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
with open(report, "w") as fh:
    json.dump({"code": code, "seconds": seconds, "peak_mb": peak_mb}, fh)
"""


def synthetic_photo(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A photo-like uint8 ``[height, width, 3]``: colour gradients, a few sharp-edged shapes and fine texture."""
    rng = np.random.default_rng(seed)
    yy = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    xx = np.linspace(0, 1, width, dtype=np.float32)[None, :]
    img = np.empty((height, width, 3), np.float32)
    img[..., 0] = 0.5 + 0.4 * np.sin(3 * xx + 2 * yy)
    img[..., 1] = 0.5 + 0.4 * np.cos(4 * yy - xx)
    img[..., 2] = 0.4 + 0.3 * xx * yy
    for _ in range(12):  # discs with sharp edges
        cy, cx, r = rng.random() * height, rng.random() * width, (0.03 + 0.1 * rng.random()) * min(width, height)
        rows = slice(max(0, int(cy - r)), min(height, int(cy + r) + 1))
        cols = slice(max(0, int(cx - r)), min(width, int(cx + r) + 1))
        ys, xs = np.ogrid[rows, cols]
        img[rows, cols][((ys - cy) ** 2 + (xs - cx) ** 2) <= r * r] = rng.random(3).astype(np.float32)
    for row in range(0, height, 512):  # fine texture, in blocks of rows
        block = img[row: row + 512]
        block += 0.04 * rng.standard_normal(block.shape, dtype=np.float32)
    np.clip(img, 0, 1, out=img)
    img *= 255.0
    return img.round().astype(np.uint8)


def run(argv: list[str], threads: int, env: dict) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
        report = fh.name
    try:
        proc = subprocess.run([sys.executable, "-c", RUNNER, json.dumps(argv), report, str(threads)], env=env,
                              capture_output=True, text=True)
        result = json.loads(Path(report).read_text()) if Path(report).stat().st_size else {}
    finally:
        os.unlink(report)
    result.setdefault("code", proc.returncode)
    result["stderr"] = proc.stderr.strip().splitlines()[-1:] if proc.stderr.strip() else []
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="4000x3000", help="photo width x height (default 4000x3000)")
    parser.add_argument("--threads", type=int, default=1, help="torch / BLAS threads per command (default 1)")
    parser.add_argument("--limit-mb", type=float, default=2048.0, help="peak memory allowed (default 2048 MB)")
    parser.add_argument("--only", action="append", default=None, help="run only these rows (by name)")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), OPENBLAS_NUM_THREADS=str(args.threads),
               MKL_NUM_THREADS=str(args.threads))
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH", "")])
    from PIL import Image

    with tempfile.TemporaryDirectory(prefix="mriqa-bench-") as tmp:
        tmp = Path(tmp)
        photo = synthetic_photo(width, height)
        Image.fromarray(photo).save(tmp / "photo.jpg", quality=30)
        Image.fromarray(photo).convert("L").save(tmp / "gray.png")
        del photo
        rows = {
            "score (rgb photo)": ["score", str(tmp / "photo.jpg"), "--json", str(tmp / "score.json")],
            "estimate-r (colour photo)": ["estimate-r", str(tmp / "photo.jpg"), "--json", str(tmp / "r.json")],
            "estimate-r (gray photo)": ["estimate-r", str(tmp / "gray.png"), "--json", str(tmp / "r2.json")],
            "restore (rgb photo)": ["restore", str(tmp / "photo.jpg"), "--out", str(tmp / "restored"),
                                    "--json", str(tmp / "restore.json")],
        }
        print(f"{width} x {height} photo ({width * height / 1e6:.1f} Mpx), {args.threads} thread(s), "
              f"limit {args.limit_mb:.0f} MB")
        print(f"{'command':28s} {'exit':>4s} {'wall s':>8s} {'peak MB':>8s}")
        bad = False
        for name, command in rows.items():
            if args.only and not any(o in name for o in args.only):
                continue
            r = run(command, args.threads, env)
            over = r.get("peak_mb", float("inf")) > args.limit_mb
            bad |= r["code"] not in (0,) or over
            print(f"{name:28s} {r['code']:>4} {r.get('seconds', float('nan')):8.1f} "
                  f"{r.get('peak_mb', float('nan')):8.0f}{'  OVER THE LIMIT' if over else ''}"
                  + (f"  ({r['stderr'][0]})" if r["code"] else ""))
            sys.stdout.flush()
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
