"""Radar speckle: the default restoration against the classical despecklers, with and without a reference.

    python benchmarks/speckle.py [--side 192] [--cases camera,moon] [--looks 1,2,4] [--real FILE --real-looks 1]

Synthetic speckle (core/speckle.py ``simulate``: Gamma intensity speckle of 1, 2 and 4 looks, amplitude data; and
intensity data at one look) on clean scenes of three kinds: a photo (``camera``), smooth regions (``moon``;
``fields``, piecewise-smooth parcels as in farmland seen from above) and texture (``brick``; ``grass``, aerial-like).
The clean image is the amplitude (or intensity) without speckle, kept in 10–100 as backscatter is never 0. Per case,
PSNR against it (its range as the peak) of:

* the speckled input; a **Lee filter** (7 × 7 local statistics, the field's habit);
* the **homomorphic** method: the log of the intensity less the log-speckle's mean, BM3D (the ``bmnd`` package)
  with the log-speckle's known spread, exponential back;
* **BM3D in the likelihood** (core/reference.py ``speckle_block_matching``, MuLoG's plug-and-play ADMM): the
  classical estimate the default mixes in;
* the **default** (``restore(noise='speckle')``, looks estimated, the held-out pixels choosing when to stop and how
  much of the network to mix in), its seconds, its **oracle** (the best snapshot against the clean image, snapshots
  every 50 iterations) and the network's weight in the mix.

No-reference measures, for real data where there is no clean image (checked here on synthetic data, where the truth
is known: the row ``truth`` takes the clean image as the restoration): the ratio image ``observed / restored`` (mean
and coefficient of variation beside pure speckle's: too low a CV is speckle left in the result, too high is
structure taken out of it), the **structure** left in the ratio (the variance of its 8 × 8 block means of log over
what white speckle gives: 1 for none), the **equivalent number of looks** of the result's most homogeneous 24² block
and the **edge preservation**: the correlation of the input's and the result's ratio-of-averages edge maps (5-pixel
means on either side, the edge detector speckle does not fool). Against the input it also rewards speckle kept (the
Lee filter scores above the truth itself), so on synthetic data ``edges_truth`` scores the same against the clean
image.

``--real FILE`` restores a real speckled image (amplitude, or ``--kind intensity``) and reports the no-reference
measures for it and for the references. Writes results/speckle.json. Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import images  # noqa: E402

from napari_dip.core import reference, speckle  # noqa: E402
from napari_dip.core.data import fit_log_normalisation  # noqa: E402

KINDS = {"camera": "photo", "moon": "smooth", "fields": "smooth", "brick": "texture", "grass": "texture"}


def fields(side: int, seed: int = 0) -> np.ndarray:
    """Parcels of farmland from above: Voronoi cells of random brightness, each with a gentle slope, edges softened
    by one pixel; values in 0…1."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, side, (24, 2))
    yy, xx = np.mgrid[0:side, 0:side]
    distance = (yy[..., None] - centres[:, 0]) ** 2 + (xx[..., None] - centres[:, 1]) ** 2
    cell = distance.argmin(-1)
    level, slope = rng.uniform(0.1, 1.0, 24), rng.normal(0, 0.15 / side, (24, 2))
    image = level[cell] + slope[cell, 0] * (yy - side / 2) + slope[cell, 1] * (xx - side / 2)
    return np.clip(ndimage.gaussian_filter(image, 1.0), 0, 1)


def clean_scene(name: str, side: int) -> np.ndarray:
    """The clean amplitude (or intensity) in 10…100."""
    image = fields(side) if name == "fields" else images.load(name, side, gray=True) / 255.0
    image = (image - image.min()) / max(np.ptp(image), 1e-9)
    return (10.0 + 90.0 * image).astype(np.float32)


def lee(noisy: np.ndarray, looks: float, kind: str, window: int = 7) -> np.ndarray:
    """Lee's filter: the local mean plus a share of the pixel's departure from it, the share falling to 0 where
    the local spread is no more than the speckle's."""
    from scipy import ndimage

    x = noisy.astype(np.float64)
    mean = ndimage.uniform_filter(x, window)
    variance = np.maximum(ndimage.uniform_filter(x * x, window) - mean ** 2, 0)
    noise_cv2 = speckle.ratio_cv(looks, kind) ** 2
    local_cv2 = variance / np.maximum(mean ** 2, 1e-12)
    share = np.clip((1 - noise_cv2 / np.maximum(local_cv2, 1e-12)) / (1 + noise_cv2), 0, 1)
    return (mean + share * (x - mean)).astype(np.float32)


