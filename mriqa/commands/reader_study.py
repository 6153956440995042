"""``mriqa reader-study``: a pairwise reader study (the library: :mod:`mriqa.reader_study`).

::

    mriqa reader-study new OUT INPUT... [--reference REF.h5] [--slices 3,5-7] [--group-regex RE]
                                        [--percentiles LO HI] [--name NAME] [--target N]
    mriqa reader-study serve STUDY [--host 127.0.0.1] [--port 8765] [--seed S]
    mriqa reader-study scores STUDY [--json OUT] [--csv OUT] [--csv-score elo|bt] [--bootstrap N]
                                    [--level L] [--seed S] [--passes P] [--last N]

``new`` builds the study folder ``OUT`` (:mod:`mriqa.reader_study.study`: 8-bit PNGs with a fixed display
window per content group, ``manifest.json``, an SQLite database) from ``mriqa recon`` h5 files (one image per
file and slice; groups = slices) or from images (PNG / JPEG / TIFF / BMP, DICOM, NIfTI; ``--group-regex``
groups single images by name). ``serve`` runs the web page (Flask; 127.0.0.1 by default: reader names are
not authentication). ``scores`` prints, per image, the PIPAL Elo and the Bradley-Terry score (natural-log
scale, mean 0 per content group) with its bootstrap interval at ``--level``; per method label the mean
over groups; per reader the agreement with the other readers' consensus. ``--json OUT`` writes all of it
(:func:`mriqa.reader_study.scores.study_scores`); ``--csv OUT`` the generic CSV that
``mriqa iqa-bench --dataset csv:OUT`` reads (score = Elo, or BT on Elo points with ``--csv-score bt``).
Bad input: one line ``mriqa: error: FILE: problem``, exit 2, nothing written.
"""
from __future__ import annotations

import argparse

from mriqa.commands.shared import seed_value


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "reader-study",
        help="pairwise reader study: build it, serve the web page, compute Elo / Bradley-Terry scores",
        description="A pairwise reader study (PIPAL's protocol): two images side by side, readers choose the "
        "better one (or a tie); scores by Elo and Bradley-Terry with bootstrap intervals.",
    )
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True

    n = sub.add_parser("new", help="build a study folder from reconstruction h5 files or images",
                       description="Build a study folder from mriqa recon h5 files (one image per file and "
                       "slice, compared within a slice) or from images.")
    n.add_argument("out", metavar="OUT", help="the study folder to create (must not exist)")
    n.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="mriqa recon h5 files (same slices and size), or PNG/JPEG/TIFF/BMP, DICOM, NIfTI")
    n.add_argument("--reference", default=None, metavar="REF",
                   help="h5 file of the fully sampled image (stored per group; becomes the CSV's reference)")
    n.add_argument("--slices", default=None, metavar="LIST", help="h5 slices to use, e.g. 3,5-7 (default: all)")
    n.add_argument("--group-regex", default=None, metavar="RE",
                   help="group single images by this regex on the file name (its first capture group)")
    n.add_argument("--percentiles", nargs=2, type=float, default=(0.5, 99.5), metavar=("LO", "HI"),
                   help="display window per group: these percentiles of its pixels (default 0.5 99.5)")
    n.add_argument("--name", default=None, help="study name shown on the page (default: the folder name)")
    n.add_argument("--target", type=int, default=None, metavar="N",
                   help="judgments per reader the progress bar counts to (default: 5 per image)")
    n.set_defaults(func=run_new)

    s = sub.add_parser("serve", help="serve the reader page (Flask, 127.0.0.1 by default)",
                       description="Serve the reader page. Reader names are not authentication: anyone who "
                       "can reach the port can submit judgments, so the default host is 127.0.0.1.")
    s.add_argument("study", metavar="STUDY")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    s.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    s.add_argument("--seed", type=seed_value, default=None, help="seed of the pair choice (default: random)")
    s.set_defaults(func=run_serve)

    c = sub.add_parser("scores", help="Elo and Bradley-Terry scores, reader agreement, CSV for iqa-bench",
                       description="Scores of a study: PIPAL Elo, Bradley-Terry-Davidson with bootstrap "
                       "intervals, per-reader agreement; --csv exports for mriqa iqa-bench.")
    c.add_argument("study", metavar="STUDY")
    c.add_argument("--json", default=None, metavar="OUT", help="write all scores as JSON")
    c.add_argument("--csv", default=None, metavar="OUT",
                   help="write the generic IQA CSV (mriqa iqa-bench --dataset csv:OUT)")
    c.add_argument("--csv-score", default="elo", choices=("elo", "bt"),
                   help="the CSV's score column: Elo (default) or BT on Elo points")
    c.add_argument("--bootstrap", type=int, default=200, metavar="N", help="bootstrap resamples (default 200)")
    c.add_argument("--level", type=float, default=0.95, help="interval level (default 0.95)")
    c.add_argument("--seed", type=seed_value, default=0, help="seed of the Elo pass order and the bootstrap (0)")
    c.add_argument("--passes", type=int, default=20, help="Elo passes over the judgments (default 20)")
    c.add_argument("--last", type=int, default=10, help="Elo: mean of each image's last N ratings (10)")
    c.set_defaults(func=run_scores)
    return p


