"""The ``napari-cvdm`` command line: one console script, argparse subcommands.

Each subcommand has an ``add_<name>_parser`` function that registers it and a
``run_<name>`` function that does the work through the same core functions as
the napari widgets. Errors a user can fix are printed as one line (no
traceback unless ``--debug``) and give exit status 2.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main", "build_parser", "UserError"]


class UserError(Exception):
    """A problem the user can fix; printed as one line without a traceback."""


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def add_demo_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``napari-cvdm demo``."""
    p = sub.add_parser(
        "demo",
        help="train a tiny CVDM on a toy problem and write its mean and uncertainty (a self-check)",
        description=(
            "Trains a small CVDM (learned per-pixel schedule) for about a minute on a toy problem "
            "(noisy, blurred spots -> clean spots), samples held-out images and writes "
            "DIR/toy_input.tif, DIR/toy_target.tif, DIR/toy_mean.tif and DIR/toy_std.tif (float32). "
            "Prints PSNR of the input and of the CVDM mean against the ground truth."
        ),
    )
    p.add_argument("--output-dir", type=Path, default=Path("cvdm-demo"), help="where to write the TIFFs")
    p.add_argument("--seconds", type=_positive_float, default=60.0, help="training time budget (default 60)")
    p.add_argument("--samples", type=_positive_int, default=8, help="samples per image (default 8)")
    p.add_argument("--steps", type=_positive_int, default=50, help="sampling steps (default 50)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the training run")
    p.add_argument("--schedule", choices=("learned", "cosine"), default="learned",
                   help="learned CVDM schedule (default) or the fixed cosine baseline")
    p.set_defaults(func=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    """Train the toy model, evaluate it and write the images."""
    from .data.tiff import write_tiff
    from .toy import ToyConfig, evaluate_toy, train_toy

    cfg = ToyConfig(max_seconds=args.seconds, seed=args.seed, schedule=args.schedule)
    print(f"training a {cfg.schedule}-schedule CVDM on the toy problem for up to {args.seconds:.0f} s ...")

    def report(step: int, loss: float) -> None:
        if step % 100 == 0:
            print(f"  step {step:5d}  loss {loss:.4f}", flush=True)

    result = train_toy(cfg, callback=report)
    print(f"trained {result.steps_done} steps in {result.seconds:.1f} s")
    t0 = time.perf_counter()
    scores = evaluate_toy(result.network, cfg, n_samples=args.samples, steps=args.steps)
    print(f"sampled 8 held-out images x {args.samples} samples x {args.steps} steps in "
          f"{time.perf_counter() - t0:.1f} s")
    print(f"PSNR of the input      : {scores.psnr_condition:6.2f} dB")
    print(f"PSNR of the CVDM mean  : {scores.psnr_mean:6.2f} dB  "
          f"({scores.psnr_mean - scores.psnr_condition:+.2f} dB)")
    out = args.output_dir
    for name, img in (("input", scores.condition), ("target", scores.target), ("mean", scores.mean),
                      ("std", scores.std)):
        write_tiff(out / f"toy_{name}.tif", img.astype("float32"))
    print(f"wrote {out}/toy_input.tif, toy_target.tif, toy_mean.tif, toy_std.tif")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every subcommand."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="napari-cvdm",
        description="Conditional Variational Diffusion Models for microscopy: super-resolution (sr) and "
                    "quantitative phase imaging (qpi) with a per-pixel uncertainty map.",
    )
    parser.add_argument("--version", action="version", version=f"napari-cvdm {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    add_demo_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``napari-cvdm`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("napari-cvdm: interrupted", file=sys.stderr)
        return 130
    except (UserError, OSError, ValueError) as err:
        if args.debug:
            raise
        print(f"napari-cvdm {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
