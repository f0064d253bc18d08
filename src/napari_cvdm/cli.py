"""The ``napari-cvdm`` command line: one console script, argparse subcommands.

Every option is generated from a dataclass of the library (a request per command, plus the shared sampling
options, training settings, network options and optics), so a default and its help live in one place; every
command calls one library function. This module only parses, shows progress bars on a terminal and prints.
Errors a user can fix are printed as one line (no traceback unless ``--debug``) and give exit status 2.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from ._options import add_options, class_summary, class_words, from_args, given_values, option_classes
from ._terminal import counter, plain_warnings, progress_bar, sampling_bar
from .inference._malloc import reuse_freed_memory

__all__ = ["main", "build_parser", "COMMANDS"]


def _optics_values(args: argparse.Namespace) -> dict[str, Any]:
    """The optics options given, any task's (the task refuses those its optics lacks)."""
    from .tasks import TASKS

    return {k: v for t in TASKS.values() for k, v in given_values(t.optics_class, args).items()}


def run_demo(args: argparse.Namespace) -> int:
    from .jobs.demo import DemoRequest, run_demo

    request = from_args(DemoRequest, args)
    r = run_demo(request, _sampling(args))
    (h, w), (oh, ow) = r.input.shape, r.prediction.mean.shape
    print(
        f"{request.structure}, {request.photons:g} photons, {w}x{h} -> {ow}x{oh}: "
        f"{r.prediction.samples.shape[0]} samples x {r.steps} steps in {r.seconds:.1f} s"
    )
    for name, sc in r.scores.items():
        print(f"  {name:24s} PSNR {sc.psnr:6.2f} dB  SSIM {sc.ssim:.3f}")
    print(f"wrote {request.output_dir}/" + ", ".join(p.name for p in r.written))
    return 0


def run_toy(args: argparse.Namespace) -> int:
    from .data.tiff import write_tiff
    from .jobs.toy import ToyConfig, ToyRequest, evaluate_toy, train_toy

    cfg, out, options = from_args(ToyConfig, args), from_args(ToyRequest, args).output_dir, _sampling(args)
    print(f"training a {cfg.schedule}-schedule CVDM on the toy problem for up to {cfg.max_seconds:.0f} s ...")
    result = train_toy(cfg, lambda step, loss: step % 100 == 0 and print(f"  step {step:5d}  loss {loss:.4f}"))
    print(f"trained {result.steps_done} steps in {result.seconds:.1f} s")
    scores = evaluate_toy(result.network, cfg, n_samples=options.n_samples, steps=options.steps or 50)
    print(f"PSNR of the input      : {scores.psnr_condition:6.2f} dB")
    print(f"PSNR of the CVDM mean  : {scores.psnr_mean:6.2f} dB  ({scores.psnr_mean - scores.psnr_condition:+.2f} dB)")
    images = {"input": scores.condition, "target": scores.target, "mean": scores.mean, "std": scores.std}
    for name, image in images.items():
        write_tiff(out / f"toy_{name}.tif", image.astype("float32"))
    print(f"wrote {out}/toy_input.tif, toy_target.tif, toy_mean.tif, toy_std.tif")
    return 0


def run_simulate(args: argparse.Namespace) -> int:
    from .jobs.simulation import SimulationRequest, write_simulated_pairs

    request = from_args(SimulationRequest, args)
    with progress_bar(request.n, "simulating", "pair") as bar:
        record = write_simulated_pairs(request, _optics_values(args), counter(bar))
    if record["held_out_seed"]:
        print(f"warning: seed {request.seed} makes the held-out evaluation set; do not train on it", file=sys.stderr)
    print(f"wrote {request.n} {request.task} pairs to {request.output_dir}/inputs and {request.output_dir}/targets")
    return 0


