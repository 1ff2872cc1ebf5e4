"""GUI tests of the dock widgets, through the manifest, in a real (Xvfb) viewer.

Each run uses a tiny network for a few iterations on a small image. Most tests
run the worker synchronously (NAPARI_DIP_SYNC=1); the threaded path has its
own tests with ``qtbot.waitUntil``.
"""

import numpy as np
import pytest

pytest.importorskip("napari")
pytestmark = pytest.mark.gui

from napari.utils.notifications import notification_manager  # noqa: E402

from napari_dip.options import RestoreOptions  # noqa: E402
from napari_dip.widgets.controller import RunController, RunRefused, RunStatus  # noqa: E402
from napari_dip.widgets.layer_data import ALL_PLANES, CURRENT_PLANE, VOLUME  # noqa: E402

ITERATIONS = 6


@pytest.fixture
def sync_runs(monkeypatch):
    monkeypatch.setenv("NAPARI_DIP_SYNC", "1")


@pytest.fixture
def viewer(make_napari_viewer):
    yield make_napari_viewer()
    assert not RunController.active(), "a run outlived its test"


def open_widget(viewer, name, tiny_network, iterations=ITERATIONS, every=2):
    _, widget = viewer.window.add_plugin_dock_widget("napari-dip", name)
    widget.extra_settings = dict(tiny_network)
    widget.iterations.value = iterations
    widget.display_every.value = every
    return widget


def noisy_image(shape=(32, 32), seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random(shape) * 100).astype(np.float32)


def error_count():
    return sum(1 for n in notification_manager.records if n.severity.name == "ERROR")


def test_denoise_run_makes_a_result_layer(viewer, sync_runs, tiny_network):
    data = noisy_image()
    original = data.copy()
    layer = viewer.add_image(data, name="noisy", scale=(0.5, 0.25), translate=(3, 4), units=("um", "um"))
    widget = open_widget(viewer, "Denoise", tiny_network)
    shown = []
    widget.snapshot_shown.connect(shown.append)
    widget.run_restoration()

    result = viewer.layers["noisy [denoise]"]
    assert result.data.shape == (32, 32) and result.data.dtype == np.float32
    assert tuple(result.scale) == (0.5, 0.25) and tuple(result.translate) == (3, 4)
    assert [str(u) for u in result.units] == ["micrometer", "micrometer"]
    assert tuple(result.contrast_limits) == tuple(layer.contrast_limits)
    record = result.metadata["napari_dip"]
    assert record["task"] == "denoise" and record["iterations"] == ITERATIONS
    assert record["parameters"]["settings"]["network"]["down"] == [8, 16]
    assert np.array_equal(layer.data, original)
    # a snapshot every 2 iterations, the last one final, all in the same layer
    assert [s.iteration for s in shown] == [2, 4, 6] and shown[-1].done
    assert len(widget.plot.losses) == 3
    assert widget.progress.value() == widget.progress.maximum()
    assert not widget.running and widget.run_button.text() == "Run"


def test_poisson_option_reaches_the_engine(viewer, sync_runs, tiny_network):
    viewer.add_image(np.random.default_rng(1).poisson(5, (32, 32)).astype(np.float32), name="counts")
    widget = open_widget(viewer, "Denoise", tiny_network)
    widget.noise.value = "poisson"
    widget.run_restoration()
    assert viewer.layers["counts [denoise]"].metadata["napari_dip"]["parameters"]["noise"] == "poisson"


def test_threaded_run_streams_snapshots(viewer, qtbot, tiny_network):
    viewer.add_image(noisy_image(), name="noisy")
    widget = open_widget(viewer, "Denoise", tiny_network)
    with qtbot.waitSignal(widget.run_finished, timeout=60_000):
        widget.run_button.click()
        assert widget.running and widget.run_button.text() == "Stop"
    assert "napari_dip" in viewer.layers["noisy [denoise]"].metadata
    assert widget.run_button.text() == "Run" and not RunController.active()


