"""The estimated PSNR against the truth, plane by plane, on smooth 16-bit stacks (issue 29's report).

    python benchmarks/estimate_check.py [--sigmas 5,25] [--json PATH]

Each case: 6 planes of 128² (a smooth field drifting by a pixel a plane, values in 22–44 % of the 16-bit
range), Gaussian noise σ (in 0…255 units of the full range), restored by the default with warm starts between
planes (the `fast` default) and without. Per plane: the true PSNR, the estimate the run gives (withheld where
the estimated MSE is within two standard errors of the noise variance, job.resolvable_mse) and the estimate it
would give without that rule. Quality only: the seconds do not matter here.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def stack(sigma: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    base = ndimage.gaussian_filter(rng.random((160, 160)), 4)
    base = (base - base.min()) / np.ptp(base)
    clean = (0.22 + 0.22 * np.stack([base[p:p + 128, p:p + 128] for p in range(6)])) * 65535
    noisy = np.clip(np.round(clean + rng.normal(0, sigma / 255 * 65535, clean.shape)), 0, 65535)
    return clean.astype(np.float32), noisy.astype(np.uint16)


def case(sigma: float, warm_start: bool) -> list[dict]:
    import napari_dip
    from napari_dip.core.quality import estimated_psnr
    from napari_dip.job import RESOLVED_SE

    clean, noisy = stack(sigma)
    result = napari_dip.restore(noisy, ground_truth=clean, warm_start=warm_start)
    record = result.record.as_dict()
    rows = []
    for unit, quality in zip(record["units"], record["quality"]["units"]):
        estimate = unit["noise_estimate"]
        rmse = quality.get("estimated_rmse")
        peak = float(np.ptp(result.image[unit["plane"]]))  # as the run's own estimate takes it
        span = estimate["sigma"] / estimate["sigma_normalised"]  # the normalisation's span: input units per unit
        floor = RESOLVED_SE * estimate["variance_relative_se"] * estimate["sigma"] ** 2 / span ** 2
        rows.append({"plane": unit["plane"], "started_from": unit["started_from"],
                     "true_psnr": round(unit["metrics"]["psnr"], 2),
                     "estimated_psnr": quality["estimated_psnr"] and round(quality["estimated_psnr"], 2),
                     "without_the_rule": None if not rmse else round(estimated_psnr(rmse ** 2, peak), 2),
                     "estimated_mse_over_floor": None if not rmse else round(rmse ** 2 / span ** 2 / floor, 2)})
        print(json.dumps(dict(rows[-1], sigma=sigma, warm_start=warm_start)), flush=True)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sigmas", default="5,25")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "estimate_check.json"))
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    rows = [{"sigma": float(s), "warm_start": warm, "planes": case(float(s), warm)}
            for s in args.sigmas.split(",") for warm in (True, False)]
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump({"command": " ".join(["python"] + sys.argv), "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
