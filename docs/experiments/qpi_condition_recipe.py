"""A qpi model file conditioned on today's retrieval: the same weights, the retrieval that makes their phase channel
as `--model flat-background` runs it (each pair weighed by its own noise, run until it stalls, flattened on the
background) instead of the recipe recorded when the model was trained (a fixed σ of 0.01, 100 iterations).
The network's correction is small next to the retrieval it is added to, so the better retrieval carries over;
calibrate the file again afterwards (`napari-cvdm calibrate`), since its samples' spread changes with it.

    python docs/experiments/qpi_condition_recipe.py MODEL OUTPUT   # MODEL: qpi or a model file
"""

import sys
from pathlib import Path

from napari_cvdm.inference.model_files import _read_metadata, write_model_file
from napari_cvdm.inference.models import load_model
from napari_cvdm.tasks.qpi_condition import flat_background_recipe


def main(model_name: str, output: Path) -> None:
    model = load_model(model_name)
    meta = _read_metadata(model.path)
    recorded = meta["normalization"]["retrieval"]
    if recorded is None or not recorded.get("flat_background"):
        raise SystemExit(f"{model_name}: not conditioned on the flat-background retrieval")
    today = flat_background_recipe(model.optics)
    meta["normalization"]["retrieval"] = today
    meta["name"] = output.stem
    meta.pop("calibration", None)  # the samples' spread changes with the condition: calibrate again
    meta["training"] = {**meta["training"], "condition_recipe_before": recorded}
    write_model_file(output, model.network, meta)
    print(f"{output}: retrieval recipe {recorded} -> {today}")


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
