"""The command line: restore writes a result and its record, bad input exits 2 in one line, the demo, Ctrl-C."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import DEVICE

from napari_dip import cli
from napari_dip.io import read_image, write_image
from napari_dip.record import RunRecord

# a tiny network and few iterations: these tests check plumbing, not quality
TINY = ["--iterations", "4", "--device", DEVICE, "--quiet", "--set", "network_down=8,16", "--set", "network_up=8,16",
        "--set", "network_skip=2,2", "--set", "input_channels=4", "--set", "snapshot_every=2"]
RECORD_KEYS = {"task", "preset", "parameters", "iterations", "stop_reason", "seconds", "device", "version", "metrics"}


def _image(shape=(32, 32), seed=0):
    return (np.random.default_rng(seed).random(shape) * 200).astype(np.float32)


def test_restore_writes_the_result_and_its_record(tmp_path, capsys):
    image = _image()
    write_image(tmp_path / "in.tif", image)
    write_image(tmp_path / "truth.tif", _image(seed=1))
    code = cli.main(["restore", str(tmp_path / "in.tif"), "-o", str(tmp_path / "out.tif"),
                     "--ground-truth", str(tmp_path / "truth.tif"), *TINY])
    assert code == 0
    result, meta = read_image(tmp_path / "out.tif")
    assert result.shape == image.shape and result.dtype == np.float32
    record = json.loads((tmp_path / "out.json").read_text())
    assert RECORD_KEYS <= set(record)
    assert record["task"] == "denoise" and record["preset"] == "fast" and record["iterations"] == 4
    assert record["parameters"]["settings"]["network"]["down"] == [8, 16]
    assert "psnr" in record["metrics"]
    assert record["files"]["input"].endswith("in.tif") and record["command"].startswith("napari-dip restore")
    assert "wrote" in capsys.readouterr().out


def test_rgb_png_is_restored_with_its_channels_and_written_as_uint8(tmp_path, capsys):
    write_image(tmp_path / "rgb.png", _image((32, 32, 3)).astype(np.uint8))
    assert cli.main(["restore", str(tmp_path / "rgb.png"), "-o", str(tmp_path / "out.png"),
                     *[a for a in TINY if a != "--quiet"]]) == 0
    assert "colour channels on axis -1" in capsys.readouterr().err
    result, _ = read_image(tmp_path / "out.png")
    assert result.shape == (32, 32, 3) and result.dtype == np.uint8
    assert json.loads((tmp_path / "out.json").read_text())["parameters"]["channel_axis"] == 2


def test_superres_with_a_mask_file_and_pixel_sizes(tmp_path):
    write_image(tmp_path / "small.tif", _image((16, 16)), {"pixel_size": {"Y": 0.4, "X": 0.4}, "unit": "um"})
    mask = np.zeros((16, 16), np.uint8)
    mask[4:6, 4:6] = 1
    write_image(tmp_path / "mask.png", mask)
    assert cli.main(["restore", str(tmp_path / "small.tif"), "-o", str(tmp_path / "big.tif"), "--task", "superres",
                     "--factor", "2", "--mask", str(tmp_path / "mask.png"), *TINY]) == 0
    result, meta = read_image(tmp_path / "big.tif")
    assert result.shape == (32, 32)
    assert meta["pixel_size"] == pytest.approx({"Y": 0.2, "X": 0.2}) and meta["unit"] == "um"
    record = json.loads((tmp_path / "big.json").read_text())
    assert record["parameters"]["missing_pixels"] == 4 and record["files"]["mask"].endswith("mask.png")


@pytest.mark.parametrize("make_args, message", [
    (lambda d: ["restore", str(d / "missing.tif"), "-o", str(d / "o.tif")], "no such file"),
    (lambda d: ["restore", str(d / "in.tif"), "-o", str(d / "o.gif")], "unknown file type '.gif'"),
    (lambda d: ["restore", str(d / "in.tif"), "-o", str(d / "o.tif"), "--preset", "nope"], "unknown preset 'nope'"),
    (lambda d: ["restore", str(d / "in.tif"), "-o", str(d / "o.tif"), "--mask", str(d / "bad_mask.tif")],
     "the mask has shape"),
    (lambda d: ["restore", str(d / "in.tif"), "-o", str(d / "o.tif"), "--set", "no_such_setting=1"],
     "unknown setting"),
    (lambda d: ["restore", str(d / "in.tif"), "-o", str(d / "o.tif"), "--set", "mask=1"], "--mask"),
    (lambda d: ["restore", str(d / "in.tif"), "-o", str(d / "o.tif"), "--task", "deconvolve"], "needs a PSF"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, make_args, message):
    write_image(tmp_path / "in.tif", _image())
    write_image(tmp_path / "bad_mask.tif", np.zeros((5, 5), np.uint8))
    assert cli.main(make_args(tmp_path)) == 2
    err = capsys.readouterr().err
    assert err.startswith("napari-dip: error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "o.tif").exists()


def test_usage_errors_exit_2():
    with pytest.raises(SystemExit) as info:
        cli.main(["restore", "in.tif"])  # no -o
    assert info.value.code == 2


def test_set_values_are_python_literals_or_words():
    assert cli.parse_settings(["lr=0.005", "network_kind=hourglass", "network-down=8,16", "ema=None"]) == {
        "lr": 0.005, "network_kind": "hourglass", "network_down": (8, 16), "ema": None}


def test_cli_task_and_preset_names_match_the_engine():
    from napari_dip.core.presets import PRESETS, TASKS

    assert cli.TASKS == TASKS
    for task, names in PRESETS.items():
        listed = next(part for part in cli.PRESET_NAMES.split("; ") if task in part.split(":")[0])
        assert listed.split(": ")[1].split(", ") == list(names)


def test_demo_writes_its_files(tmp_path, capsys):
    out = tmp_path / "demo"
    assert cli.main(["demo", "-o", str(out), "--size", "32", *TINY]) == 0
    names = {"denoise_input.tif", "denoise_result.tif", "denoise_comparison.png", "denoise_result.json"}
    assert {p.name for p in out.iterdir()} == names
    record = json.loads((out / "denoise_result.json").read_text())
    assert RECORD_KEYS <= set(record)
    # the title's figures are the engine's: PSNR over the clean crop's range
    assert record["demo"]["psnr_input"] == pytest.approx(record["metrics"]["psnr_input"], abs=1e-3)
    assert record["demo"]["psnr_result"] == pytest.approx(record["metrics"]["psnr"], abs=1e-3)
    # beside it, the classical method a newcomer would compare with, on the same input
    assert record["demo"]["classical"]["psnr"] > record["demo"]["psnr_input"] + 3.0
    picture, _ = read_image(out / "denoise_comparison.png")
    assert picture.dtype == np.uint8 and picture.shape[2] == 3 and picture.shape[1] > 3 * 32
    assert "PSNR" in capsys.readouterr().out


@pytest.mark.parametrize("task, extra_file", [("inpaint", "inpaint_mask.tif"), ("superres", None),
                                              ("deconvolve", None), ("guided", "guided_guide.tif")])
def test_demo_problems(task, extra_file, tmp_path):
    demo = cli.demo_problem(task, 32)
    assert demo["clean"].shape == demo["shown"].shape == (32, 32)
    classical = cli.classical_demo_result(task, demo)
    if task in ("inpaint", "deconvolve"):  # a classical counterpart, better than the input
        truth, image = demo["clean"], classical["image"]
        assert image.shape == truth.shape
        assert np.mean((image - truth) ** 2) < np.mean((demo["shown"] - truth) ** 2)
    else:  # super-resolution compares with the bicubic input shown; guided restoration has no counterpart here
        assert classical is None
    if extra_file:
        assert cli.main(["demo", "-o", str(tmp_path), "--task", task, "--size", "32", *TINY]) == 0
        assert (tmp_path / extra_file).exists()


def test_ctrl_c_stops_the_run_and_writes_the_best_result(tmp_path):
    write_image(tmp_path / "in.tif", _image())
    args = ["restore", str(tmp_path / "in.tif"), "-o", str(tmp_path / "out.tif"), *TINY]
    args[args.index("--iterations") + 1] = "100000"
    args.remove("--quiet")
    # the child runs the code under test (not whatever copy is installed), with the default Ctrl-C
    # handling even where this test runs with SIGINT ignored (a background job)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(cli.__file__).parents[1]),
                                                        os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen([sys.executable, "-m", "napari_dip.cli", *args], stderr=subprocess.PIPE, text=True,
                               env=env, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen = []
    reader = threading.Thread(target=lambda: seen.extend(iter(lambda: process.stderr.read(1), "")), daemon=True)
    reader.start()
    deadline = time.monotonic() + 120
    while "loss=" not in "".join(seen) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)  # wait for the first snapshot: the run is going
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=120) == cli.EXIT_INTERRUPTED, "".join(seen)
    record = json.loads((tmp_path / "out.json").read_text())
    assert record["stop_reason"] == "stopped by user" and record["iterations"] < 100000
    assert read_image(tmp_path / "out.tif")[0].shape == (32, 32)


def test_restore_in_tiles_says_so_and_records_the_tiles(tmp_path, capsys):
    write_image(tmp_path / "in.tif", _image((32, 80)))
    args = [a for a in TINY if a != "--quiet"]
    assert cli.main(["restore", str(tmp_path / "in.tif"), "-o", str(tmp_path / "out.tif"),
                     "--tile-size", "40", "--overlap", "16", *args]) == 0
    assert "overlapping tiles" in capsys.readouterr().err
    record = json.loads((tmp_path / "out.json").read_text())
    assert record["tiling"]["grid"] == [1, 3] and len(record["tiling"]["tiles"]) == 3  # 80 px, tiles of 40 sharing 16
    assert read_image(tmp_path / "out.tif")[0].shape == (32, 80)


def _structured_image(shape=(32, 32), seed=0):
    """Smooth structure plus noise: the held-out estimate then has something to measure."""
    y, x = np.mgrid[:shape[0], :shape[1]]
    clean = (np.sin(x / 5) + np.cos(y / 4)) * 50 + 100
    return (clean + np.random.default_rng(seed).normal(0, 20, shape)).astype(np.float32)


def test_batch_without_the_batch_extra_says_what_to_install(tmp_path, monkeypatch, capsys):
    for name in ("dask", "distributed"):
        monkeypatch.setitem(sys.modules, name, None)  # import fails, as when the extra is not installed
    write_image(tmp_path / "in.tif", _image((32, 32)))
    code = cli.main(["batch", str(tmp_path / "in.tif"), "-o", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err
    assert code == cli.EXIT_ERROR
    assert 'pip install "napari-dip[batch]"' in err and "dask, distributed" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()  # nothing was started


def test_automatic_stopping_shows_and_records_the_kept_iteration(tmp_path, capsys):
    write_image(tmp_path / "in.tif", _structured_image())
    args = [a for a in TINY if a != "--quiet"]
    args[args.index("--iterations") + 1] = "40"
    args[args.index("snapshot_every=2")] = "snapshot_every=10"
    assert cli.main(["restore", str(tmp_path / "in.tif"), "-o", str(tmp_path / "out.tif"), *args,
                     "--set", "auto_stop=True", "--set", "stop_patience=5"]) == 0
    quality = json.loads((tmp_path / "out.json").read_text())["quality"]
    assert quality["automatic_stopping"] is True
    chosen = quality["chosen_iteration"]
    assert 1 <= chosen <= quality["iterations"] <= 40
    captured = capsys.readouterr()
    assert f"kept iteration {chosen}" in captured.out  # the summary line
    assert "keep=" in captured.err  # the progress bar


def test_no_auto_stop_and_camera_noise_options_reach_the_engine(tmp_path):
    write_image(tmp_path / "in.tif", _image())
    assert cli.main(["restore", str(tmp_path / "in.tif"), "-o", str(tmp_path / "out.tif"), *TINY,
                     "--no-auto-stop"]) == 0
    record = json.loads((tmp_path / "out.json").read_text())
    assert record["quality"]["automatic_stopping"] is False
    assert "kept iteration" not in cli._summary(type("R", (), {"record": RunRecord.from_dict(record)})())

    counts = np.random.default_rng(0).poisson(20, (32, 32)) * 2.0 + 100  # gain 2 ADU/photon, offset 100
    write_image(tmp_path / "camera.tif", counts.astype(np.float32))
    assert cli.main(["restore", str(tmp_path / "camera.tif"), "-o", str(tmp_path / "camera_out.tif"), *TINY,
                     "--noise", "poisson-gaussian", "--gain", "2", "--offset", "100", "--read-noise", "1",
                     "--holdout-fraction", "0.1"]) == 0
    record = json.loads((tmp_path / "camera_out.json").read_text())
    assert record["parameters"]["noise"] == "poisson-gaussian"
    estimate = record["parameters"]["noise_estimate"]
    assert estimate["gain"] == 2 and estimate["offset"] == 100 and estimate["read_noise"] == 1
    assert estimate["estimated"] == []


def test_restore_options_default_to_the_preset_for_automatic_stopping():
    args = cli.build_parser().parse_args(["restore", "in.tif", "-o", "out.tif"])
    options = cli.restore_options(args, {}, {"input": "in.tif"})
    assert options.auto_stop is None and options.holdout_fraction is None
    assert options.gain is options.offset is options.read_noise is None


def test_workers_option_fits_planes_in_worker_processes_and_says_so(tmp_path, capsys):
    np.save(tmp_path / "stack.npy", _image((2, 32, 32)))
    assert cli.main(["restore", str(tmp_path / "stack.npy"), "-o", str(tmp_path / "out.tif"), "--workers", "2",
                     "--device", "cpu", *[a for a in TINY if a not in ("--quiet", "--device", DEVICE)]]) == 0
    assert "fitted 2 at a time in worker processes" in capsys.readouterr().err
    record = json.loads((tmp_path / "out.json").read_text())
    assert record["cpu_threads"]["processes"] == 2 and record["units_restored"] == 2
    with pytest.raises(SystemExit) as info:  # argparse: a usage line and exit 2
        cli.main(["restore", str(tmp_path / "stack.npy"), "-o", str(tmp_path / "bad.tif"), "--workers", "none"])
    assert info.value.code == 2


def test_amortise_on_says_so_shows_the_stage_and_summarises_the_choice(tmp_path, capsys):
    write_image(tmp_path / "in.tif", _image((2, 64, 64)))
    args = [a for a in TINY if a != "--quiet"] + ["--set", "student_steps=10", "--set", "amortise_margin=100",
                                                  "--set", "auto_stop=False", "--workers", "1"]
    assert cli.main(["restore", str(tmp_path / "in.tif"), "-o", str(tmp_path / "out.tif"), "--amortise", "on",
                     "--channel-axis", "none", *args]) == 0
    captured = capsys.readouterr()
    assert "amortised restoration" in captured.err and "student: step" in captured.err
    assert "amortised: DIP on 1 teacher crops" in captured.out
    record = json.loads((tmp_path / "out.json").read_text())
    assert record["amortised"]["used"] is True and record["amortised"]["choice"].startswith("student")
    assert read_image(tmp_path / "out.tif")[0].shape == (2, 64, 64)
    assert cli.main(["restore", str(tmp_path / "in.tif"), "-o", str(tmp_path / "off.tif"), "--amortise", "off",
                     "--channel-axis", "none", *TINY]) == 0
    assert json.loads((tmp_path / "off.json").read_text())["amortised"]["used"] is False