def run_train(args: argparse.Namespace) -> int:
    from .training.distributed import StopOnSignal, finish
    from .training.job import NetworkOptions, TrainingRequest, prepare_training
    from .training.train import TrainConfig, training_config

    request = from_args(TrainingRequest, args)
    config = training_config(request.from_model is not None, given_values(TrainConfig, args))
    job = prepare_training(request, config, from_args(NetworkOptions, args), _optics_values(args))
    trainer, main_rank = job.trainer, job.trainer.dist.is_main
    if main_rank:
        n_params = sum(p.numel() for p in job.start.network.parameters()) / 1e6
        print(
            f"training {job.task.name} ({n_params:.2f} M parameters, {job.start.network.config.schedule} "
            f"schedule) on {len(job.data.train)} pairs, {len(job.data.validation)} for validation, device "
            f"{trainer.device}, {trainer.dist.world_size} process(es)"
            + (f"; resumed at step {trainer.step}" if request.resume else ""),
            flush=True,
        )
        print("".join(f"warning: {note}\n" for note in job.resume_notes), end="", file=sys.stderr, flush=True)
    stop, bar = StopOnSignal(), progress_bar(config.steps, "training", "step")
    bar.disable = bar.disable or not main_rank

    def report(p: Any) -> bool:
        bar.update(p.step - bar.n)
        bar.set_postfix(loss=f"{p.loss['total']:.4f}", val=p.val_psnr and f"{p.val_psnr:.2f} dB")
        if main_rank and bar.disable and (p.step % 50 == 0 or p.step == p.total):
            val = f"  val PSNR {p.val_psnr:.2f} dB" if p.val_psnr is not None else ""
            print(
                f"  step {p.step:6d}/{p.total}  loss {p.loss['total']:.4f}  lr {p.lr:.2e}  {p.seconds:7.1f} s{val}",
                flush=True,
            )
        return not stop.requested(trainer.dist, trainer.device)

    with stop:
        result = job.run(report)
    bar.close()
    if result.stopped_early:
        if main_rank:
            print(
                f"napari-cvdm train: stopped by {stop.signal_name} after step {result.steps_done}; the checkpoint "
                f"{request.checkpoint_path} is complete. Continue with the same command and --resume.",
                file=sys.stderr,
            )
        return 128 + stop.signal_number
    if main_rank:
        job.save(request.output, result, " ".join(sys.argv), None if request.from_model else request.default_steps)
        best = result.best_val_psnr
        print(f"wrote {request.output}" + (f" (best validation PSNR {best:.2f} dB)" if best is not None else ""))
    finish(trainer.dist)
    return 0


def run_predict(args: argparse.Namespace) -> int:
    from .inference.classical import load_method
    from .inference.devices import compile_network, resolve_device
    from .jobs.batch import PredictRequest, predict_request
    from .training.distributed import finish, init_distributed

    request, options = from_args(PredictRequest, args), _sampling(args)
    model = load_method(request.model, _optics_values(args), request.flat_field)
    if request.compile and model.stochastic:
        compile_network(model.network)
    dist = init_distributed(resolve_device(options.device))
    t0 = time.perf_counter()
    with warnings.catch_warnings():  # printed below, once per file, in plain words
        warnings.simplefilter("ignore")
        results = predict_request(model, request, options, dist, lambda path: sampling_bar(path.name), args.debug)
    finish(dist)
    if not dist.is_main:
        return 0
    for r in results:
        if r.error:
            where = "" if r.path.name in r.error else f"{r.path}: "
            print(f"napari-cvdm predict: error: {where}{r.error}", file=sys.stderr)
        elif not r.skipped:
            check = "" if r.residual_rms is None else f" (residual {r.residual_rms:.2f}× the noise)"
            print(f"{r.path}: {r.shape} in {r.seconds:.1f} s -> {r.outputs[0]}, _std.tif, _residual.tif{check}")
            for remark in r.warnings:
                print(f"napari-cvdm predict: warning: {r.path}: {remark}", file=sys.stderr)
    failed, skipped = [str(r.path) for r in results if r.error], sum(r.skipped for r in results)
    if len(results) > 1:
        print(
            f"napari-cvdm predict: {len(results) - len(failed) - skipped} done, {skipped} already complete, "
            f"{len(failed)} failed in {time.perf_counter() - t0:.1f} s ({dist.world_size} process(es))"
            + (f": {', '.join(failed)}" if failed else ""),
            file=sys.stderr if failed else sys.stdout,
        )
    return 1 if failed else 0


def run_evaluate(args: argparse.Namespace) -> int:
    from .jobs.evaluate import EvaluationRequest, format_reliability, format_table, prepare_evaluation, write_rows
    from .tasks.base import run_noting

    request = from_args(EvaluationRequest, args)
    evaluation = prepare_evaluation(request, _sampling(args), _optics_values(args))
    print("\n".join(evaluation.notes))
    t0 = time.perf_counter()
    notes: list[str] = []
    with progress_bar(len(evaluation.examples), "evaluating", "pair") as bar:
        rows = run_noting(evaluation.run, counter(bar), notes)
    for note in notes:
        print(f"note: {note}")
    print(format_table(rows))
    reliability = format_reliability(rows)
    if reliability:
        print("\nreliability (all pairs): fraction within the Gaussian interval of each nominal probability")
        print(reliability)
    if request.json is not None:
        print(f"wrote {write_rows(rows, request.json, evaluation.notes)}")
    print(f"({time.perf_counter() - t0:.0f} s)")
    return 0


