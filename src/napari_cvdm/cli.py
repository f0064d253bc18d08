"""The ``napari-cvdm`` command line: one console script, argparse subcommands.

Each subcommand registers its options (generated from the library's dataclasses where they exist) and calls
one library function; this module only parses, reports progress and prints. Errors a user can fix are printed
as one line (no traceback unless ``--debug``) and give exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from ._options import add_options, given_values, positive_float, positive_int

__all__ = ["main", "build_parser", "UserError"]


class UserError(Exception):
    """A problem the user can fix; printed as one line without a traceback."""


def _bar(total: int, desc: str, unit: str):
    """A progress bar on a terminal; silent when stderr is not one (logs, pipes, CI)."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True, disable=not sys.stderr.isatty())


def _sampling(args: argparse.Namespace):
    from .predict import SamplingOptions

    return SamplingOptions(**given_values(SamplingOptions, args))


def _sampling_progress(desc: str):
    """A sampling callback that moves a bar over the denoiser passes (samples × steps × planes)."""
    bar = None

    def report(progress) -> None:
        nonlocal bar
        if bar is None:
            bar = _bar(progress.total, desc, "pass")
        bar.update(progress.done - bar.n)
        if progress.done >= progress.total:
            bar.close()

    return report


def _task_and_optics(args: argparse.Namespace, task_name: str, base=None):
    """The task and its optics: ``base`` (or the task's defaults) with the optics options given."""
    from .tasks import TASKS, get_task

    task = get_task(task_name)
    others = {f for t in TASKS.values() if t is not task for f in given_values(t.optics_class, args)}
    given = given_values(task.optics_class, args)
    if others - set(given):
        raise UserError(f"option(s) for another task's optics: {', '.join(sorted(others - set(given)))}")
    return task, (base or task.default_optics()).replace(**given)


def _add_optics(p: argparse.ArgumentParser) -> None:
    from .tasks import TASKS

    add_options(p.add_argument_group("optics (default: the model's, or the bundled model's)"),
                [t.optics_class for t in TASKS.values()], keep_defaults=False)


def _images(folder: Path | None):
    from .data.simulate import load_grayscale_images

    return load_grayscale_images(folder) if folder else None


def _classes(task, names: Sequence[str] | None) -> list[str] | None:
    known = [*task.default_classes(with_images=True), *task.test_only_classes]
    bad = [c for c in names or () if c not in known]
    if bad:
        raise UserError(f"unknown class(es) {', '.join(bad)} for {task.name}; choose from {', '.join(known)}")
    return list(names) if names else None


def run_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo as demo

    r = demo(args.output_dir, args.model, args.structure, args.photons, args.size, _sampling(args))
    print(f"{args.structure}, {args.photons:g} photons, {args.size}x{args.size} -> {2 * args.size}x{2 * args.size}: "
          f"{args.n_samples} samples x {r.steps} steps in {r.seconds:.1f} s")
    for name, sc in r.scores.items():
        print(f"  {name:24s} PSNR {sc.psnr:6.2f} dB  SSIM {sc.ssim:.3f}")
    print(f"wrote {args.output_dir}/" + ", ".join(p.name for p in r.written))
    return 0


def run_toy(args: argparse.Namespace) -> int:
    from .data.tiff import write_tiff
    from .toy import ToyConfig, evaluate_toy, train_toy

    cfg = ToyConfig(max_seconds=args.seconds, seed=args.seed, schedule=args.schedule)
    print(f"training a {cfg.schedule}-schedule CVDM on the toy problem for up to {args.seconds:.0f} s ...")
    result = train_toy(cfg, callback=lambda step, loss: step % 100 == 0 and print(
        f"  step {step:5d}  loss {loss:.4f}", flush=True))
    print(f"trained {result.steps_done} steps in {result.seconds:.1f} s")
    scores = evaluate_toy(result.network, cfg, n_samples=args.samples, steps=args.steps)
    print(f"PSNR of the input      : {scores.psnr_condition:6.2f} dB")
    print(f"PSNR of the CVDM mean  : {scores.psnr_mean:6.2f} dB  ({scores.psnr_mean - scores.psnr_condition:+.2f} dB)")
    for name in ("condition", "target", "mean", "std"):
        write_tiff(args.output_dir / f"toy_{'input' if name == 'condition' else name}.tif",
                   getattr(scores, name).astype("float32"))
    print(f"wrote {args.output_dir}/toy_input.tif, toy_target.tif, toy_mean.tif, toy_std.tif")
    return 0


