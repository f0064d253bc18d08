#!/bin/bash
# The prepared GPU check of issue 7, for a session that is lent a GPU machine (device tool, repository root):
#   run(command="bash docs/gpu_check.sh", timeout_s=480)
# The machine has torch, safetensors, tifffile, scipy and scikit-image but no network: the core runs from src/.
set -euo pipefail
export PYTHONPATH="$PWD/src"
cvdm() { python3 -m napari_cvdm "$@"; }
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(), flush=True)"
cvdm demo --device cuda --output-dir "${OUT:-/tmp}/demo"                 # the predict path on CUDA, PSNR as on CPU?
cvdm bench --device cuda --model sr --size 512 --samples 8              # the 512² job of docs/performance.md
cvdm bench --device cuda --model sr --size 2048 --samples 8             # a large image without tiles
cvdm bench --device cuda --model qpi --size 512 --samples 8
cvdm bench --device cuda --preset sr3 --size 256 --samples 8 --steps 4  # beside the reference figures
cvdm bench --device cuda --model sr --size 512 --samples 8 --compile    # torch.compile: worth it here?