def run_evaluate_real(args: argparse.Namespace) -> int:
    from .jobs.real_pairs import RealEvaluationRequest, evaluate_real_pairs, format_real_table, write_real_rows

    request = from_args(RealEvaluationRequest, args)
    print(format_real_table(rows := evaluate_real_pairs(request, _sampling(args))))
    if request.json is not None:
        print(f"wrote {write_real_rows(rows, request.json)}")
    return 0


def run_calibrate(args: argparse.Namespace) -> int:
    from .jobs.calibrate import CalibrationRequest, calibrate_model, calibration_remarks, calibration_report

    request = from_args(CalibrationRequest, args)
    with progress_bar(0, "calibrating", "pair") as bar:
        cal = calibrate_model(request, _sampling(args), counter(bar))
    print("\n".join(calibration_report(cal)))
    for remark in calibration_remarks(cal):
        print(f"napari-cvdm calibrate: warning: {remark}", file=sys.stderr)
    print(f"wrote {request.output}")
    return 0


def run_bench(args: argparse.Namespace) -> int:
    from .jobs.bench import BenchRequest, format_bench, run_bench

    print(format_bench(*run_bench(from_args(BenchRequest, args), _sampling(args))))
    return 0


def run_export(args: argparse.Namespace) -> int:
    from .jobs.export import ExportRequest, export_bioimageio

    path, status = export_bioimageio(from_args(ExportRequest, args))
    print(f"wrote {path} (bioimage.io validation: {status})")
    return 0


def _sampling(args: argparse.Namespace) -> Any:
    from .inference.predict import SamplingOptions

    return from_args(SamplingOptions, args)


#: name → (what runs it, the option classes: ``module.Class`` or ``module.Class:field,field!`` for some fields,
#: ``!`` marking a required one; ``optics`` for the optics of every task; ``sampling`` for the sampling options).
#: The help is the first class's summary.
COMMANDS: dict[str, tuple[Callable[[argparse.Namespace], int], str]] = {
    "demo": (run_demo, "jobs.demo.DemoRequest sampling:n_samples,steps,seed,device"),
    "toy": (run_toy, "jobs.toy.ToyRequest jobs.toy.ToyConfig:max_seconds,schedule,seed sampling:n_samples,steps"),
    "simulate": (run_simulate, "jobs.simulation.SimulationRequest optics"),
    "train": (run_train, "training.job.TrainingRequest training.train.TrainConfig training.job.NetworkOptions optics"),
    "predict": (run_predict, "jobs.batch.PredictRequest sampling:n_samples,steps,seed,device,tile_size optics"),
    "evaluate": (run_evaluate, "jobs.evaluate.EvaluationRequest sampling:n_samples,steps,seed,device,tile_size optics"),
    "evaluate-real": (run_evaluate_real, "jobs.real_pairs.RealEvaluationRequest sampling:n_samples,steps,seed,device"),
    "calibrate": (run_calibrate, "jobs.calibrate.CalibrationRequest sampling:n_samples,steps,seed,device,tile_size"),
    "bench": (run_bench, "jobs.bench.BenchRequest sampling:n_samples,steps,device"),
    "export": (run_export, "jobs.export.ExportRequest"),
}


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every subcommand."""
    from ._version import __version__
    from .tasks import TASKS

    parser = argparse.ArgumentParser(
        prog="napari-cvdm",
        description="Conditional Variational Diffusion Models for microscopy: super-resolution (sr) and "
        "quantitative phase imaging (qpi) with a per-pixel uncertainty map.",
    )
    parser.add_argument("--version", action="version", version=f"napari-cvdm {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (func, spec) in COMMANDS.items():
        groups = option_classes(spec)
        text = class_summary(groups[0][0][0])
        p = sub.add_parser(name, help=text[0].lower() + text[1:].rstrip("."), description=text)
        for i, (classes, fields, required) in enumerate(groups):
            title = (
                "optics (default: the model's, or the task's)" if len(classes) > 1 else class_words(classes[0].__name__)
            )
            labels = {t.optics_class: t.name for t in TASKS.values()}
            add_options(
                p if i == 0 else p.add_argument_group(title), classes, fields, len(classes) == 1, required, labels
            )
        p.set_defaults(func=func)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``napari-cvdm`` console script."""
    args = build_parser().parse_args(argv)
    reuse_freed_memory()  # large tiles: no fresh, zeroed pages for every activation (see _malloc.py)
    try:
        with plain_warnings(args.command):
            return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("napari-cvdm: interrupted", file=sys.stderr)
        return 130
    except (OSError, ValueError) as err:
        if args.debug:
            raise
        print(f"napari-cvdm {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