def run_simulate(args: argparse.Namespace) -> int:
    from .data.simulate import TEST_SEED, VALIDATION_SEED, write_simulated_pairs

    if args.seed in (TEST_SEED, VALIDATION_SEED):
        print(f"warning: seed {args.seed} makes the held-out evaluation set; do not train on it", file=sys.stderr)
    task, optics = _task_and_optics(args, args.task)
    images = _images(args.images)
    classes = _classes(task, args.classes)
    if "images" in (classes or ()) and not images:
        raise UserError("the class 'images' needs --images DIR")
    with _bar(args.n, "simulating", "pair") as bar:
        write_simulated_pairs(task, args.output_dir, args.n, args.seed, optics, args.size, classes, images,
                              args.photons, progress=lambda done, total: bar.update(done - bar.n))
    print(f"wrote {args.n} {task.name} pairs to {args.output_dir}/inputs and {args.output_dir}/targets")
    return 0


def run_train(args: argparse.Namespace) -> int:
    from .devices import resolve_device
    from .distributed import StopOnSignal, finish, init_distributed
    from .job import NetworkOptions, TrainingJob, folder_data, simulated_data, starting_point
    from .models import load_model
    from .train import TrainConfig

    if args.output.suffix != ".safetensors":
        raise UserError(f"--output {args.output}: model files end in .safetensors")
    config = TrainConfig(**given_values(TrainConfig, args))
    from .data.simulate import TEST_SEED, VALIDATION_SEED

    if config.seed in (TEST_SEED, VALIDATION_SEED):
        raise UserError(f"seed {config.seed} is reserved for the held-out evaluation sets")
    device = resolve_device(args.device)
    dist = init_distributed(device)
    if dist.world_size > 1 and device.type == "cuda":
        import torch

        device = torch.device("cuda", dist.local_rank)
    parent_optics = load_model(args.from_model, task=args.task).optics if args.from_model else None
    task, optics = _task_and_optics(args, args.task, parent_optics)
    # the starting model before the data, so that a bad --from fails at once
    start = starting_point(task, args.from_model, optics, NetworkOptions(**given_values(NetworkOptions, args)),
                           config.seed)
    data = (folder_data(task, args.pairs, args.validation_fraction, config.seed, min(16, config.patch_size))
            if args.pairs else simulated_data(task, args.simulate, config.seed, args.size, optics,
                                              _classes(task, args.classes) or (), _images(args.images)))
    checkpoint = args.checkpoint or args.output.with_suffix(".ckpt.safetensors")
    job = TrainingJob.create(task, data, config, start, device, checkpoint,
                             args.log or args.output.with_suffix(".log.jsonl"), dist)
    if args.resume:
        if not checkpoint.exists():
            raise UserError(f"--resume: no checkpoint at {checkpoint}")
        job.trainer.load_checkpoint(checkpoint)
    if dist.is_main:
        n_params = sum(p.numel() for p in start.network.parameters()) / 1e6
        print(f"training {task.name} ({n_params:.2f} M parameters, {start.network.config.schedule} schedule) on "
              f"{len(data.train)} pairs, {len(data.validation)} for validation, device {device}, "
              f"{dist.world_size} process(es)" + (f"; resumed at step {job.trainer.step}" if args.resume else ""))
    stop = StopOnSignal()
    bar = _bar(config.steps, "training", "step") if dist.is_main else None

    def report(p) -> bool:
        if bar is not None:
            bar.update(p.step - bar.n)
            bar.set_postfix(loss=f"{p.loss['total']:.4f}", val=p.val_psnr and f"{p.val_psnr:.2f} dB")
        if dist.is_main and (p.step % 50 == 0 or p.step == p.total) and (bar is None or bar.disable):
            val = f"  val PSNR {p.val_psnr:.2f} dB" if p.val_psnr is not None else ""
            print(f"  step {p.step:6d}/{p.total}  loss {p.loss['total']:.4f}  lr {p.lr:.2e}  {p.seconds:7.1f} s{val}",
                  flush=True)
        return not stop.requested(dist, device)

    with stop:
        result = job.run(report)
    if bar is not None:
        bar.close()
    if result.stopped_early:
        if dist.is_main:
            print(f"napari-cvdm train: stopped by {stop.signal_name} after step {result.steps_done}; the "
                  f"checkpoint {checkpoint} is complete. Continue with the same command and --resume.",
                  file=sys.stderr)
        return 128 + stop.signal_number
    if dist.is_main:
        job.save(args.output, result, " ".join(sys.argv), None if args.from_model else args.default_steps)
        best = result.best_val_psnr
        print(f"wrote {args.output}" + (f" (best validation PSNR {best:.2f} dB)" if best is not None else ""))
    finish(dist)
    return 0