def log_units(noisy: np.ndarray, looks: float, kind: str):
    """The data in the network's units (data.LogNormalisation), with their normalisation."""
    bias, _ = speckle.log_moments(looks)
    planes = noisy[None, None].astype(np.float64)
    norm = fit_log_normalisation(planes, np.zeros(planes.shape, bool), speckle.POWER[kind], bias)
    return norm.forward(noisy)[None], norm


def homomorphic(noisy: np.ndarray, looks: float, kind: str) -> np.ndarray:
    units, norm = log_units(noisy, looks, kind)
    _, variance = speckle.log_moments(looks)
    return norm.inverse(reference.block_matching(units, np.sqrt(variance) / norm.span)[0])


def in_likelihood(noisy: np.ndarray, looks: float, kind: str) -> np.ndarray:
    units, norm = log_units(noisy, looks, kind)
    return norm.inverse(reference.speckle_block_matching(units, np.ones_like(units), looks, norm.span,
                                                         reference.block_matching)[0])


def ratio_structure(noisy, restored, looks, kind, block: int = 8) -> float:
    """Variance of the log ratio's block means over white speckle's (ψ′(L) / power² / block²): 1 when the ratio has
    no structure."""
    log_ratio = np.log(np.maximum(noisy, 1e-12) / np.maximum(restored, 1e-12))
    h, w = (np.array(log_ratio.shape) // block) * block
    means = log_ratio[:h, :w].reshape(h // block, block, w // block, block).mean(axis=(1, 3))
    _, variance = speckle.log_moments(looks)
    return float(means.var() / (variance / speckle.POWER[kind] ** 2 / block ** 2))


def roa_edges(image: np.ndarray, width: int = 5) -> np.ndarray:
    """Edge strength by the ratio of averages (Touzi et al., 1988), the edge detector that speckle does not fool:
    per pixel, the larger over both axes of |log| of the ratio of the means of ``width`` pixels on either side."""
    from scipy import ndimage

    x = np.maximum(np.asarray(image, np.float64), 1e-12)
    strengths = []
    for axis in (0, 1):
        mean = ndimage.uniform_filter1d(x, width, axis=axis, mode="reflect")
        before = np.roll(mean, (width + 1) // 2, axis=axis)
        after = np.roll(mean, -((width + 1) // 2), axis=axis)
        strengths.append(np.abs(np.log(before / after)))
    return np.maximum(*strengths)[width:-width, width:-width]


def edge_preservation(noisy, restored) -> float:
    """How well the result keeps the input's edges: the correlation of their ratio-of-averages edge maps (1: the
    same edges; a result that blurs or moves edges, or adds speckle-like ones, scores lower)."""
    return float(np.corrcoef(roa_edges(noisy).ravel(), roa_edges(restored).ravel())[0, 1])


def no_reference(noisy, restored, looks, kind) -> dict:
    stats = speckle.ratio_statistics(noisy, restored, looks, kind)
    return {"ratio_mean": round(stats["ratio_mean"] / stats["ratio_mean_theory"], 3),
            "ratio_cv": round(stats["ratio_cv"] / stats["ratio_cv_theory"], 3),
            "structure": round(ratio_structure(noisy, restored, looks, kind), 2),
            "enl": round(speckle.equivalent_looks(speckle.intensity(restored, kind)), 1),
            "edges": round(edge_preservation(noisy, restored), 3)}


def default_run(noisy, looks_given, kind, truth=None):
    """The default restoration: (result, seconds, oracle PSNR or None, network weight, record)."""
    import napari_dip

    started = time.perf_counter()
    run = napari_dip.restore_iter(noisy, noise="speckle", speckle=kind, looks=looks_given, ground_truth=truth,
                                  snapshot_every=50)
    oracle = None
    for snapshot in run:
        current = snapshot.metrics.get("psnr_current", snapshot.metrics.get("psnr"))
        if current is not None:
            oracle = current if oracle is None else max(oracle, current)
    seconds = time.perf_counter() - started
    record = run.result.record.as_dict()
    weight = (record.get("quality", {}).get("mixed_with") or {}).get("network_weight")
    return run.result.image, seconds, oracle, weight, record


def synthetic(args) -> list[dict]:
    rows = []
    cases = [(name, looks, "amplitude") for name in args.cases for looks in args.looks]
    cases += [(name, 1, "intensity") for name in args.intensity_cases]
    for name, looks, kind in cases:
        clean = clean_scene(name, args.side)
        noisy = speckle.simulate(clean, looks, kind, np.random.default_rng(looks))
        peak = float(np.ptp(clean))
        row = {"case": name, "kind": KINDS[name], "looks": looks, "data": kind,
               "psnr": {"input": images.psnr(clean, noisy, peak)}}
        estimates = {"truth": clean}
        for method, function in (("lee", lee), ("homomorphic", homomorphic), ("likelihood_bm3d", in_likelihood)):
            started = time.perf_counter()
            estimates[method] = function(noisy, looks, kind)
            row.setdefault("seconds", {})[method] = round(time.perf_counter() - started, 1)
            row["psnr"][method] = images.psnr(clean, estimates[method], peak)
        result, seconds, oracle, weight, record = default_run(noisy, None, kind, clean)
        estimates["default"] = result
        row["psnr"]["default"], row["psnr"]["oracle"] = images.psnr(clean, result, peak), oracle
        row["seconds"]["default"] = round(seconds, 1)
        row["network_weight"] = weight
        row["looks_estimated"] = record["parameters"]["speckle"]["looks"]
        taught = record.get("amortised") or {}
        if taught.get("choice"):  # a large scene is taught once: what the judge said and what was mixed in
            row["amortised"] = dict({k: taught.get(k) for k in ("choice", "rounds", "mixed_with")},
                                    teacher_network_weights=[(u.get("mixed_with") or {}).get("network_weight")
                                                             for u in taught.get("teacher_units", [])])
        row["no_reference"] = {m: no_reference(noisy, e, looks, kind) for m, e in estimates.items()}
        for method, estimate in estimates.items():  # the edges against the truth's, where there is one
            row["no_reference"][method]["edges_truth"] = round(edge_preservation(clean, estimate), 3)
        row["psnr"] = {k: None if v is None else round(v, 2) for k, v in row["psnr"].items()}
        rows.append(row)
        print(f"{name:7s} {kind:9s} L={looks}  input {row['psnr']['input']:6.2f}  Lee {row['psnr']['lee']:6.2f}  "
              f"homomorphic {row['psnr']['homomorphic']:6.2f}  BM3D-likelihood {row['psnr']['likelihood_bm3d']:6.2f}"
              f"  default {row['psnr']['default']:6.2f} (oracle {row['psnr']['oracle']}, {seconds:.0f} s, "
              f"network weight {weight if weight is None else round(weight, 2)}, looks {row['looks_estimated']})",
              flush=True)
        for method, measures in row["no_reference"].items():
            print(f"        {method:16s} {measures}", flush=True)
    return rows


def summary(rows: list[dict]) -> dict:
    """Mean gain of the default over the homomorphic method: over the grid, per kind of scene, per looks."""
    def gain(selected):
        gains = [r["psnr"]["default"] - r["psnr"]["homomorphic"] for r in selected]
        return round(float(np.mean(gains)), 2) if gains else None

    out = {"all": gain(rows)}
    for kind in sorted({r["kind"] for r in rows}):
        out[kind] = gain([r for r in rows if r["kind"] == kind])
    for looks in sorted({r["looks"] for r in rows}):
        out[f"{looks} looks"] = gain([r for r in rows if r["looks"] == looks])
    return out


def real(args) -> dict:
    from napari_dip.io import read_image

    noisy = read_image(args.real)[0].astype(np.float32)
    if np.iscomplexobj(noisy):
        noisy = np.abs(noisy)
    result, seconds, _, weight, record = default_run(noisy, args.real_looks, args.kind)
    looks = record["parameters"]["speckle"]["looks"]
    estimates = {"default": result, "lee": lee(noisy, looks, args.kind),
                 "homomorphic": homomorphic(noisy, looks, args.kind),
                 "likelihood_bm3d": in_likelihood(noisy, looks, args.kind)}
    out = {"file": str(args.real), "looks": looks, "seconds": round(seconds, 1), "network_weight": weight,
           "no_reference": {m: no_reference(noisy, e, looks, args.kind) for m, e in estimates.items()}}
    print(json.dumps(out, indent=1))
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--side", type=int, default=192)
    parser.add_argument("--cases", default=",".join(KINDS))
    parser.add_argument("--looks", default="1,2,4")
    parser.add_argument("--intensity-cases", default="camera,fields")
    parser.add_argument("--real", type=Path)
    parser.add_argument("--real-looks", type=float)
    parser.add_argument("--kind", default="amplitude", choices=speckle.SPECKLE_KINDS)
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "speckle.json")
    args = parser.parse_args(argv)
    args.cases = [c for c in args.cases.split(",") if c]
    args.intensity_cases = [c for c in args.intensity_cases.split(",") if c]
    args.looks = [int(v) for v in args.looks.split(",") if v]
    import torch

    torch.set_num_threads(2)
    out = {"command": "python " + " ".join(["benchmarks/speckle.py", *(argv or sys.argv[1:])]),
           "date": datetime.date.today().isoformat(), "side": args.side,
           "machine": "2 cores, quiet (nothing else running), 2 torch threads"}
    if args.real:
        out["real"] = real(args)
    else:
        out["rows"] = synthetic(args)
        out["gain_over_homomorphic_db"] = summary(out["rows"])
        print("default − homomorphic (dB):", out["gain_over_homomorphic_db"])
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
