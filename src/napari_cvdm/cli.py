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
        help="run the bundled sr model on a simulated widefield image and write mean, std and target TIFFs",
        description="Simulates a widefield image (default: microtubules, 256x256 at 62.6 nm, 50 photons) with its "
                    "SIM-like ground truth, reconstructs it with a CVDM model (default: the bundled sr model) and "
                    "writes DIR/widefield.tif, DIR/widefield_mean.tif, DIR/widefield_std.tif and DIR/target.tif. "
                    "Prints PSNR against the ground truth beside bicubic and Richardson-Lucy.",
    )
    p.add_argument("--output-dir", type=Path, default=Path("cvdm-demo"))
    p.add_argument("--model", default="sr", help="sr (default) or an sr model file")
    p.add_argument("--structure", default="microtubules", help="microtubules, ccps, er, actin or blobs")
    p.add_argument("--photons", type=_positive_float, default=50.0, help="signal level, photons per pixel")
    p.add_argument("--size", type=_positive_int, default=256, help="input side in pixels (default 256)")
    p.add_argument("--samples", type=_positive_int, default=8)
    p.add_argument("--steps", type=_positive_int, default=None, help="default: the model's")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.set_defaults(func=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    """Simulate, reconstruct, score and write the demo images."""
    import numpy as np

    from .data.simulate import simulate_sr_pair
    from .data.tiff import write_tiff
    from .metrics import sr_scores
    from .models import load_model
    from .physics.widefield import bicubic_upsample, richardson_lucy_sr

    model = load_model(args.model, task="sr")
    pair = simulate_sr_pair(args.structure, (args.size, args.size), args.photons, np.random.default_rng(args.seed))
    t0 = time.perf_counter()
    pred = model.predict(pair.input, n_samples=args.samples, steps=args.steps, seed=args.seed, device=args.device)
    seconds = time.perf_counter() - t0
    out, px = args.output_dir, pair.optics.pixel_um
    write_tiff(out / "widefield.tif", pair.input, pixel_size_um=px)
    write_tiff(out / "widefield_mean.tif", pred.mean, pixel_size_um=px / 2)
    write_tiff(out / "widefield_std.tif", pred.std, pixel_size_um=px / 2)
    write_tiff(out / "target.tif", pair.target, pixel_size_um=px / 2)
    steps = args.steps or model.default_steps
    print(f"{args.structure}, {args.photons:g} photons, {args.size}x{args.size} -> {2 * args.size}x{2 * args.size}: "
          f"{args.samples} samples x {steps} steps in {seconds:.1f} s")
    for name, est in (("bicubic", bicubic_upsample(pair.input)), ("Richardson-Lucy", richardson_lucy_sr(pair.input,
                                                                                                         pair.optics)),
                      ("CVDM mean", pred.mean)):
        sc = sr_scores(est, pair.target)
        print(f"  {name:16s} PSNR {sc.psnr:6.2f} dB  SSIM {sc.ssim:.3f}")
    print(f"wrote {out}/widefield.tif, widefield_mean.tif, widefield_std.tif, target.tif")
    return 0


def add_toy_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``napari-cvdm toy``."""
    p = sub.add_parser(
        "toy",
        help="train a tiny CVDM on a toy problem and write its mean and uncertainty (a self-check)",
        description=(
            "Trains a small CVDM (learned per-pixel schedule) for about a minute on a toy problem "
            "(noisy, blurred spots -> clean spots), samples held-out images and writes "
            "DIR/toy_input.tif, DIR/toy_target.tif, DIR/toy_mean.tif and DIR/toy_std.tif (float32). "
            "Prints PSNR of the input and of the CVDM mean against the ground truth."
        ),
    )
    p.add_argument("--output-dir", type=Path, default=Path("cvdm-toy"), help="where to write the TIFFs")
    p.add_argument("--seconds", type=_positive_float, default=60.0, help="training time budget (default 60)")
    p.add_argument("--samples", type=_positive_int, default=8, help="samples per image (default 8)")
    p.add_argument("--steps", type=_positive_int, default=50, help="sampling steps (default 50)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the training run")
    p.add_argument("--schedule", choices=("learned", "cosine"), default="learned",
                   help="learned CVDM schedule (default) or the fixed cosine baseline")
    p.set_defaults(func=run_toy)


def run_toy(args: argparse.Namespace) -> int:
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


def _add_sr_optics(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("sr optics (defaults: the bundled model's)")
    g.add_argument("--na", type=_positive_float, default=1.3, help="numerical aperture (default 1.3)")
    g.add_argument("--wavelength", type=_positive_float, default=None,
                   help="emission (sr, default 0.525) or illumination (qpi, default 0.521) wavelength in µm")
    g.add_argument("--pixel-size", type=_positive_float, default=None,
                   help="input pixel size in µm (sr default 0.0626, qpi default 0.21)")
    g.add_argument("--background", type=float, default=0.1, help="sr background as a fraction of the signal")
    g.add_argument("--read-noise", type=float, default=2.0, help="sr camera read noise, electrons (default 2)")
    q = p.add_argument_group("qpi optics (defaults: the bundled model's)")
    q.add_argument("--dz", type=_positive_float, default=1.0, help="qpi defocus distance in µm (default 1)")
    q.add_argument("--noise", type=float, default=0.02,
                   help="qpi additive noise std, unit illumination = 1 (default 0.02)")


def _sr_optics(args: argparse.Namespace):
    from .physics.widefield import WidefieldOptics

    return WidefieldOptics(na=args.na, wavelength_um=args.wavelength or 0.525, pixel_um=args.pixel_size or 0.0626,
                           background_fraction=args.background, read_noise=args.read_noise)


def _qpi_optics(args: argparse.Namespace):
    from .data.simulate import QPIOptics

    return QPIOptics(wavelength_um=args.wavelength or 0.521, pixel_um=args.pixel_size or 0.21, dz_um=args.dz,
                     noise=args.noise)


def add_simulate_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``napari-cvdm simulate``."""
    p = sub.add_parser(
        "simulate",
        help="write simulated input/target pairs (the layout train --pairs and evaluate --data read)",
        description="Writes DIR/inputs/NAME.tif and DIR/targets/NAME.tif (float32, pixel size in the metadata). "
                    "sr: inputs (H, W) widefield images in photo-electrons, targets (2H, 2W) SIM-like images. "
                    "qpi: inputs (2, H, W) intensities at (-dz, +dz) under unit illumination, targets (H, W) "
                    "phase in radians. NAME is <class>_<index>.",
    )
    p.add_argument("--task", choices=("sr", "qpi"), required=True)
    p.add_argument("--n", type=_positive_int, required=True, help="number of pairs")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--output-dir", type=Path, required=True)
    p.add_argument("--size", type=_positive_int, default=None,
                   help="input side in pixels (sr default 128, qpi default 256)")
    p.add_argument("--photons", type=_positive_float, default=None,
                   help="sr signal level in photons per pixel (default: log-uniform between 15 and 600)")
    p.add_argument("--structures", nargs="+", default=None,
                   help="sr structure classes (default all: microtubules ccps er actin blobs)")
    p.add_argument("--sources", nargs="+", default=None,
                   help="qpi phase sources: cells textures images (default cells textures, plus images with --images)")
    p.add_argument("--images", type=Path, default=None, help="qpi: folder of grayscale images to use as phase")
    _add_sr_optics(p)
    p.set_defaults(func=run_simulate)


def run_simulate(args: argparse.Namespace) -> int:
    """Simulate pairs and write them as TIFFs."""
    import json

    import numpy as np

    from .data.simulate import QPI_SOURCES, load_grayscale_images, simulate_qpi_pair, simulate_sr_pair
    from .data.tiff import write_tiff
    from .evaluate import PHOTON_RANGE, TEST_SEED, VALIDATION_SEED

    if args.seed in (TEST_SEED, VALIDATION_SEED):
        print(f"warning: seed {args.seed} makes the held-out evaluation set; do not train on it", file=sys.stderr)
    rng = np.random.default_rng(args.seed)
    out: Path = args.output_dir
    (out / "inputs").mkdir(parents=True, exist_ok=True)
    (out / "targets").mkdir(parents=True, exist_ok=True)
    record: dict = {"task": args.task, "n": args.n, "seed": args.seed}
    if args.task == "sr":
        optics = _sr_optics(args)
        classes = _structures(args.structures)
        size = args.size or 128
        for i in range(args.n):
            cls = classes[i % len(classes)]
            photons = args.photons or float(np.exp(rng.uniform(*np.log(PHOTON_RANGE))))
            pair = simulate_sr_pair(cls, (size, size), photons, rng, optics)
            name = f"{cls}_{i:04d}.tif"
            write_tiff(out / "inputs" / name, pair.input, pixel_size_um=optics.pixel_um)
            write_tiff(out / "targets" / name, pair.target, pixel_size_um=optics.target_pixel_um)
        record.update(optics=optics.to_dict(), structures=classes, size=size,
                      photons=args.photons or list(PHOTON_RANGE))
    else:
        optics = _qpi_optics(args)
        images = load_grayscale_images(args.images) if args.images else None
        sources = args.sources or (["cells", "textures"] + (["images"] if images else []))
        bad = [s for s in sources if s not in QPI_SOURCES]
        if bad:
            raise UserError(f"unknown source(s) {', '.join(bad)}; choose from {', '.join(QPI_SOURCES)}")
        if "images" in sources and not images:
            raise UserError("the source 'images' needs --images DIR")
        size = args.size or 256
        for i in range(args.n):
            src = sources[i % len(sources)]
            pair = simulate_qpi_pair(src, (size, size), rng, optics, images)
            name = f"{src}_{i:04d}.tif"
            write_tiff(out / "inputs" / name, pair.input, pixel_size_um=optics.pixel_um, axes="CYX")
            write_tiff(out / "targets" / name, pair.target, pixel_size_um=optics.pixel_um)
        record.update(optics=optics.to_dict(), sources=sources, size=size,
                      images=str(args.images) if args.images else None)
    (out / "simulation.json").write_text(json.dumps(record, indent=2))
    print(f"wrote {args.n} {args.task} pairs to {out}/inputs and {out}/targets")
    return 0


def add_evaluate_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``napari-cvdm evaluate``."""
    p = sub.add_parser(
        "evaluate",
        help="score reconstructions on held-out data beside the classical baselines",
        description="Prints a table per structure class / phase source: PSNR and SSIM (sr after an affine "
                    "intensity fit, qpi after removing the mean) and, for CVDM, the calibration of its "
                    "uncertainty. Default data: a fixed-seed simulated test set never used for training.",
    )
    p.add_argument("--model", required=True,
                   help="sr, qpi (the bundled models) or a model file; scored beside the task's baselines")
    p.add_argument("--samples", type=_positive_int, default=8, help="CVDM samples per image (default 8)")
    p.add_argument("--steps", type=_positive_int, default=None, help="CVDM sampling steps (default: the model's)")
    p.add_argument("--seed", type=int, default=0, help="CVDM sampling seed")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    p.add_argument("--data", type=Path, default=None, help="folder with inputs/ and targets/ (default: simulated)")
    p.add_argument("--n-per-class", type=_positive_int, default=6, help="simulated pairs per class (default 6)")
    p.add_argument("--size", type=_positive_int, default=None, help="simulated input side (sr 64, qpi 128)")
    p.add_argument("--tune-baselines", action="store_true",
                   help="choose RL iterations / TIE regularization on the validation set first")
    p.add_argument("--images", type=Path, default=None, help="qpi: also test on phase from these images")
    p.add_argument("--structures", nargs="+", default=None,
                   help="sr: structure classes (default: the five training classes; mitochondria and "
                        "nuclear-pores were never used for training)")
    _add_sr_optics(p)
    p.set_defaults(func=run_evaluate)


def _structures(names: list[str] | None) -> list[str]:
    """The sr structure classes asked for (default: the five training classes); unknown names are an error."""
    from .data.simulate import SR_HELDOUT_STRUCTURES, SR_STRUCTURES

    known = [*SR_STRUCTURES, *SR_HELDOUT_STRUCTURES]
    bad = [c for c in names or () if c not in known]
    if bad:
        raise UserError(f"unknown structure(s) {', '.join(bad)}; choose from {', '.join(known)}")
    return list(names or SR_STRUCTURES)


def _cvdm_method(model, n_samples: int, steps: int | None, seed: int, device: str):
    def method(x):
        pred = model.predict(x, n_samples=n_samples, steps=steps, seed=seed, device=device)
        return pred.mean, pred.std
    return method


def run_evaluate(args: argparse.Namespace) -> int:
    """Build the test set, score the baselines and the model, print the table."""
    from . import evaluate as ev
    from .data.simulate import load_grayscale_images
    from .models import ModelFileError, load_model

    model = None
    try:
        model = load_model(args.model)
        task = model.task
    except ModelFileError as err:
        if args.model not in ("sr", "qpi"):
            raise UserError(str(err)) from None
        task = args.model
        print(f"note: {err}; scoring the classical baselines only")
    if task == "sr":
        optics = _sr_optics(args)
        examples = (ev.read_pair_folder(args.data) if args.data else
                    ev.sr_test_set(args.n_per_class, args.size or 64, optics=optics,
                                   structures=_structures(args.structures)))
        iterations = ev.DEFAULT_RL_ITERATIONS
        if args.tune_baselines:
            val = ev.sr_test_set(4, args.size or 64, ev.VALIDATION_SEED, optics)
            iterations, table = ev.choose_rl_iterations(val, optics)
            print("validation PSNR by RL iterations: " + ", ".join(f"{k}: {v:.2f}" for k, v in table.items()))
        methods = ev.sr_baselines(optics, iterations)
    else:
        optics = _qpi_optics(args)
        images = load_grayscale_images(args.images) if args.images else None
        sources = ("cells", "textures") + (("images",) if images else ())
        examples = (ev.read_pair_folder(args.data) if args.data else
                    ev.qpi_test_set(args.n_per_class, args.size or 128, optics=optics, sources=sources,
                                    images=images))
        alpha = ev.DEFAULT_TIE_REGULARIZATION
        if args.tune_baselines:
            val = ev.qpi_test_set(4, args.size or 128, ev.VALIDATION_SEED, optics,
                                  sources=sources, images=images)
            alpha, table = ev.choose_tie_regularization(val, optics)
            print("validation PSNR by TIE alpha (1/um^2): " + ", ".join(f"{k:g}: {v:.2f}" for k, v in table.items()))
        methods = ev.qpi_baselines(optics, alpha)
    if model is not None:
        steps = args.steps or model.default_steps
        methods[f"CVDM {model.name} ({args.samples} samples, {steps} steps)"] = _cvdm_method(
            model, args.samples, steps, args.seed, args.device)
    print(f"{task}: {len(examples)} held-out pairs" + ("" if args.data else f" (simulated, seed {ev.TEST_SEED})"))
    t0 = time.perf_counter()
    print(ev.format_table(ev.evaluate(examples, methods, task)))
    print(f"({time.perf_counter() - t0:.0f} s)")
    return 0

def add_bench_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``napari-cvdm bench``."""
    p = sub.add_parser(
        "bench",
        help="speed figures: time per step (schedule vs denoiser), FLOP/s against the machine's peak, memory",
        description="Times one sampling run of a model on a random input and prints where the time goes, the "
                    "achieved GFLOP/s beside this machine's dense matmul peak measured in the same run, and the "
                    "peak memory. --preset sr3 times the paper's SR3-sized network instead (random weights).",
    )
    p.add_argument("--model", default="sr", help="sr, qpi or a model file (default sr)")
    p.add_argument("--preset", choices=("sr3",), default=None, help="time the paper-sized network instead")
    p.add_argument("--size", type=_positive_int, default=256, help="input side in pixels (default 256)")
    p.add_argument("--samples", type=_positive_int, default=8)
    p.add_argument("--steps", type=_positive_int, default=None, help="default: the model's (sr3 preset: 2)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    p.add_argument("--compile", action="store_true", help="time the denoiser compiled with torch.compile")
    p.set_defaults(func=run_bench)


def run_bench(args: argparse.Namespace) -> int:
    """Print the speed figures of a model (or the SR3 preset)."""
    from .bench import bench_network, format_bench, model_condition, random_condition, sr3_preset_network
    from .models import load_model
    from .predict import (autocast_dtype, device_sampling_plan, preferred_chunk_pixels, prepare_network,
                          resolve_device)

    device = resolve_device(args.device)
    if args.preset == "sr3":
        net = sr3_preset_network(device)
        side = -(-args.size // net.stride) * net.stride
        cond = random_condition((1, 1, side, side), device)
        name, steps = f"SR3-sized preset ({args.size}² → {side}²)", args.steps or 2
        limit = preferred_chunk_pixels(device)
        chunk = None if limit is None else max(1, limit // side**2)
    else:
        model = load_model(args.model)
        net, cond = prepare_network(model.network, device), model_condition(model, args.size, device)
        name, steps = f"{model.name} ({args.size}² input)", args.steps or model.default_steps
        chunk = device_sampling_plan(model, tuple(cond.shape[-2:]), args.samples, device).chunk
    if args.compile:
        from .predict import compile_network

        compile_network(net)
        name += ", torch.compile"
    print(format_bench(name, bench_network(net, cond, args.samples, steps, chunk_size=chunk,
                                           autocast=autocast_dtype(device))))
    return 0


def _int_tuple(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 1,2,2,4; got {text}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text}")
    return values


def add_train_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``napari-cvdm train``."""
    p = sub.add_parser(
        "train",
        help="train or fine-tune a CVDM model (torchrun-compatible)",
        description="Trains a CVDM on pairs from a folder (DIR/inputs + DIR/targets, as simulate writes) or on "
                    "pairs simulated on the fly, and writes a .safetensors model file. --from fine-tunes an "
                    "existing model. Checkpoints are written next to the output and --resume continues a run "
                    "exactly. Several GPUs: torchrun --nproc_per_node N -m napari_cvdm train ...",
    )
    p.add_argument("--task", choices=("sr", "qpi"), required=True)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--pairs", type=Path, help="folder with inputs/ and targets/")
    src.add_argument("--simulate", type=_positive_int, metavar="N", help="train on N pairs simulated on the fly")
    p.add_argument("--from", dest="from_model", default=None, help="fine-tune this model (sr, qpi or a file)")
    p.add_argument("--steps", type=_positive_int, required=True, help="optimizer steps")
    p.add_argument("--output", type=Path, required=True, help="model file to write (.safetensors)")
    p.add_argument("--batch-size", type=_positive_int, default=8)
    p.add_argument("--patch-size", type=_positive_int, default=48, help="patch side on the input grid (default 48)")
    p.add_argument("--lr", type=_positive_float, default=1e-3, help="AdamW learning rate (default 1e-3)")
    p.add_argument("--warmup", type=int, default=100, help="learning-rate warm-up steps (default 100)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=_positive_int, default=None, help="--simulate: input side (sr 64, qpi 128)")
    p.add_argument("--structures", nargs="+", default=None, help="--simulate sr: structure classes")
    p.add_argument("--sources", nargs="+", default=None, help="--simulate qpi: phase sources")
    p.add_argument("--images", type=Path, default=None, help="--simulate qpi: folder of images for phase")
    p.add_argument("--validation-fraction", type=float, default=0.1, help="--pairs: share held out (default 0.1)")
    p.add_argument("--validate-every", type=int, default=500, help="steps between validations (0: never)")
    p.add_argument("--checkpoint-every", type=_positive_int, default=200)
    p.add_argument("--checkpoint", type=Path, default=None, help="default: OUTPUT with .ckpt.safetensors")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint")
    p.add_argument("--log", type=Path, default=None, help="JSON-lines log (default: OUTPUT with .log.jsonl)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    p.add_argument("--schedule", choices=("learned", "cosine"), default="learned",
                   help="learned CVDM schedule (default) or the fixed cosine ablation baseline")
    p.add_argument("--base-channels", type=_positive_int, default=None, help="new models: U-Net width (32)")
    p.add_argument("--channel-mults", type=_int_tuple, default=None, help="new models: e.g. 1,2,2,4")
    p.add_argument("--res-blocks", type=_positive_int, default=None, help="new models: residual blocks per level")
    p.add_argument("--space-to-depth", type=_positive_int, default=None,
                   help="new models: pixel-unshuffle factor (sr 2, qpi 1)")
    p.add_argument("--default-steps", type=_positive_int, default=20, help="sampling steps stored in the model")
    _add_sr_optics(p)
    p.set_defaults(func=run_train)


def run_train(args: argparse.Namespace) -> int:
    """Build data, network and trainer; train; write the model file."""
    import torch

    from .data.dataset import FolderPairs
    from .data.normalize import default_normalization
    from .data.simulate import load_grayscale_images
    from .evaluate import TEST_SEED, VALIDATION_SEED
    from .models import save_model
    from .predict import resolve_device
    from .train import (Trainer, TrainConfig, default_network_config, init_distributed,
                        simulated_training_data, split_validation, starting_network, training_record)

    if args.output.suffix != ".safetensors":
        raise UserError(f"--output {args.output}: model files end in .safetensors")
    if args.seed in (TEST_SEED, VALIDATION_SEED):
        raise UserError(f"seed {args.seed} is reserved for the held-out evaluation sets")
    device = resolve_device(args.device)
    dist = init_distributed(device)
    if dist.world_size > 1 and device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
    optics = (_sr_optics(args) if args.task == "sr" else _qpi_optics(args))
    # the starting model before the data, so that a bad --from fails at once
    network, normalization, parent = starting_network(
        args.task, args.from_model,
        default_network_config(args.task, args.schedule, args.base_channels, args.channel_mults, args.res_blocks,
                               args.space_to_depth),
        default_normalization(args.task, optics if args.task == "qpi" else None), args.seed)
    if args.pairs:
        pairs = FolderPairs(args.pairs, args.task, min_side=min(16, args.patch_size))
        train_pairs, val_pairs = split_validation(pairs, args.validation_fraction, args.seed)
        data_record = {"pairs": str(args.pairs), "n_pairs": len(pairs), "n_validation": len(val_pairs)}
    else:
        images = load_grayscale_images(args.images) if args.images else None
        train_pairs, val_pairs, data_record = simulated_training_data(
            args.task, args.simulate, args.seed, args.size or (64 if args.task == "sr" else 128), optics,
            (args.structures if args.task == "sr" else args.sources) or (), images)
        data_record["images"] = str(args.images) if args.images else None
    cfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, patch_size=args.patch_size, lr=args.lr,
                      warmup_steps=args.warmup, seed=args.seed, checkpoint_every=args.checkpoint_every,
                      validate_every=args.validate_every)
    checkpoint = args.checkpoint or args.output.with_suffix(".ckpt.safetensors")
    log = args.log or args.output.with_suffix(".log.jsonl")
    trainer = Trainer(args.task, network, train_pairs, normalization, cfg, val_pairs, device, checkpoint, log, dist)
    if args.resume:
        if not checkpoint.exists():
            raise UserError(f"--resume: no checkpoint at {checkpoint}")
        trainer.load_checkpoint(checkpoint)
        if dist.is_main:
            print(f"resumed from {checkpoint} at step {trainer.step}")
    n_params = sum(p.numel() for p in network.parameters())
    if dist.is_main:
        print(f"training {args.task} ({n_params / 1e6:.2f} M parameters, {network.config.schedule} schedule) on "
              f"{len(train_pairs)} pairs, {len(val_pairs)} for validation, device {device}, "
              f"{dist.world_size} process(es)")

    stop = _StopOnSignal()

    def report(p) -> bool:
        if dist.is_main and (p.step % 50 == 0 or p.step == p.total):
            val = f"  val PSNR {p.val_psnr:.2f} dB" if p.val_psnr is not None else ""
            print(f"  step {p.step:6d}/{p.total}  loss {p.loss['total']:.4f}  lr {p.lr:.2e}  "
                  f"{p.seconds:7.1f} s{val}", flush=True)
        return not stop.requested(dist.world_size > 1, device)

    with stop:
        result = trainer.run(report)
    if result.stopped_early:
        if dist.is_main:
            print(f"napari-cvdm train: stopped by {stop.signal_name} after step {result.steps_done}; the "
                  f"checkpoint {checkpoint} is complete. Continue with the same command and --resume.",
                  file=sys.stderr)
        return 128 + stop.signal_number
    if dist.is_main:
        training = training_record(args.task, result, cfg, data_record, parent, args.from_model,
                                   " ".join(sys.argv), dist.world_size)
        save_model(args.output, result.network, args.task, normalization, optics.to_dict(), training,
                   default_steps=args.default_steps if parent is None else parent.default_steps)
        print(f"wrote {args.output}" + (f" (best validation PSNR {result.best_val_psnr:.2f} dB)"
                                        if result.best_val_psnr is not None else ""))
    if dist.world_size > 1:
        import torch.distributed as tdist

        tdist.barrier()
        tdist.destroy_process_group()
    return 0


class _StopOnSignal:
    """Turns SIGINT/SIGTERM into a request to stop after the current training step (a context manager).

    Under torchrun every process asks the others, so that all stop after the same step.
    """

    def __init__(self) -> None:
        self.signal_number = 0
        self._previous: dict = {}

    @property
    def signal_name(self) -> str:
        import signal

        return signal.Signals(self.signal_number).name if self.signal_number else "request"

    def __enter__(self) -> "_StopOnSignal":
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        import signal

        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame) -> None:
        self.signal_number = signum

    def requested(self, distributed: bool, device) -> bool:
        """Whether any process was asked to stop."""
        if not distributed:
            return self.signal_number != 0
        import torch
        import torch.distributed as tdist

        flag = torch.tensor([float(self.signal_number)], device=device)
        tdist.all_reduce(flag, op=tdist.ReduceOp.MAX)
        self.signal_number = int(flag.item())
        return self.signal_number != 0


def add_predict_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``napari-cvdm predict``."""
    p = sub.add_parser(
        "predict",
        help="reconstruct TIFFs: writes <stem>_mean.tif and <stem>_std.tif",
        description="sr: (H, W) widefield images (or Z/T stacks, plane by plane) -> (2H, 2W) in the input's units. "
                    "qpi: (2, H, W) defocused pairs ordered (-dz, +dz), divided by the background -> phase in "
                    "radians. Writes DIR/<stem>_mean.tif and DIR/<stem>_std.tif (float32).",
    )
    p.add_argument("inputs", nargs="+", type=Path, help="TIFF files")
    p.add_argument("--model", required=True, help="sr, qpi or a .safetensors model file")
    p.add_argument("--samples", type=_positive_int, required=True, help="samples per image (8 is a good start)")
    p.add_argument("--steps", type=_positive_int, default=None, help="sampling steps (default: the model's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    p.add_argument("--tile-size", type=_positive_int, default=None, help="tile side for large images")
    p.add_argument("--compile", action="store_true",
                   help="compile the denoiser with torch.compile (pays off on GPUs for long runs; slower here on CPU)")
    p.add_argument("--output-dir", type=Path, required=True)
    p.set_defaults(func=run_predict)


def run_predict(args: argparse.Namespace) -> int:
    """Predict every input; the good files are written even when others fail."""
    from .data.tiff import read_tiff, write_tiff
    from .models import load_model

    model = load_model(args.model)
    if args.compile:
        from .predict import compile_network

        compile_network(model.network)
    failed: list[str] = []
    for path in args.inputs:
        try:
            img = read_tiff(path)
            t0 = time.perf_counter()
            pred = model.predict(img.data, n_samples=args.samples, steps=args.steps, seed=args.seed,
                                 device=args.device, tile_size=args.tile_size)
            px = img.pixel_size_um
            if px is not None and model.task == "sr":
                px = (px[0] / 2, px[1] / 2)
            axes = "YX" if pred.mean.ndim == 2 else "ZYX"
            for kind, arr in (("mean", pred.mean), ("std", pred.std)):
                write_tiff(args.output_dir / f"{path.stem}_{kind}.tif", arr, pixel_size_um=px, axes=axes)
            print(f"{path}: {pred.mean.shape} in {time.perf_counter() - t0:.1f} s -> "
                  f"{args.output_dir / (path.stem + '_mean.tif')}, _std.tif")
        except (ValueError, OSError) as err:
            if args.debug:
                raise
            failed.append(str(path))
            print(f"napari-cvdm predict: error: {err}", file=sys.stderr)
    if failed:
        print(f"napari-cvdm predict: {len(failed)} of {len(args.inputs)} file(s) failed: {', '.join(failed)}",
              file=sys.stderr)
        return 1
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
    add_toy_parser(sub)
    add_simulate_parser(sub)
    add_train_parser(sub)
    add_predict_parser(sub)
    add_evaluate_parser(sub)
    add_bench_parser(sub)
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
