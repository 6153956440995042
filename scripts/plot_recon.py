"""Plot reconstruction h5 files (``mriqa recon`` outputs) side by side as one PNG; prints the PNG's path.

Each panel is the middle slice (or ``--slice N``) with its effective R. ``docs/smallfov-recon.png`` is made by
the commands in README.md ("The real brain k-space")::

    python scripts/plot_recon.py OUT.png A.h5 [B.h5 ...] [--titles "a,b"] [--slice N]
"""
from __future__ import annotations

import argparse
from pathlib import Path


def main() -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from recon.files import atomic_path
    from recon.io.fastmri_h5 import read_reconstruction

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("inputs", nargs="+")
    parser.add_argument("--titles", default=None)
    parser.add_argument("--slice", type=int, default=None)
    args = parser.parse_args()
    titles = args.titles.split(",") if args.titles else [Path(p).stem for p in args.inputs]
    fig, axes = plt.subplots(1, len(args.inputs), figsize=(3 * len(args.inputs), 4.5), squeeze=False)
    for ax, path, title in zip(axes[0], args.inputs, titles):
        rec = read_reconstruction(path)
        index = rec.image.shape[0] // 2 if args.slice is None else args.slice
        image = rec.image[index]
        ax.imshow(image, cmap="gray", vmin=0, vmax=float(np.percentile(image, 99.5)))
        r = rec.attrs.get("acceleration_effective")
        ax.set_title(f"{title}" + (f"\nR_eff = {float(r):.2f}" if r is not None else ""), fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    with atomic_path(args.out) as tmp:
        fig.savefig(tmp, dpi=90)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
