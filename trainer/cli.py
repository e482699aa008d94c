"""``iotids-train``: reproduce the Uni-/Bi-Hybrid RNN IDS on IoTID20 and export the gateway's int8 model."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

from trainer.config import DEFAULT_CONFIG, ConfigError, load_profile, profile_names

EPILOG = """\
examples:
  iotids-train run                                   # quick profile on the real sample (or synthetic data)
  iotids-train run --profile paper --data "/data/IoT Network Intrusion Dataset.csv" --out runs/paper
  iotids-train grid --profile quick --limit 4        # first 4 of the 144 Table II combinations, on a local Ray
  iotids-train grid --only optimizer=adam,batch_size=256 --cpus 2
  iotids-train grid --profile paper --address auto --storage /shared/grid   # on a Ray cluster (from a node)
  iotids-train estimate --profile paper --rows 625415  # time a few training steps, extrapolate the full run
  iotids-train synth --rows 20000 --out data/        # SYNTHETIC flows in the IoTID20 schema
  iotids-train adapt --site-benign site.csv --out runs/site   # learn a site's own benign traffic
  iotids-train thresholds runs/quick                 # a run's operating points: threshold → FPR, recall, precision
  iotids-train profiles                              # the profiles of the trainer config
"""


def _csv_files(p: argparse.ArgumentParser, flag: str, help: str) -> None:
    """A repeatable option naming CSV files."""
    p.add_argument(flag, type=Path, action="append", default=[], metavar="CSV", help=help)


def _profile_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", default="quick", help="profile in the config file (quick | paper)")
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="trainer YAML (default: %(default)s)")
    p.add_argument("--data", help="auto | sample | synthetic | path to an IoTID20 CSV (full file or sample)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a profile field, e.g. --set window.length=8 --set train.epochs=5",
    )


def _options(args: argparse.Namespace, *names: str) -> dict[str, Any]:
    """The named command-line options as keyword arguments (the option's dest is the parameter's name)."""
    return {name: getattr(args, name) for name in names}


def _load(args: argparse.Namespace):
    overrides = list(args.overrides)
    if args.data:
        overrides.append(f"data={args.data}")
    return load_profile(args.profile, args.config, overrides)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="iotids-train",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="clean → select → scale → split → window → train → evaluate → export int8")
    _profile_args(p)
    p.add_argument("--out", type=Path, default=None, help="output directory (default: runs/<profile>)")
    p.add_argument("--model-version", help="version string recorded in the spec (default: <profile>-<UTC time>)")

    p = sub.add_parser("grid", help="grid search over Table II on Ray Tune (resumable; local Ray or a cluster)")
    _profile_args(p)
    p.add_argument(
        "--out", type=Path, default=None, help="directory of grid.jsonl and grid.md (default: runs/<profile>-grid)"
    )
    p.add_argument("--limit", type=int, help="run only the first N combinations")
    p.add_argument("--only", default="", help="filter, e.g. optimizer=adam,batch_size=256")
    p.add_argument(
        "--address", help="join this Ray cluster (default: $RAY_ADDRESS, else start a local Ray for this run)"
    )
    p.add_argument("--cpus", type=int, help="CPUs of the local Ray (default: all of this machine's)")
    p.add_argument(
        "--storage",
        help="Ray Tune's experiment storage (default: OUT/tune); on a cluster, a path every node sees or s3://…",
    )
    p.add_argument(
        "--scheduler", choices=("none", "asha"), help="asha: stop weak combinations early (default: grid.scheduler)"
    )

    p = sub.add_parser("estimate", help="time training steps at the profile's shape and extrapolate the full cost")
    _profile_args(p)
    p.add_argument("--rows", type=int, default=625_415, help="cleaned rows of the data the estimate is for")
    p.add_argument("--steps", type=int, default=5, help="timed training steps (after one warm-up step)")

    p = sub.add_parser("thresholds", help="a run's operating points (threshold → FPR, recall, precision on test)")
    p.add_argument("run_dir", type=Path, help="a run directory (test_scores.npz, spec.json)")

    p = sub.add_parser("profiles", help="list the profiles of the trainer config")
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="trainer YAML (default: %(default)s)")

    p = sub.add_parser(
        "adapt",
        help="retrain on IoTID20 + a site's benign flows (+ lab attacks); before/after on held-out site traffic",
    )
    _profile_args(p)
    _csv_files(
        p,
        "--site-benign",
        "the site's flows from a learning period (flow-meter CSV; rows are Normal unless a "
        "Cat/Label column says otherwise); repeatable; needed unless --site-attacks files hold Normal rows",
    )
    _csv_files(
        p, "--site-attacks", "the lab's labelled flows (Cat column; its Normal rows count as site benign); repeatable"
    )
    p.add_argument(
        "--holdout",
        type=float,
        default=0.3,
        help="latest share of each file's rows (per category, in time order) held out (default %(default)s)",
    )
    p.add_argument(
        "--site-share",
        type=float,
        default=0.5,
        help="share of each class's training weight carried by site/lab rows (default %(default)s)",
    )
    p.add_argument(
        "--baseline", type=Path, help="run directory of the IoTID20 model (default: train it into OUT/baseline)"
    )
    _csv_files(
        p,
        "--also-score",
        "flows never trained on (e.g. captures from elsewhere), scored by both models and reported apart",
    )
    p.add_argument(
        "--max-attack-rows",
        type=int,
        default=2000,
        help="learning rows kept per lab attack type, evenly over time (default %(default)s; held-out rows all kept)",
    )
    p.add_argument(
        "--curve",
        default="0.1,0.25,0.5",
        help="learning-curve fractions of the benign learning rows, comma-separated; '' = none (default %(default)s)",
    )
    p.add_argument("--out", type=Path, default=Path("runs/site"), help="output run directory (default: %(default)s)")
    p.add_argument("--model-version", help="version string recorded in the spec (default: <profile>-<UTC time>)")

    p = sub.add_parser("synth", help="write SYNTHETIC flows in the IoTID20 schema (for demos without the dataset)")
    p.add_argument("--rows", type=int, default=20000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("."))

    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        if args.command == "profiles":
            print("\n".join(profile_names(args.config)))
            return 0
        if args.command == "thresholds":
            from trainer.operating_points import run_table

            print(run_table(args.run_dir))
            return 0
        if args.command == "synth":
            from trainer.synthetic import write_csv

            print(write_csv(args.out, args.rows, seed=args.seed))
            return 0
        profile = _load(args)
        if args.command == "run":
            from trainer.pipeline import run

            out = args.out or Path("runs") / profile.name
            summary = run(profile, out, model_version=args.model_version, verbose=2)
            _print_run_summary(summary, out)
        elif args.command == "adapt":
            from trainer.site_adapt import adapt, print_summary

            curve = tuple(float(x) for x in args.curve.split(",") if x.strip())
            site_options = ("site_benign", "site_attacks", "holdout", "site_share", "baseline", "also_score")
            summary = adapt(
                profile,
                args.out,
                **_options(args, *site_options, "max_attack_rows", "model_version"),
                curve=curve,
                verbose=2 if args.verbose else 0,
            )
            print_summary(summary["site_adaptation"], args.out)
        elif args.command == "grid":
            from trainer.grid import GridIncomplete, run_grid

            try:
                run_grid(
                    profile,
                    args.out or Path("runs") / f"{profile.name}-grid",
                    **_options(args, "limit", "only", "address", "cpus", "storage", "scheduler"),
                )
            except GridIncomplete as e:
                print(f"iotids-train: {e}", file=sys.stderr)
                return 1
        elif args.command == "estimate":
            from trainer.estimate import estimate

            estimate(profile, rows=args.rows, steps=args.steps)
    except (ConfigError, ValueError, FileNotFoundError) as e:
        print(f"iotids-train: error: {e}", file=sys.stderr)
        return 2
    return 0


def _print_run_summary(s: dict, out: Path) -> None:
    main_model = s["profile"]["model"]["name"]
    res = s["results"]["models"]
    int8 = res[f"{main_model} int8"]["test"]
    print()
    print(s["data"]["description"])
    print(
        f"{main_model}: test accuracy {res[main_model]['test']['accuracy']:.4f} (Keras float), "
        f"{int8['accuracy']:.4f} (int8 TFLite)"
    )
    cmp_ = s["export"]["comparison"]
    print(
        f"int8 file {cmp_[cmp_['shipped']]['size_bytes']:,} B = {cmp_['int8_vs_float_size_ratio']:.2f}× float; "
        f"label agreement with float {cmp_[cmp_['shipped']]['label_agreement_with_keras']:.4f}"
    )
    print(f"artifacts: {out}/model_int8.tflite, {out}/spec.json; report: {out}/report.md")


if __name__ == "__main__":
    sys.exit(main())
