"""Screenshots of the real napari window for docs/gui.md.

Opens napari (under Xvfb when there is no display), loads each sample from
File > Open Sample > CVDM, opens Plugins > CVDM > Reconstruct, runs the bundled
model and saves PNGs of the whole window (input, mean and std side by side in
napari's grid mode) and of the widget. Prints the wall time of each run.

    python docs/make_screenshots.py [--samples 8] [--output docs/images]
    python docs/make_screenshots.py --finetune-pairs DIR --finetune-output MODEL.safetensors [--steps 300]
    python docs/make_screenshots.py --compare MODEL.safetensors

The third form runs the bundled ``sr`` and then MODEL on the sr sample, then the bundled ``sr`` again, and saves
the window with the two models' result layers, each set named after its model (``gui_compare_models.png``).

The second form opens Plugins > CVDM > Fine-tune instead, fine-tunes the bundled
``sr`` model on the pairs in DIR (inputs/ + targets/) and saves a screenshot
mid-training (loss plot visible) and the model file.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import time
from pathlib import Path


def ensure_display() -> subprocess.Popen | None:
    """Start Xvfb on :97 when no X display is set (napari needs OpenGL)."""
    if os.environ.get("DISPLAY"):
        return None
    if shutil.which("Xvfb") is None:
        raise SystemExit("no display and no Xvfb: install xvfb or run on a desktop")
    proc = subprocess.Popen(
        ["Xvfb", ":97", "-screen", "0", "1600x1000x24"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    os.environ["DISPLAY"] = ":97"
    time.sleep(1.5)
    return proc


def wait_for(widget, app, timeout_s: float = 900) -> float:
    """Process Qt events until the widget's run has finished; return its wall time."""
    t0 = time.perf_counter()
    while widget.worker is not None:
        app.processEvents()
        time.sleep(0.02)
        if time.perf_counter() - t0 > timeout_s:
            raise TimeoutError("the reconstruction did not finish")
    for _ in range(20):
        app.processEvents()
        time.sleep(0.02)
    return time.perf_counter() - t0


def shoot(task: str, sample_key: str, input_name: str, shown: list[str], samples: int, out: Path) -> None:
    import napari
    from qtpy.QtWidgets import QApplication

    viewer = napari.Viewer(show=True)
    viewer.window.resize(1500, 900)
    viewer.open_sample("napari-cvdm", sample_key)
    _, widget = viewer.window.add_plugin_dock_widget("napari-cvdm", "Reconstruct")
    app = QApplication.instance()
    widget.model_box.setCurrentText(task)
    widget.layer_box.setCurrentText(input_name)
    widget.samples_spin.setValue(samples)
    widget.schedule_check.setChecked(True)
    t0 = time.perf_counter()
    widget.run()
    # a frame mid-run shows the progress bar, the time left and the first running mean (progressive sampling)
    first = f"{input_name} CVDM mean"
    while widget.worker is not None and first not in viewer.layers:
        app.processEvents()
        time.sleep(0.02)
    first_s = time.perf_counter() - t0
    for _ in range(10):
        app.processEvents()
        time.sleep(0.02)
    widget.grab().save(str(out / f"gui_{task}_widget_running.png"))
    viewer.screenshot(str(out / f"gui_{task}_viewer_running.png"), canvas_only=False)
    wait_for(widget, app)
    print(
        f"{task}: Run → first running mean in {first_s:.1f} s, final layers in {time.perf_counter() - t0:.1f} s "
        f"({samples} samples, {widget.steps_spin.value()} steps); status: {widget.status.text()}"
    )
    for layer in viewer.layers:
        layer.visible = layer.name in shown
    viewer.canvas.grid.enabled = True
    viewer.canvas.grid.stride = 1
    viewer.reset_view()
    for _ in range(30):
        app.processEvents()
        time.sleep(0.02)
    viewer.screenshot(str(out / f"gui_{task}_viewer.png"), canvas_only=False)
    widget.grab().save(str(out / f"gui_{task}_widget.png"))
    viewer.close()