def test_stop_mid_run_keeps_the_best_result(viewer, qtbot, tiny_network):
    viewer.add_image(noisy_image(), name="noisy")
    widget = open_widget(viewer, "Denoise", tiny_network, iterations=10_000, every=1)
    statuses, buttons = [], []
    widget.controller.status_changed.connect(statuses.append)
    widget.controller.status_changed.connect(lambda _: buttons.append(
        (widget.run_button.text(), widget.run_button.isEnabled())))
    widget.snapshot_shown.connect(lambda s: widget.run_button.click() if s.iteration == 2 else None)
    with qtbot.waitSignal(widget.run_finished, timeout=60_000):
        widget.run_restoration()
    record = viewer.layers["noisy [denoise]"].metadata["napari_dip"]
    assert record["stop_reason"] == "stopped by user"
    assert record["iterations"] < 100
    assert statuses == [RunStatus.RUNNING, RunStatus.STOPPING, RunStatus.DONE]
    assert buttons == [("Stop", True), ("Stopping…", False), ("Run", True)]  # the button follows the status
    assert widget.controller.status is RunStatus.DONE and not widget.running


def test_second_run_is_refused_while_one_is_active(viewer, qtbot, tiny_network):
    viewer.add_image(noisy_image(), name="noisy")
    widget = open_widget(viewer, "Denoise", tiny_network, iterations=10_000)
    other = open_widget(viewer, "Inpaint", tiny_network)
    infos = len(notification_manager.records)
    widget.run_restoration()
    other.run_restoration()
    assert RunController.active() == (widget.controller,)
    assert "still running" in notification_manager.records[infos].message
    with qtbot.waitSignal(widget.run_finished, timeout=60_000):
        widget.stop_restoration()


def test_controller_reports_running_then_done_and_the_dock_follows(viewer, sync_runs, tiny_network):
    viewer.add_image(noisy_image(), name="noisy")
    widget = open_widget(viewer, "Denoise", tiny_network)
    controller = widget.controller
    assert controller.status is RunStatus.IDLE and not widget.running
    statuses, started, seen = [], [], []
    controller.status_changed.connect(statuses.append)
    controller.started.connect(started.append)

    def after_the_widget(snapshot):  # connected after the widget's own subscribers: they have run
        layer = viewer.layers["noisy [denoise]"]
        seen.append((controller.steps, widget.progress.value(), np.array_equal(layer.data, snapshot.image),
                     len(widget.plot.losses), widget.run_button.text()))

    controller.snapshot.connect(after_the_widget)
    widget.run_restoration()
    assert statuses == [RunStatus.RUNNING, RunStatus.DONE]
    assert len(started) == 1 and controller.total == started[0].iterations == ITERATIONS
    assert widget.progress.maximum() == ITERATIONS
    # progress bar, result layer and plot show each snapshot before the next one comes
    assert seen == [(2, 2, True, 1, "Stop"), (4, 4, True, 2, "Stop"), (6, 6, True, 3, "Stop")]
    assert widget.run_button.text() == "Run" and widget.main.enabled


def test_controller_reports_a_failed_run(viewer, sync_runs, tiny_network):
    viewer.add_image(noisy_image((4, 4)), name="tiny")
    widget = open_widget(viewer, "Denoise", tiny_network)
    statuses, failures = [], []
    widget.controller.status_changed.connect(statuses.append)
    widget.controller.failed.connect(failures.append)
    widget.run_restoration()  # the engine refuses a 4 × 4 image
    assert statuses == [RunStatus.RUNNING, RunStatus.FAILED]
    assert len(failures) == 1 and "too small" in failures[0]
    assert widget.status.text() == f"Not run: {failures[0]}"
    assert widget.progress.format() == "not finished" and widget.run_button.text() == "Run"

    inpaint = open_widget(viewer, "Inpaint", tiny_network)
    inpaint.controller.status_changed.connect(statuses.append)
    inpaint.run_restoration()  # no mask: refused by the form, the controller never starts
    assert inpaint.controller.status is RunStatus.IDLE and len(statuses) == 2


def test_controller_allows_one_run_at_a_time(qtbot, tiny_network):
    first, second = RunController(), RunController()
    first.start("the first run", noisy_image(),
                RestoreOptions.from_keywords(task="denoise", **tiny_network, iterations=10_000, snapshot_every=1))
    assert first.busy and RunController.active() == (first,)
    assert "the first run is still running" in second.refusal()
    with pytest.raises(RunRefused):
        second.start("the second run", noisy_image(), RestoreOptions.from_keywords(task="denoise", **tiny_network))
    assert second.status is RunStatus.IDLE and RunController.active() == (first,)

    qtbot.waitUntil(lambda: first.steps > 0, timeout=60_000)
    first.stop()
    assert first.status is RunStatus.STOPPING
    qtbot.waitUntil(lambda: not first.busy, timeout=60_000)
    assert first.status is RunStatus.DONE and first.steps == first.total
    assert not RunController.active() and second.refusal() is None


