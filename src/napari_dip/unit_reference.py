"""The classical estimate that a unit's result may be mixed with (core/reference.py makes it; core/mixing.py
mixes it in with the weight the held-out pixels choose)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .core import data

if TYPE_CHECKING:
    from .job import UnitJob


def classical_estimate(job: UnitJob, heldout, meas_pads, out_pads):
    """The classical estimate to mix into the result (core/reference.py), if the settings ask.

    Returns (the estimate from every measured pixel, the same without the held-out pixels' values, a note for the
    record), padded like the network's output; the estimates are None, and the note says why, where none is used.
    """
    import torch

    from .core import reference
    from .core.operators import BlurOperator, IdentityOperator

    method = job.spec.settings.mix_with
    if method is None:
        return None, None, None
    operator = job.spec.operator
    deconvolving = method == "richardson-lucy"
    if heldout is None or not isinstance(operator, BlurOperator if deconvolving else IdentityOperator):
        needs = "a blur alone (the deconvolve task)" if deconvolving else "no resampling or blur in the task"
        return None, None, {"used": False, "method": method, "why": f"needs automatic stopping, and {needs}"}
    plane = job.planes[0]
    known = job.known[0] if job.known is not None else np.ones((1,) + plane.shape[1:], np.float32)
    excluded = data.crop(heldout.numpy(), meas_pads)[0]
    note = {"used": True, "method": method}
    if deconvolving:
        reach = min(operator.psf_array.shape) // 2
        if job.known is not None and reference.gap_distances(known).max(initial=0.0) > reach:
            # Richardson–Lucy knows nothing of a pixel that no measurement's blur reaches: it would stay dark
            return None, None, dict(note, used=False, why=(
                f"some missing pixels lie farther than the PSF reaches ({reach} px) from a measured pixel"))
        *estimates, note["iterations"] = reference.richardson_lucy(plane, known, excluded, operator.psf_array)
    elif method == "biharmonic":
        gap = reference.mean_gap_distance(known)
        note["gap_distance"] = round(gap, 2)
        if job.known is None:
            return None, None, dict(note, used=False, why="no pixel is missing")
        if gap > reference.MAX_SCATTERED_GAP:
            return None, None, dict(note, used=False, why=(
                f"the gaps are wide (mean distance to a measured pixel {gap:.1f} px, more than "
                f"{reference.MAX_SCATTERED_GAP:g}): held-out pixels cannot judge a fill there"))
        estimates = [reference.biharmonic_fill(plane, k) for k in (known, known * (1.0 - excluded))]
    else:
        gaussian = reference.block_matching if method == "block-matching" else reference.nl_means
        noise, estimate = job.spec.noise, job.noise_estimate

        def denoise(x, hidden):
            if noise == "speckle":  # the denoiser inside the speckle likelihood, in the log domain
                return reference.speckle_block_matching(x, 1.0 - hidden, float(estimate["looks"]),
                                                        job.normalisation.span, gaussian)
            return reference.under_noise(gaussian, noise, estimate.get("sigma_normalised"),
                                         estimate.get("photons_at_1"))(x)

        unmeasured = 1.0 - known
        estimates = [denoise(reference.neighbour_mean_fill(plane, hidden), hidden)
                     for hidden in (unmeasured, np.maximum(unmeasured, excluded))]
        if job.spec.noise == "speckle":
            note["how"] = "in the speckle likelihood, on the logarithm (MuLoG's plug-and-play ADMM)"
    padded = [torch.from_numpy(data.pad_reflect(e[None], out_pads)) for e in estimates]
    return padded[0], padded[1], note
