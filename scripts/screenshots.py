"""Render each napari-dip widget docked next to its result, for the docs.

Run under a virtual X server:

    xvfb-run -a -s "-screen 0 1400x900x24" python scripts/screenshots.py [--iterations N] [--only denoise]

Each task opens its sample (File → Open Sample → napari-dip), opens its widget
through the manifest, runs it with the 'fast' preset, shows input and result
side by side (napari's grid mode) and saves docs/images/<name>.png. It runs
the preset's iteration count unless --iterations is given: about 15 minutes
in all on a 2-core CPU. The committed images were made with
OMP_NUM_THREADS=1, which on a busy shared CPU ran many times faster than
torch's default of one thread per core.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch  # noqa: F401  (before the QApplication exists)

OUT = Path(__file__).resolve().parent.parent / "docs" / "images"
WINDOW = (1360, 820)


# screenshot name: (sample key, widget display name, form fields: a layer name or a value)
SHOTS = {
    "denoise": ("noisy_camera", "Denoise", {
        "image": "camera (noisy, σ=25)", "ground_truth": "camera (clean)"}),
    "inpaint": ("astronaut_text", "Inpaint", {
        "image": "astronaut with text", "mask": "text mask", "ground_truth": "astronaut (clean)"}),
    "superres": ("low_resolution", "Super-resolve", {
        "image": "chelsea (low resolution, 1/4)", "factor_choice": 4, "ground_truth": "chelsea (high resolution)"}),
    "deconvolve": ("fluorescence", "Deconvolve", {
        "image": "fluorescence (Poisson noise)", "psf": "PSF (Gaussian σ=1.5)", "noise": "poisson",
        "ground_truth": "fluorescence (sharp object)"}),
    "inpaint-gaps": ("scan_line_gaps", "Inpaint", {
        "image": "multispectral (SLC-off gaps)", "channel_axis": 0, "mask": "scan-line gaps",
        "ground_truth": "multispectral (complete)"}),
    "guided": ("pansharpening", "Guided restoration", {
        "image": "bands (1/4 resolution)", "channel_axis": 0, "guide": "panchromatic", "factor_choice": 4,
        "ground_truth": "bands (full resolution)"}),
}


def fill_form(viewer, widget, fields):
    for field, value in fields.items():
        getattr(widget, field).value = viewer.layers[value] if value in viewer.layers else value


def shrink(path: Path):
    """256 colours instead of 16 million: half the bytes, and a screenshot hardly changes."""
    from PIL import Image

    Image.open(path).convert("RGB").quantize(colors=256).save(path, optimize=True)


def shoot(name, iterations, out: Path):
    """Open the sample and widget, run, wait, show input and result side by side, save the window."""
    import napari
    from qtpy.QtWidgets import QApplication

    sample, widget_name, fields = SHOTS[name]
    viewer = napari.Viewer(show=True, title=f"napari-dip: {widget_name}")
    viewer.window.resize(*WINDOW)
    viewer.open_sample("napari-dip", sample)
    _, widget = viewer.window.add_plugin_dock_widget("napari-dip", widget_name)
    fill_form(viewer, widget, fields)
    if iterations:
        widget.iterations.value = iterations
    widget.display_every.value = max(1, widget.iterations.value // 20)
    widget.run_restoration()
    started = last_report = time.perf_counter()
    while widget.running:
        QApplication.processEvents()
        time.sleep(0.05)
        if time.perf_counter() - last_report > 60:
            print(f"  {name}: {widget.progress.format()}", flush=True)
            last_report = time.perf_counter()
    result = viewer.layers[-1]
    for layer in viewer.layers:
        layer.visible = layer.name == fields["image"] or layer is result
    viewer.canvas.grid.enabled = True
    viewer.canvas.grid.shape = (1, 2)
    viewer.reset_view()
    for _ in range(20):
        QApplication.processEvents()
        time.sleep(0.02)
    path = out / f"{name}.png"
    viewer.screenshot(str(path), canvas_only=False, flash=False)
    shrink(path)
    record = result.metadata.get("napari_dip", {})
    print(f"{path}: {record.get('iterations')} iterations in {time.perf_counter() - started:.0f} s, "
          f"metrics {record.get('metrics')}", flush=True)
    viewer.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, help="instead of the preset's count")
    parser.add_argument("--only", nargs="*", choices=sorted(SHOTS), help="render only these")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    os.environ.pop("NAPARI_DIP_SYNC", None)  # a real threaded run, as a user sees it
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.only or SHOTS:
        shoot(name, args.iterations, args.out)


if __name__ == "__main__":
    main()
