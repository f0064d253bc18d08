#!/bin/bash
# Checks napari-cvdm on a CUDA GPU: that the demo reconstructs on the GPU with the PSNR it reaches on a CPU, and
# how fast sampling is there (the bench figures of docs/performance.md: a 512² and a 2048² input with 8 samples,
# the qpi model, the paper-sized SR3 network, and torch.compile). Output directory for the demo: $OUT (default /tmp).
set -euo pipefail
cvdm() { python3 -m napari_cvdm "$@"; }
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(), flush=True)"
cvdm demo --device cuda --output-dir "${OUT:-/tmp}/demo"
cvdm bench --device cuda --model sr --size 512 --samples 8
cvdm bench --device cuda --model sr --size 2048 --samples 8
cvdm bench --device cuda --model qpi --size 512 --samples 8
cvdm bench --device cuda --preset sr3 --size 256 --samples 8 --steps 4
cvdm bench --device cuda --model sr --size 512 --samples 8 --compile