def test_deleting_the_widget_stops_its_run(make_napari_viewer, qtbot, tiny_network):
    viewer = make_napari_viewer()
    viewer.add_image(noisy_image(), name="noisy")
    widget = open_widget(viewer, "Denoise", tiny_network, iterations=10_000, every=1)
    with qtbot.waitSignal(widget.snapshot_shown, timeout=60_000):
        widget.run_restoration()
    controller = widget.controller
    viewer.window.remove_dock_widget(widget)  # what closing the viewer does to its docks
    widget.deleteLater()
    qtbot.waitUntil(lambda: not RunController.active(), timeout=60_000)
    assert controller.stop_requested and not controller.busy


def test_painted_mask_reaches_the_engine(viewer, sync_runs, tiny_network):
    image = viewer.add_image(noisy_image(), name="photo")
    labels = viewer.add_labels(np.zeros((32, 32), np.uint8), name="scratches")
    labels.brush_size = 5
    labels.paint((10, 10), 1)
    labels.paint((20, 25), 2)
    painted = int((labels.data > 0).sum())
    assert painted > 0
    widget = open_widget(viewer, "Inpaint", tiny_network)
    assert widget.mask.value is labels  # the only Labels layer is chosen by default
    widget.image.value = image
    widget.run_restoration()
    record = viewer.layers["photo [inpaint]"].metadata["napari_dip"]
    assert record["parameters"]["missing_pixels"] == painted

    widget.invert_mask.value = True
    widget.run_restoration()
    record = viewer.layers["photo [inpaint] [1]"].metadata["napari_dip"]
    assert record["parameters"]["missing_pixels"] == 32 * 32 - painted


def test_zero_pixels_are_missing_in_a_multichannel_image(viewer, sync_runs, tiny_network):
    bands = noisy_image((4, 32, 32)) + 1
    bands[:, ::8] = 0  # scan-line gaps in every band
    viewer.add_image(bands, name="bands")
    widget = open_widget(viewer, "Inpaint", tiny_network)
    widget.channel_axis.value = 0
    widget.zeros_missing.value = True
    widget.run_restoration()
    result = viewer.layers["bands [inpaint]"]
    assert result.data.shape == (4, 32, 32)
    parameters = result.metadata["napari_dip"]["parameters"]
    assert parameters["channel_axis"] == 0
    assert parameters["missing_pixels"] == 4 * 32 * 4  # 4 rows × 32 columns, in each of 4 bands


def test_rgb_inpainting_with_ground_truth(viewer, sync_runs, tiny_network):
    clean = (np.random.default_rng(2).random((32, 32, 3)) * 255).astype(np.uint8)
    damaged = clean.copy()
    damaged[10:14] = 255
    viewer.add_image(clean, name="clean", visible=False)
    viewer.add_image(damaged, name="damaged")
    mask = np.zeros((32, 32), np.uint8)
    mask[10:14] = 1
    viewer.add_labels(mask, name="text")
    widget = open_widget(viewer, "Inpaint", tiny_network)
    assert widget.image.value.name == "damaged"  # visible layers come first
    assert widget.channel_axis.value == -1
    widget.ground_truth.value = viewer.layers["clean"]
    widget.run_restoration()
    result = viewer.layers["damaged [inpaint]"]
    assert result.rgb and result.data.shape == (32, 32, 3)
    assert "psnr" in result.metadata["napari_dip"]["metrics"]
    assert any(p is not None for p in widget.plot.psnrs)


def test_stack_all_planes_current_plane_and_volume(viewer, sync_runs, tiny_network):
    stack = viewer.add_image(noisy_image((3, 32, 32)), name="stack", scale=(2.0, 1.0, 1.0))
    widget = open_widget(viewer, "Denoise", tiny_network, iterations=2)
    assert widget.planes.value == CURRENT_PLANE

    widget.planes.value = ALL_PLANES
    widget.run_restoration()
    result = viewer.layers["stack [denoise]"]
    assert result.data.shape == (3, 32, 32)
    assert result.metadata["napari_dip"]["planes"] == 3

    viewer.dims.set_current_step(0, 2)
    widget.planes.value = CURRENT_PLANE
    widget.run_restoration()
    plane = viewer.layers["stack [denoise] [1]"]
    assert plane.data.shape == (1, 32, 32)
    assert tuple(plane.translate) == (4.0, 0.0, 0.0)  # drawn on the plane it came from
    assert plane.metadata["napari_dip"]["planes"] == 1

    widget.planes.value = VOLUME
    widget.run_restoration()
    volume = viewer.layers["stack [denoise] [2]"]
    assert volume.data.shape == (3, 32, 32)
    assert volume.metadata["napari_dip"]["parameters"]["volumetric"] is True
    assert np.array_equal(stack.data, noisy_image((3, 32, 32)))


