"""Time to the first running mean (2 of 8 samples) and to all 8 on the sr sample data, as Reconstruct asks for them
(``predict_with``, progressive, the model's default steps), on 2 threads.

    NAPARI_CVDM_FP32=1 python docs/experiments/first_running_mean.py
"""

import time

import torch

from napari_cvdm import load_model
from napari_cvdm._sample_data import sr_sample
from napari_cvdm.inference.predict import SamplingOptions, SamplingProgress

torch.set_num_threads(2)
image = sr_sample()[0][0]
model = load_model("sr")
seen: list[tuple[int, float]] = []


def report(p: SamplingProgress) -> bool:
    if p.partial is not None:
        seen.append((p.partial.done, time.perf_counter() - t0))
    return True


t0 = time.perf_counter()
model.predict_with(image, SamplingOptions(n_samples=8, progressive=True), report)
total = time.perf_counter() - t0
print(f"first running mean ({seen[0][0]} samples) {seen[0][1]:.1f} s; all 8 at {total:.1f} s; rounds {seen}")