def run_predict(args: argparse.Namespace) -> int:
    from .batch import predict_files
    from .devices import compile_network
    from .models import load_model

    model = load_model(args.model)
    if args.compile:
        compile_network(model.network)
    results = predict_files(model, args.inputs, _sampling(args), args.output_dir,
                            lambda path: _sampling_progress(path.name), raise_errors=args.debug)
    for r in results:
        if r.error:
            where = "" if r.path.name in r.error else f"{r.path}: "
            print(f"napari-cvdm predict: error: {where}{r.error}", file=sys.stderr)
        else:
            print(f"{r.path}: {r.shape} in {r.seconds:.1f} s -> {r.outputs[0]}, _std.tif")
    failed = [str(r.path) for r in results if r.error]
    if len(failed) > 0 and len(results) > 1:
        print(f"napari-cvdm predict: {len(failed)} of {len(results)} file(s) failed: {', '.join(failed)}",
              file=sys.stderr)
    return 1 if failed else 0


def run_evaluate(args: argparse.Namespace) -> int:
    import time

    from . import evaluate as ev
    from .models import ModelFileError, load_model
    from .tasks import TASKS

    model = None
    try:
        model = load_model(args.model)
        task_name, base = model.task.name, model.optics
    except ModelFileError as err:
        if args.model not in TASKS:
            raise UserError(str(err)) from None
        task_name, base = args.model, None
        print(f"note: {err}; scoring the classical baselines only")
    task, optics = _task_and_optics(args, task_name, base)
    images, classes = _images(args.images), _classes(task, args.classes)
    examples = (ev.read_pair_folder(args.data) if args.data else
                ev.held_out_set(task, args.n_per_class, args.size, optics=optics, classes=classes, images=images))
    tune_on = ev.held_out_set(task, 4, args.size, ev.VALIDATION_SEED, optics, classes, images) if args.tune_baselines else ()
    methods, tuning = ev.evaluation_methods(task, optics, tune_on, model, _sampling(args))
    if tuning:
        print(tuning)
    print(f"{task.name}: {len(examples)} held-out pairs" + ("" if args.data else f" (simulated, seed {ev.TEST_SEED})"))
    t0 = time.perf_counter()
    with _bar(len(examples), "evaluating", "pair") as bar:
        rows = ev.evaluate(examples, methods, task, progress=lambda done, total: bar.update(done - bar.n))
    print(ev.format_table(rows))
    print(f"({time.perf_counter() - t0:.0f} s)")
    return 0


def run_bench(args: argparse.Namespace) -> int:
    from .bench import bench_model, bench_sr3_preset, format_bench

    if args.preset == "sr3":
        name, result = bench_sr3_preset(args.size, args.n_samples, args.steps or 2, args.device, args.compile)
    else:
        name, result = bench_model(args.model, args.size, args.n_samples, args.steps, args.device, args.compile)
    print(format_bench(name, result))
    return 0


_COMMANDS: dict[str, tuple[Callable[[argparse.Namespace], int], str]] = {
    "demo": (run_demo, "run the bundled sr model on a simulated widefield image; writes mean, std and target TIFFs "
                       "and prints PSNR beside the classical baselines"),
    "toy": (run_toy, "train a tiny CVDM on a toy problem for about a minute and write its mean and uncertainty "
                     "(a self-check of the core)"),
    "simulate": (run_simulate, "write simulated pairs as DIR/inputs/NAME.tif and DIR/targets/NAME.tif (the layout "
                               "train --pairs and evaluate --data read)"),
    "train": (run_train, "train or fine-tune a model and write a .safetensors file; checkpoints, --resume, "
                         "torchrun --nproc_per_node N -m napari_cvdm train ... for several GPUs"),
    "predict": (run_predict, "reconstruct TIFFs: writes DIR/<stem>_mean.tif and DIR/<stem>_std.tif (float32)"),
    "evaluate": (run_evaluate, "score a model on held-out data beside the classical baselines (PSNR, SSIM, "
                               "calibration of the std)"),
    "bench": (run_bench, "speed figures: time per step, GFLOP/s against this machine's peak, memory"),
}