def test_history_layer_stacks_snapshots(viewer, sync_runs, tiny_network):
    viewer.add_image(noisy_image(), name="noisy")
    widget = open_widget(viewer, "Denoise", tiny_network)
    widget.history.value = True
    widget.run_restoration()
    history = viewer.layers["noisy [denoise] history"]
    assert history.data.shape == (3, 32, 32)
    assert history.metadata["napari_dip"]["snapshot_iterations"] == [2, 4, 6]


def test_super_resolution_lines_up_with_its_input(viewer, sync_runs, tiny_network):
    viewer.add_image(noisy_image((16, 16)), name="small", scale=(2.0, 2.0), translate=(10.0, 0.0))
    widget = open_widget(viewer, "Super-resolve", tiny_network)
    widget.factor_choice.value = 2
    widget.run_restoration()
    result = viewer.layers["small [super-resolved ×2]"]
    assert result.data.shape == (32, 32)
    assert tuple(result.scale) == (1.0, 1.0)
    # the 2 × 2 block of output pixels is centred on its input pixel
    assert tuple(result.translate) == (9.5, -0.5)
    assert result.metadata["napari_dip"]["parameters"]["factor"] == 2


def test_deconvolve_with_psf_layer_or_sigma(viewer, sync_runs, tiny_network):
    viewer.add_image(noisy_image(), name="blurred")
    psf = np.zeros((5, 5), np.float32)
    psf[1:4, 1:4] = 1
    viewer.add_image(psf, name="bead", visible=False)
    widget = open_widget(viewer, "Deconvolve", tiny_network)
    widget.run_restoration()
    assert viewer.layers["blurred [deconvolve]"].metadata["napari_dip"]["parameters"]["psf"] == "gaussian sigma 1.5"
    widget.psf.value = viewer.layers["bead"]
    assert not widget.psf_sigma.enabled
    widget.run_restoration()
    assert viewer.layers["blurred [deconvolve] [1]"].metadata["napari_dip"]["parameters"]["psf"] == "array (5, 5)"


def test_guided_restoration_with_a_larger_guide(viewer, sync_runs, tiny_network):
    viewer.add_image(noisy_image((16, 16)), name="multispectral")
    viewer.add_image(noisy_image((32, 32), seed=3), name="panchromatic")
    widget = open_widget(viewer, "Guided restoration", tiny_network)
    widget.image.value = viewer.layers["multispectral"]
    widget.guide.value = viewer.layers["panchromatic"]
    widget.factor_choice.value = 2
    widget.run_restoration()
    result = viewer.layers["multispectral [guided by panchromatic]"]
    assert result.data.shape == (32, 32)
    assert result.metadata["napari_dip"]["parameters"]["factor"] == 2


def test_bad_input_shows_a_notification_and_changes_no_layer(viewer, sync_runs, tiny_network):
    viewer.add_image(noisy_image((4, 4)), name="tiny")
    widget = open_widget(viewer, "Denoise", tiny_network)
    errors = error_count()
    widget.run_restoration()  # the engine refuses a 4 × 4 image
    assert error_count() == errors + 1
    assert "too small" in notification_manager.records[-1].message
    assert [layer.name for layer in viewer.layers] == ["tiny"]
    assert not widget.running

    inpaint = open_widget(viewer, "Inpaint", tiny_network)
    inpaint.run_restoration()  # no mask: refused before anything starts
    assert error_count() == errors + 2
    assert "nothing to fill" in notification_manager.records[-1].message
    assert [layer.name for layer in viewer.layers] == ["tiny"]


def test_failed_rerun_keeps_the_last_good_result(viewer, sync_runs, tiny_network):
    viewer.add_image(noisy_image(), name="noisy")
    widget = open_widget(viewer, "Denoise", tiny_network)
    widget.run_restoration()
    good = viewer.layers["noisy [denoise]"].data.copy()
    widget.lr.value = 0.5
    widget.extra_settings["lr"] = -1.0  # the engine's optimiser refuses a negative learning rate
    widget.run_restoration()
    assert np.array_equal(viewer.layers["noisy [denoise]"].data, good)