def run_new(args) -> int:
    from pathlib import Path

    from recon.io.output import check_writable_dir
    from mriqa.reader_study.study import build_study

    check_writable_dir(Path(args.out).parent, "OUT")
    notes: list[str] = []
    study = build_study(args.out, args.inputs, reference=args.reference, slices=args.slices,
                        group_regex=args.group_regex, percentiles=tuple(args.percentiles), name=args.name,
                        target_per_reader=args.target, notes=notes)
    for note in notes:
        print(f"mriqa: note: {note}")
    m = study.manifest
    print(f"study {study.root}: {len(m['images'])} images in {len(m['groups'])} content groups, "
          f"{m['target_per_reader']} judgments per reader")
    print(f"serve it with: mriqa reader-study serve {study.root}")
    return 0


def run_serve(args) -> int:
    from recon.errors import InputError
    from mriqa.reader_study.server import serve
    from mriqa.reader_study.study import open_study

    if not 0 <= args.port <= 65535:
        raise InputError(None, f"--port must be in 0..65535, got {args.port}")
    study = open_study(args.study)

    def announce(url: str) -> None:
        print(f"reader study {study.manifest.get('name')}: {url} (Ctrl-C stops; reader names are not "
              "authentication)", flush=True)

    serve(study, args.host, args.port, args.seed, announce=announce)
    print("stopped")
    return 0


def _num(v, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def run_scores(args) -> int:
    import json

    from recon.errors import InputError
    from recon.io.output import check_writable, output_file
    from mriqa.commands.shared import format_table
    from mriqa.reader_study.scores import study_scores, write_csv
    from mriqa.reader_study.study import open_study

    if args.bootstrap < 0:
        raise InputError(None, f"--bootstrap must be >= 0, got {args.bootstrap}")
    if not 0 < args.level < 1:
        raise InputError(None, f"--level must be in (0, 1), got {args.level}")
    if args.passes < 1 or args.last < 1:
        raise InputError(None, f"--passes and --last must be >= 1, got {args.passes} and {args.last}")
    for path, what in ((args.json, "--json"), (args.csv, "--csv")):
        if path is not None:
            check_writable(path, what)
    study = open_study(args.study)
    res = study_scores(study, n_boot=args.bootstrap, level=args.level, seed=args.seed, passes=args.passes,
                       last=args.last)
    if args.csv is not None and res["judgments"] == 0:
        raise InputError(study.root, "no judgments yet: nothing to export (--csv)")
    pct = f"{100 * args.level:g}%"
    print(f"study {res['study']}: {res['judgments']} judgments ({res['ties']} ties) by {len(res['readers'])} "
          f"readers; Elo: start 1400, M 400, K 16, {args.passes} shuffled passes, mean of the last {args.last}; "
          f"BT: natural-log scale, mean 0 per group, {pct} basic bootstrap interval ({args.bootstrap} resamples)")
    rows = [(im["id"], im["group"], im["label"], str(im["n"]), f"{im['wins']}/{im['losses']}/{im['ties']}",
             _num(im["elo"], ".1f"), _num(im["bt"], "+.3f"),
             f"[{_num(im['bt_lo'], '+.3f')}, {_num(im['bt_hi'], '+.3f')}]")
            for im in sorted(res["images"], key=lambda x: (x["group"], -(x["bt"] or 0.0)))]
    print(format_table(("image", "group", "label", "n", "W/L/T", "elo", "bt", f"bt {pct}"), rows, left=3))
    if len(res["methods"]) < len(res["images"]):
        print("\nper label (mean over its content groups):")
        print(format_table(("label", "groups", "n", "elo", "bt", f"bt {pct}"),
                           [(m["label"], str(m["groups"]), str(m["n"]), _num(m["elo"], ".1f"), _num(m["bt"], "+.3f"),
                             f"[{_num(m['bt_lo'], '+.3f')}, {_num(m['bt_hi'], '+.3f')}]") for m in res["methods"]],
                           left=1))
    agree = res["agreement"]["readers"]
    if agree:
        print("\nper reader (agreement: share of its non-tie judgments that prefer the better image of the "
              "consensus of the other readers; 'self' = only one reader):")
        print(format_table(("reader", "judgments", "scored", "agreement", "ties", "consensus"),
                           [(r, str(v["n"]), str(v["n_scored"]), _num(v["agreement"], ".3f"), _num(v["ties"], ".3f"),
                             v["consensus"]) for r, v in agree.items()], left=1))
    for pair in res["agreement"]["pairs"]:
        print(f"readers {pair['readers'][0]} / {pair['readers'][1]}: {pair['shared_pairs']} shared pairs, "
              f"same verdict {_num(pair['agreement'], '.3f')}")
    if args.json is not None:
        with output_file(args.json, "--json") as tmp:
            tmp.write_text(json.dumps(res, indent=1) + "\n")
        print(f"wrote {args.json}")
    if args.csv is not None:
        write_csv(res, study, args.csv, score=args.csv_score)
        print(f"wrote {args.csv} (mriqa iqa-bench --dataset csv:{args.csv} --metric ...)")
    return 0
