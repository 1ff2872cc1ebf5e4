"""Batch runs on dask.distributed: local cluster, resuming, bad inputs, planes, zarr."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tifffile

pytest.importorskip("distributed")

from conftest import DEVICE

from napari_dip.batch import expand_inputs, format_summary, plan_tasks, run_batch  # noqa: E402
from napari_dip.cli import main  # noqa: E402
from napari_dip.errors import DIPInputError  # noqa: E402
from napari_dip.io import read_image  # noqa: E402

TINY = dict(task="denoise", iterations=5, device=DEVICE, network_down=(8, 16), network_up=(8, 16),
            network_skip=(2, 2), input_channels=4, channel_axis="auto")
TINY_CLI = ["--device", DEVICE, "--set", "network_down=8,16", "--set", "network_up=8,16", "--set", "network_skip=2,2",
            "--set", "input_channels=4"]


@pytest.fixture(scope="module")
def cluster():
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        yield cluster


def batch(tasks, cluster, **options):
    """The tasks on the test cluster, one torch thread per task (the test machine has 2 cores)."""
    return run_batch(tasks, TINY, scheduler=cluster.scheduler_address, threads_per_worker=1, progress=False,
                     **options)


def write_images(folder, count, size=32, seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        tifffile.imwrite(folder / f"img{i}.tif", (rng.random((size, size)) * 200).astype(np.uint8))
    return folder


def mtimes(paths):
    return {str(p): os.stat(p).st_mtime_ns for p in paths}


def test_inputs_from_folders_and_globs_and_output_names(tmp_path):
    write_images(tmp_path / "a", 2)
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    (tmp_path / "b").mkdir()
    tifffile.imwrite(tmp_path / "b" / "c.ome.tif", np.zeros((16, 16), np.uint8))
    files = expand_inputs([tmp_path / "a", str(tmp_path / "b" / "*.tif"), tmp_path / "a" / "img0.tif"])
    assert [os.path.basename(f) for f in files] == ["img0.tif", "img1.tif", "c.ome.tif"]
    tasks = plan_tasks(files, tmp_path / "out")
    assert [os.path.basename(t.output) for t in tasks] == ["img0.tif", "img1.tif", "c.ome.tif"]
    assert tasks[2].record.endswith("c.ome.json")
    with pytest.raises(DIPInputError, match="same output"):
        plan_tasks([tmp_path / "a" / "img0.tif", tmp_path / "b" / "img0.png"], tmp_path / "out")
    with pytest.raises(DIPInputError, match="replace"):
        plan_tasks([tmp_path / "a" / "img0.tif"], tmp_path / "a")


def test_batch_with_a_corrupt_file_then_rerun_skips_finished_outputs(tmp_path, cluster):
    inputs = write_images(tmp_path / "in", 3)
    (inputs / "broken.tif").write_bytes(b"this is not a TIFF file")
    tasks = plan_tasks([inputs], tmp_path / "out")
    rows = batch(tasks, cluster)
    status = {r["file"]: r["status"] for r in rows}
    assert status == {"broken.tif": "failed", "img0.tif": "done", "img1.tif": "done", "img2.tif": "done"}
    broken = next(r for r in rows if r["file"] == "broken.tif")
    assert "broken.tif" in broken["error"] and "TIFF" in broken["error"]
    done = [t for t in tasks if "broken" not in t.source]
    for task in done:
        image, _ = read_image(task.output)
        record = json.loads(open(task.record).read())
        assert image.shape == (32, 32) and image.dtype == np.float32
        assert record["iterations"] == 5 and record["files"]["input"] == task.source
    assert not [p for p in os.listdir(tmp_path / "out") if p.endswith(".partial")]
    table = format_summary(rows)
    assert "broken.tif" in table and "3 restored, 0 skipped (already done), 1 failed, of 4" in table

    before = mtimes([t.output for t in done] + [t.record for t in done])
    rows = batch(tasks, cluster)
    assert [r["status"] for r in rows if r["file"] != "broken.tif"] == ["skipped (done)"] * 3
    assert mtimes(before) == before


def test_an_output_without_its_record_is_done_again(tmp_path, cluster):
    inputs = write_images(tmp_path / "in", 3, seed=1)
    tasks = plan_tasks([inputs], tmp_path / "out")
    assert [r["status"] for r in batch(tasks, cluster)] \
        == ["done"] * 3
    # as if killed while the last one was written: its record is missing and a partial file is left over
    os.remove(tasks[1].record)
    (tmp_path / "out" / ".img1.tif.0badc0de.partial").write_bytes(b"half a file")
    kept = mtimes([tasks[0].output, tasks[0].record, tasks[2].output, tasks[2].record])
    rows = batch(tasks, cluster)
    assert [r["status"] for r in rows] == ["skipped (done)", "done", "skipped (done)"]
    assert mtimes(kept) == kept
    assert os.path.exists(tasks[1].record) and read_image(tasks[1].output)[0].shape == (32, 32)


def test_every_plane_of_a_stack_is_a_task(tmp_path, cluster):
    stack = (np.random.default_rng(0).random((3, 32, 32)) * 100).astype(np.float32)
    tifffile.imwrite(tmp_path / "stack.tif", stack, imagej=True, metadata={"axes": "TYX"},
                     resolution=(2.0, 2.0))
    tasks = plan_tasks([tmp_path / "stack.tif"], tmp_path / "out", split_planes=True)
    assert [os.path.basename(t.output) for t in tasks] == [f"stack_p000{i}.tif" for i in range(3)]
    rows = batch(tasks, cluster)
    assert [r["status"] for r in rows] == ["done"] * 3, rows
    image, metadata = read_image(tasks[2].output)
    assert image.shape == (32, 32) and metadata["axes"] == "YX"
    assert metadata["pixel_size"]["X"] == pytest.approx(0.5)
    assert json.loads(open(tasks[2].record).read())["files"]["plane"] == 2


def test_a_zarr_input_is_restored_tile_by_tile_into_zarr(tmp_path, cluster):
    zarr = pytest.importorskip("zarr")
    source = zarr.open_array(str(tmp_path / "big.zarr"), mode="w", shape=(48, 80), chunks=(16, 16), dtype="f4")
    source[...] = np.random.default_rng(0).random((48, 80)).astype(np.float32)
    tasks = plan_tasks([tmp_path / "big.zarr"], tmp_path / "out")
    rows = batch(tasks, cluster, tile_size=48, overlap=16)
    assert rows[0]["status"] == "done", rows
    result, metadata = read_image(tasks[0].output)
    assert metadata["format"] == "zarr" and result.shape == (48, 80)
    assert np.isfinite(result[...]).all() and np.abs(result[...]).max() > 0
    record = json.loads(open(tasks[0].record).read())
    assert record["tiling"]["grid"] == [1, 2] and record["iterations"] == 10


def test_cli_batch_on_a_running_cluster_reports_failures_in_its_exit_code(tmp_path, cluster, capsys):
    inputs = write_images(tmp_path / "in", 1)
    (inputs / "empty.tif").write_bytes(b"")
    code = main(["batch", str(inputs / "*.tif"), "-o", str(tmp_path / "out"), "--scheduler",
                 cluster.scheduler_address, "--threads-per-worker", "1", "-q", "--iterations", "5", *TINY_CLI])
    out = capsys.readouterr().out
    assert code == 1
    assert "empty.tif" in out and "failed" in out and "img0.tif" in out
    record = json.loads((tmp_path / "out" / "img0.json").read_text())
    assert record["command"].startswith("napari-dip batch")


def test_a_killed_batch_resumes_where_it_stopped(tmp_path):
    inputs = write_images(tmp_path / "in", 6, seed=2)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "napari_dip.cli", "batch", str(inputs), "-o", str(out), "--workers", "2",
               "--threads-per-worker", "1", "-q", "--iterations", "50", *TINY_CLI]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not list(out.glob("*.json")) and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.2)
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # the client, the cluster and its workers, at once
        process.wait()
    finished = sorted(out.glob("*.json"))
    assert 0 < len(finished) < 6, "the kill should come after the first output and before the last"
    kept = mtimes([p.with_suffix(".tif") for p in finished] + finished)

    result = subprocess.run(command, capture_output=True, text=True, timeout=600)  # the same command again
    assert result.returncode == 0, result.stderr
    assert f"{len(finished)} skipped (already done)" in result.stdout
    assert mtimes(kept) == kept
    for i in range(6):
        image, _ = read_image(out / f"img{i}.tif")
        assert image.shape == (32, 32) and np.isfinite(image).all()
        assert (out / f"img{i}.json").exists()


def test_a_tile_size_set_in_the_options_is_kept(tmp_path):
    # before, restore_file's own tile_size='auto' replaced the options' one: this 48 × 80 image was not tiled
    from napari_dip.batch import as_options, restore_file

    tifffile.imwrite(tmp_path / "frame.tif", np.random.default_rng(1).random((48, 80)).astype(np.float32))
    task = plan_tasks([tmp_path / "frame.tif"], tmp_path / "out")[0]
    options = as_options(dict(TINY, tile_size=48, overlap=16))
    row = restore_file(task, options, torch_threads=1)
    assert row["status"] == "done", row
    assert json.loads(open(task.record).read())["tiling"]["grid"] == [1, 2]
    # an explicit argument still wins
    other = plan_tasks([tmp_path / "frame.tif"], tmp_path / "untiled")[0]
    assert restore_file(other, options, tile_size=None, torch_threads=1)["status"] == "done"
    assert json.loads(open(other.record).read()).get("tiling") is None