def _add_arguments(name: str, p: argparse.ArgumentParser) -> None:
    from .job import NetworkOptions
    from .predict import SamplingOptions
    from .tasks import TASKS
    from .train import TrainConfig

    task_names = tuple(TASKS)
    if name in ("demo", "predict", "evaluate", "bench"):
        only = ("n_samples", "steps", "seed", "device") + (("tile_size",) if name == "predict" else ())
        add_options(p, SamplingOptions, only, required=("n_samples",) if name == "predict" else ())
    if name == "demo":
        p.add_argument("--output-dir", type=Path, default=Path("cvdm-demo"))
        p.add_argument("--model", default="sr", help="sr (default) or an sr model file")
        p.add_argument("--structure", default="microtubules", help="microtubules, ccps, er, actin or blobs")
        p.add_argument("--photons", type=positive_float, default=50.0, help="signal level, photons per pixel")
        p.add_argument("--size", type=positive_int, default=256, help="input side in pixels (default 256)")
    elif name == "toy":
        p.add_argument("--output-dir", type=Path, default=Path("cvdm-toy"), help="where to write the TIFFs")
        p.add_argument("--seconds", type=positive_float, default=60.0, help="training time budget (default 60)")
        p.add_argument("--samples", type=positive_int, default=8, help="samples per image (default 8)")
        p.add_argument("--steps", type=positive_int, default=50, help="sampling steps (default 50)")
        p.add_argument("--seed", type=int, default=0, help="random seed of the training run")
        p.add_argument("--schedule", choices=("learned", "cosine"), default="learned",
                       help="learned CVDM schedule (default) or the fixed cosine baseline")
    elif name == "predict":
        p.add_argument("inputs", nargs="+", type=Path, help="TIFF files")
        p.add_argument("--model", required=True, help="sr, qpi or a .safetensors model file")
        p.add_argument("--compile", action="store_true", help="compile the denoiser with torch.compile (pays off "
                                                              "on GPUs for long runs; slower on CPUs)")
        p.add_argument("--output-dir", type=Path, required=True)
    elif name == "bench":
        p.add_argument("--model", default="sr", help="sr, qpi or a model file (default sr)")
        p.add_argument("--preset", choices=("sr3",), default=None, help="time the paper-sized network instead")
        p.add_argument("--size", type=positive_int, default=256, help="input side in pixels (default 256)")
        p.add_argument("--compile", action="store_true", help="time the denoiser compiled with torch.compile")
    if name in ("simulate", "train", "evaluate"):
        if name == "evaluate":
            p.add_argument("--model", required=True, help="sr, qpi (the bundled models) or a model file")
            p.add_argument("--data", type=Path, default=None, help="folder with inputs/ and targets/ "
                                                                    "(default: simulated with a held-out seed)")
            p.add_argument("--n-per-class", type=positive_int, default=6, help="simulated pairs per class (6)")
            p.add_argument("--tune-baselines", action="store_true",
                           help="choose the baselines' parameter on a validation set first")
        else:
            p.add_argument("--task", choices=task_names, required=True)
        p.add_argument("--size", type=positive_int, default=None, help="simulated input side in pixels "
                       "(default: " + ", ".join(f"{t.name} {t.simulate_size if name == 'simulate' else t.train_size}"
                                                for t in TASKS.values()) + ")")
        p.add_argument("--classes", "--structures", "--sources", nargs="+", default=None, dest="classes",
                       help="structure classes (sr) or phase sources (qpi); default: the task's training classes; "
                            "evaluate also knows the test-only classes " + ", ".join(
                                c for t in TASKS.values() for c in t.test_only_classes))
        p.add_argument("--images", type=Path, default=None, help="qpi: folder of grayscale images to use as phase")
        _add_optics(p)
    if name == "simulate":
        p.add_argument("--n", type=positive_int, required=True, help="number of pairs")
        p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
        p.add_argument("--output-dir", type=Path, required=True)
        p.add_argument("--photons", type=positive_float, default=None,
                       help="sr signal level in photons per pixel (default: log-uniform over the training range)")
    elif name == "train":
        src = p.add_mutually_exclusive_group(required=True)
        src.add_argument("--pairs", type=Path, help="folder with inputs/ and targets/")
        src.add_argument("--simulate", type=positive_int, metavar="N", help="train on N pairs simulated on the fly")
        p.add_argument("--from", dest="from_model", default=None, help="fine-tune this model (sr, qpi or a file)")
        p.add_argument("--output", type=Path, required=True, help="model file to write (.safetensors)")
        add_options(p, TrainConfig)
        add_options(p.add_argument_group("new models"), NetworkOptions)
        p.add_argument("--validation-fraction", type=float, default=0.1, help="--pairs: share held out (0.1)")
        p.add_argument("--checkpoint", type=Path, default=None, help="default: OUTPUT with .ckpt.safetensors")
        p.add_argument("--resume", action="store_true", help="continue from the checkpoint")
        p.add_argument("--log", type=Path, default=None, help="JSON-lines log (default: OUTPUT with .log.jsonl)")
        p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
        p.add_argument("--default-steps", type=positive_int, default=20, help="sampling steps stored in the model")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every subcommand."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="napari-cvdm",
        description="Conditional Variational Diffusion Models for microscopy: super-resolution (sr) and "
                    "quantitative phase imaging (qpi) with a per-pixel uncertainty map.")
    parser.add_argument("--version", action="version", version=f"napari-cvdm {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (func, text) in _COMMANDS.items():
        p = sub.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        _add_arguments(name, p)
        p.set_defaults(func=func)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``napari-cvdm`` console script."""
    args = build_parser().parse_args(argv)
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
