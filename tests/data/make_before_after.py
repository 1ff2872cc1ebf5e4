"""Writes before_after.npz: small restorations whose results must not change when the engine is only reorganised.

Run it with the engine before a reorganisation (e.g. ``PYTHONPATH=<old checkout>/src python
tests/data/make_before_after.py``); ``tests/test_before_after.py`` then checks the reorganised engine against it.
One torch thread, as in the test suite.
"""

import os
import sys

import numpy as np
import torch

TINY = dict(network_down=(8, 16), network_up=(8, 16), network_skip=(2, 2), input_channels=4)
LIGHT = dict(network_channels=8, network_head_channels=4)


def image(seed=0, side=32):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:side, :side]
    clean = 100 + 80 * np.sin(x / 4.0) * np.cos(y / 5.0)
    return clean, rng


def cases():
    """Name → (restore arguments, restore keyword arguments)."""
    clean, rng = image()
    noisy = (clean + rng.normal(0, 20, clean.shape)).astype(np.float32)
    counts = rng.poisson(clean / 20).astype(np.float32)
    holes = clean.astype(np.float32).copy()
    mask = rng.random(clean.shape) < 0.3
    small = clean[::2, ::2].astype(np.float32)
    big, _ = image(side=56)
    frame = (big + rng.normal(0, 20, big.shape)).astype(np.float32)
    stack = np.stack([clean * (1.0 + 0.1 * k) + rng.normal(0, 20, clean.shape) for k in range(4)]).astype(np.float32)
    # settings added since the fixture was written, at the values that give the engine of then
    common = dict(seed=0, device="cpu", tile_size=None, stop_margin=0.0)
    return {
        # automatic stop with the non-local-means mix, coarse-to-fine, two members
        "denoise_fast": ((noisy, "denoise"), dict(common, iterations=120, stop_patience=20, mix_with="nl-means",
                                                  **LIGHT)),
        "denoise_poisson": ((counts, "denoise"), dict(common, noise="poisson", iterations=80, mix_with="nl-means",
                                                      **LIGHT)),
        # ES-WMV and backtracking on the skip network, EMA of outputs
        "denoise_es_wmv": ((noisy, "denoise"), dict(common, preset="paper", iterations=60, auto_stop=False,
                                                    early_stopping=True, es_window=5, es_patience=10, **TINY)),
        "inpaint_fast": ((holes, "inpaint"), dict(common, mask=mask, iterations=60, **TINY)),
        "superres_fast": ((small, "superres"), dict(common, factor=2, iterations=60, **LIGHT)),
        # mix_with=None: the network's result, as written (Richardson–Lucy is mixed in by default since)
        "deconvolve_cosine": ((noisy, "deconvolve"), dict(common, psf_sigma=1.0, iterations=60, mix_with=None,
                                                          lr_schedule="cosine-tail", **LIGHT)),
        # through the executor's tiles (2 × 2, blended) and its units: added with the engine of commit 166e279
        "tiled_2x2": ((frame, "denoise"), dict(common, tile_size=32, overlap=8, iterations=40, **LIGHT)),
        # a 4-plane stack, each plane warm-started from the one before (in one process: with two worker processes
        # identical runs differed by up to 0.005 intensity units, 1 run in 5, so no fixed result can be checked)
        "stack_warm": ((stack, "denoise"), dict(common, warm_start=True, workers=1, iterations=40, **LIGHT)),
    }


def results():
    import napari_dip

    torch.set_num_threads(1)
    return {name: napari_dip.restore(*args, **kwargs).image for name, (args, kwargs) in cases().items()}


if __name__ == "__main__":
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "before_after.npz")
    np.savez_compressed(out, **results())
    print("wrote", out, file=sys.stderr)
