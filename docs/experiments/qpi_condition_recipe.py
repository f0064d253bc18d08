"""A qpi model file with the same weights and another retrieval recipe to make their phase channel.

``today``: the retrieval as `--model flat-background` runs it (each pair weighed by its own noise, run until it
stalls, flattened on the background) instead of the recipe recorded when the model was trained (a fixed σ of 0.01,
one L-BFGS run that ends after about 20 iterations).
``transparent``: the recorded recipe, and for nearly transparent pairs a longer fit, run until its misfit stalls
(`napari_cvdm.tasks.qpi_recipes`); how the bundled file was made.

The network's correction is small next to the retrieval it is added to, so the better retrieval carries over;
calibrate the file again afterwards (`napari-cvdm calibrate`), since its samples' spread changes with it.

    python docs/experiments/qpi_condition_recipe.py MODEL OUTPUT [today|transparent]   # MODEL: qpi or a file
"""

import sys
from pathlib import Path

from napari_cvdm.inference.model_files import _read_metadata, write_model_file
from napari_cvdm.inference.models import load_model
from napari_cvdm.tasks.qpi_condition import flat_background_recipe
from napari_cvdm.tasks.qpi_recipes import with_transparent_fit


def main(model_name: str, output: Path, kind: str = "today") -> None:
    model = load_model(model_name)
    meta = _read_metadata(model.path)
    recorded = meta["normalization"]["retrieval"]
    if recorded is None or not recorded.get("flat_background"):
        raise SystemExit(f"{model_name}: not conditioned on the flat-background retrieval")
    new = {"today": lambda: flat_background_recipe(model.optics), "transparent": lambda: with_transparent_fit(recorded)}
    if kind not in new:
        raise SystemExit(f"unknown recipe {kind!r}: today or transparent")
    meta["normalization"]["retrieval"] = new[kind]()
    meta["name"] = output.stem
    meta.pop("calibration", None)  # the samples' spread changes with the condition: calibrate again
    meta["training"] = {**meta["training"], "condition_recipe_before": recorded}
    write_model_file(output, model.network, meta)
    print(f"{output}: retrieval recipe {recorded} -> {meta['normalization']['retrieval']}")


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), *sys.argv[3:4])
