"""PSNR and SSIM of a result against a ground truth (the truth's range is the peak): of an image, a plane, a
unit and a whole stack."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .core import data

if TYPE_CHECKING:
    from .job import UnitJob


def metric_pair(result, truth, channel_axis, ssim: bool = True) -> dict:
    """PSNR (and SSIM) of ``result`` against ``truth``, with the truth's range as the peak."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    data_range = float(truth.max() - truth.min()) or 1.0
    with np.errstate(divide="ignore"):
        psnr = peak_signal_noise_ratio(truth, result, data_range=data_range)
    psnr = None if not np.isfinite(psnr) else float(psnr)  # identical images: JSON has no infinity
    if not ssim:
        return {"psnr": psnr}
    min_side = min(truth.shape[-2:]) if channel_axis is None else min(
        s for i, s in enumerate(truth.shape) if i != channel_axis % truth.ndim)
    win = min(7, min_side if min_side % 2 else min_side - 1)
    similarity = structural_similarity(truth, result, data_range=data_range, channel_axis=channel_axis,
                                       win_size=win)
    return {"psnr": psnr, "ssim": float(similarity)}


def plane_metric_pair(result, truth, ssim: bool = True) -> dict:
    """PSNR/SSIM (or PSNR alone) of one plane (C, *spatial) against the truth's; volumes: the first channel."""
    if result.ndim == 3:
        return metric_pair(result, truth, 0, ssim)
    return metric_pair(result[0], truth[0], None, ssim)


def unit_metrics(result, job: UnitJob, ssim: bool = True) -> dict:
    """PSNR/SSIM (or PSNR alone) of a unit's result (C, *spatial) against its ground truth."""
    truth = data.PlaneLayout(job.ground_truth.shape, job.layout.channel_axis,
                             job.layout.spatial_dims).to_planes(job.ground_truth)[0]
    return plane_metric_pair(result, truth, ssim)


def whole_metric_pair(result, truth, layout: data.PlaneLayout) -> dict:
    """PSNR of a whole result against the truth, and SSIM: of the image, or the mean over a stack's planes."""
    if layout.planes == 1:
        return metric_pair(result, truth, layout.channel_axis)
    out_layout = data.PlaneLayout(truth.shape, layout.channel_axis, layout.spatial_dims)
    pairs = [plane_metric_pair(r, t) for r, t in zip(out_layout.to_planes(result), out_layout.to_planes(truth))]
    return {"psnr": metric_pair(result, truth, None, ssim=False)["psnr"],
            "ssim": float(np.mean([p["ssim"] for p in pairs]))}
