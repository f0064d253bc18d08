#!/usr/bin/env bash
# The bundled sr at the corners of the optics range (pixel 40/130 nm × NA 0.8/1.49 × emission 450/680 nm) and at
# its own optics: held-out scenes simulated at each optics, the model mapped onto them by physics similarity,
# beside bicubic and Richardson–Lucy (iterations tuned on validation scenes at the same optics).
#   bash docs/experiments/sr_corners.sh [N_PER_CLASS [MODEL [SIZE [STEPS]]]] > corners.txt
# (MODEL: default the bundled sr; SIZE: the input side in pixels, default the task's 64; STEPS: sampling steps,
# default the model's)
set -euo pipefail
n=${1:-3}
model=${2:-sr}
size=${3:-64}
common=(--model "$model" --classes microtubules ccps er actin --n-per-class "$n" --samples 8 --tune-baselines --size "$size")
if [ -n "${4:-}" ]; then common+=(--steps "$4"); fi
echo "== own optics (NA 1.3, 525 nm, 62.6 nm)"
napari-cvdm evaluate "${common[@]}"
for px in 0.04 0.13; do
  for na in 0.8 1.49; do
    for wl in 0.45 0.68; do
      echo "== pixel $px um, NA $na, emission $wl um"
      napari-cvdm evaluate "${common[@]}" --pixel-size "$px" --na "$na" --wavelength "$wl"
    done
  done
done