def test_preset_fills_the_form_and_only_changes_are_sent(viewer, tiny_network):
    from napari_dip.core.presets import get_settings

    viewer.add_image(noisy_image(), name="noisy")
    widget = open_widget(viewer, "Denoise", tiny_network)
    widget.preset.value = "paper"
    paper = get_settings("denoise", "paper")
    assert widget.iterations.value == paper.iterations
    assert widget.network.value == "skip"
    settings = widget.build_request().options.settings
    assert "reg_noise_std" not in settings and "lr" not in settings  # the preset's exact values are used
    widget.jitter.value = 0.05
    widget.ema.value = 0.0
    settings = widget.build_request().options.settings
    assert settings["reg_noise_std"] == 0.05 and settings["ema"] is None


def test_device_line_estimates_seconds_per_iteration(viewer, qtbot, tiny_network):
    viewer.add_image(noisy_image(), name="noisy")
    widget = open_widget(viewer, "Denoise", tiny_network)
    assert widget.device_label.text().startswith(("CPU", "CUDA", "Apple"))
    widget.update_device_line()
    qtbot.waitUntil(lambda: "per iteration" in widget.device_label.text(), timeout=60_000)
    assert "estimate" in widget.device_label.text()


def test_lazy_stack_is_read_plane_by_plane(viewer, sync_runs, tiny_network):
    da = pytest.importorskip("dask.array")
    data = noisy_image((3, 32, 32))
    reads = []

    def read_block(block, block_info=None):
        reads.append(block_info[None]["array-location"][0])  # which planes this read covers
        return data[slice(*block_info[None]["array-location"][0])]

    lazy = da.map_blocks(read_block, da.zeros((3, 32, 32), chunks=(1, 32, 32), dtype=np.float32),
                         dtype=np.float32)
    viewer.add_image(lazy, name="lazy", contrast_limits=(0, 100))
    widget = open_widget(viewer, "Denoise", tiny_network, iterations=2)
    widget.planes.value = ALL_PLANES
    reads.clear()
    widget.run_restoration()

    # each plane is read whole twice: once for the joint intensity range, once when its turn comes
    assert sorted(reads) == sorted([(p, p + 1) for p in range(3)] * 2)
    result = viewer.layers["lazy [denoise]"]
    assert result.data.shape == (3, 32, 32)
    record = result.metadata["napari_dip"]
    assert record["units_restored"] == 3 and record["work_unit"] == "plane"
    assert np.all(np.isfinite(result.data)) and np.all(result.data[2] != 0)


def test_zarr_backed_layer_current_plane_and_all_planes(viewer, sync_runs, tiny_network, tmp_path):
    zarr = pytest.importorskip("zarr")
    data = noisy_image((2, 32, 32))
    stored = zarr.open(str(tmp_path / "stack.zarr"), mode="w", shape=data.shape, chunks=(1, 32, 32),
                       dtype="float32")
    stored[:] = data
    viewer.add_image(stored, name="disk", contrast_limits=(0, 100))
    widget = open_widget(viewer, "Denoise", tiny_network, iterations=2)

    viewer.dims.set_current_step(0, 1)
    widget.run_restoration()
    plane = viewer.layers["disk [denoise]"]
    assert plane.data.shape == (1, 32, 32) and tuple(plane.translate)[0] == 1.0

    widget.planes.value = ALL_PLANES
    widget.run_restoration()
    stack = viewer.layers["disk [denoise] [1]"]
    assert stack.data.shape == (2, 32, 32) and stack.metadata["napari_dip"]["units_restored"] == 2
    assert np.array_equal(stored[:], data)  # the file is untouched


def structured_image(shape=(32, 32), seed=0):
    """(noisy, clean): smooth structure plus noise, so that the held-out estimate has something to measure."""
    y, x = np.mgrid[:shape[0], :shape[1]]
    clean = ((np.sin(x / 5) + np.cos(y / 4)) * 50 + 100).astype(np.float32)
    return clean + np.random.default_rng(seed).normal(0, 20, shape).astype(np.float32), clean