def shoot_comparison(model_file: Path, samples: int, out: Path) -> None:
    """The bundled ``sr``, ``model_file`` and the bundled ``sr`` again on the sr sample: two named result sets."""
    import napari
    from qtpy.QtWidgets import QApplication

    viewer = napari.Viewer(show=True)
    viewer.window.resize(1280, 800)
    viewer.open_sample("napari-cvdm", "sr")
    viewer.layers.remove("SIM-like target")
    _, widget = viewer.window.add_plugin_dock_widget("napari-cvdm", "Reconstruct")
    app = QApplication.instance()
    bundled = widget.model_box.findData("sr")
    widget.add_model_file(model_file)
    other = widget.model_box.currentIndex()
    widget.samples_spin.setValue(samples)
    for index in (bundled, other, bundled):
        widget.model_box.setCurrentIndex(index)
        widget.layer_box.setCurrentText("widefield")
        widget.run()
        wait_for(widget, app)
    print("layers after three runs of two models:", [layer.name for layer in viewer.layers])
    viewer.canvas.grid.enabled = True
    for layer in viewer.layers:
        layer.visible = layer.name == "widefield" or layer.name.endswith(" mean")
    viewer.reset_view()
    for _ in range(30):
        app.processEvents()
        time.sleep(0.02)
    viewer.screenshot(str(out / "gui_compare_models.png"), canvas_only=False)
    viewer.close()


def shoot_finetune(pairs: Path, output_model: Path, steps: int, out: Path) -> None:
    import napari
    from qtpy.QtWidgets import QApplication

    viewer = napari.Viewer(show=True)
    viewer.window.resize(1500, 1000)
    _, widget = viewer.window.add_plugin_dock_widget("napari-cvdm", "Fine-tune")
    app = QApplication.instance()
    widget.start_box.setCurrentText("sr")
    widget.source_box.setCurrentIndex(1)
    widget.pages.folder_edit.setText(str(pairs))
    widget.settings.steps_spin.setValue(steps)
    widget.settings.lr_spin.setValue(2e-4)
    widget.settings.val_every_spin.setValue(50)
    t0 = time.perf_counter()
    widget.start()
    shot = False
    while widget.worker is not None:
        app.processEvents()
        time.sleep(0.02)
        if not shot and len(widget.plots.psnrs) >= 3:
            viewer.reset_view()
            for _ in range(10):
                app.processEvents()
            viewer.screenshot(str(out / "gui_finetune_viewer.png"), canvas_only=False)
            widget.grab().save(str(out / "gui_finetune_widget.png"))
            shot = True
    print(f"fine-tune: {widget.status.text()} (wall {time.perf_counter() - t0:.0f} s)")
    print("validation PSNR by step: " + ", ".join(f"{s}: {p:.2f}" for s, p in widget.plots.psnrs))
    widget.save(output_model)
    viewer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "images")
    parser.add_argument("--finetune-pairs", type=Path, default=None)
    parser.add_argument("--finetune-output", type=Path, default=Path("finetuned-sr.safetensors"))
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--compare", type=Path, default=None)
    args = parser.parse_args()
    args.output.mkdir(parents=True, exist_ok=True)
    xvfb = ensure_display()
    try:
        if args.finetune_pairs is not None:
            shoot_finetune(args.finetune_pairs, args.finetune_output, args.steps, args.output)
            return
        if args.compare is not None:
            shoot_comparison(args.compare, args.samples, args.output)
            return
        shoot(
            "sr",
            "sr",
            "widefield",
            ["widefield", "widefield CVDM mean", "widefield CVDM std", "SIM-like target", "widefield CVDM residual"],
            args.samples,
            args.output,
        )
        shoot(
            "qpi",
            "qpi",
            "brightfield ±1 µm",
            [
                "brightfield ±1 µm",
                "brightfield ±1 µm CVDM mean",
                "brightfield ±1 µm CVDM std",
                "phase (ground truth)",
                "brightfield ±1 µm CVDM residual",
            ],
            args.samples,
            args.output,
        )
    finally:
        if xvfb is not None:
            xvfb.terminate()


if __name__ == "__main__":
    main()