def test_automatic_stopping_plots_the_estimate_and_the_kept_iteration(viewer, sync_runs, tiny_network):
    noisy, clean = structured_image()
    viewer.add_image(clean, name="clean", visible=False)
    viewer.add_image(noisy, name="noisy")
    widget = open_widget(viewer, "Denoise", tiny_network, iterations=20, every=5)
    widget.ground_truth.value = viewer.layers["clean"]
    assert widget.auto_stop.value is True  # on by default
    widget.run_restoration()

    record = viewer.layers["noisy [denoise]"].metadata["napari_dip"]
    assert record["quality"]["automatic_stopping"] is True
    chosen = record["quality"]["chosen_iteration"]
    plot = widget.plot
    assert len(plot.estimated_psnrs) == len(plot.psnrs) == len(plot.losses)
    assert any(p is not None for p in plot.estimated_psnrs)
    assert any(p is not None for p in plot.psnrs)  # the truth of the current iterate, beside the estimate
    assert plot.chosen is not None and plot.chosen[0] == chosen and plot.chosen[1] == f"kept: it {chosen}"
    assert f"Kept iteration {chosen}" in widget.status.text()
    plot.grab()  # paints the three curves and the marker without an error


def test_unticking_automatic_stopping_passes_auto_stop_false(viewer, sync_runs, tiny_network):
    viewer.add_image(noisy_image(), name="noisy")
    widget = open_widget(viewer, "Denoise", tiny_network)
    assert widget.build_request().options.auto_stop is True
    widget.early_stopping.value = True  # one stopping rule at a time
    assert widget.auto_stop.value is False
    options = widget.build_request().options
    assert options.auto_stop is False and options.early_stopping is True
    widget.early_stopping.value = False
    assert widget.build_request().options.auto_stop is False
    widget.run_restoration()
    record = viewer.layers["noisy [denoise]"].metadata["napari_dip"]
    assert record["quality"]["automatic_stopping"] is False and record["iterations"] == ITERATIONS
    assert widget.plot.chosen is None and all(p is None for p in widget.plot.estimated_psnrs)


def test_camera_noise_model_fields(viewer, tiny_network):
    viewer.add_image(noisy_image(), name="noisy")
    widget = open_widget(viewer, "Denoise", tiny_network)
    assert widget.noise_model.gain.native.isHidden()  # (the viewer is not shown: ask whether it is hidden)
    widget.noise.value = "poisson-gaussian"
    assert not widget.noise_model.gain.native.isHidden()
    widget.noise_model.gain.value = 2.0
    options = widget.build_request().options
    assert options.noise == "poisson-gaussian" and options.gain == 2.0
    assert options.offset is None and options.read_noise is None  # 0: estimated from the image
    widget.noise.value = "gaussian"
    assert widget.build_request().options.gain is None


def test_amortised_run_shows_its_stages_and_says_what_it_chose(viewer, sync_runs, tiny_network):
    data = noisy_image((2, 64, 64), seed=3)
    viewer.add_image(data, name="movie")
    widget = open_widget(viewer, "Denoise", tiny_network, iterations=20, every=10)
    widget.extra_settings.update(student_steps=20, amortise_margin=100.0, auto_stop=False)
    widget.planes.value = ALL_PLANES
    widget.amortise.value = "on"
    formats = []
    widget.snapshot_shown.connect(lambda s: formats.append(widget.progress.format()))
    widget.run_restoration()
    result = viewer.layers["movie [denoise]"]
    record = result.metadata["napari_dip"]
    assert result.data.shape == (2, 64, 64) and record["amortised"]["used"] is True
    assert any(f.startswith("student: step") for f in formats)
    assert "Amortised: DIP on 1 teacher crops" in widget.status.text()
    np.testing.assert_array_equal(data, noisy_image((2, 64, 64), seed=3))


def test_the_final_status_wraps_and_is_not_cut_off_at_the_docks_default_size(viewer, sync_runs, qtbot,
                                                                              tiny_network):
    viewer.add_image(noisy_image(), name="noisy")
    widget = open_widget(viewer, "Denoise", tiny_network)
    widget.run_restoration()
    text = widget.status.text()
    assert text.startswith("Finished") and len(text) > 150  # several sentences: more than one line's width
    viewer.window._qt_window.show()  # under Xvfb: laid out at the dock's default size
    qtbot.waitUntil(lambda: widget.status.width() > 0, timeout=5_000)
    qtbot.wait(500)  # let the layout settle
    status, plot = widget.status, widget.plot
    assert status.wordWrap() and status.height() >= status.heightForWidth(status.width())
    assert not status.geometry().intersects(plot.geometry())  # the plot starts below the text's last line
