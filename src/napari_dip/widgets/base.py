"""The parts every napari-dip dock widget shares.

A widget reads layers into ``restore_iter`` arguments and hands the run to its
:class:`~napari_dip.widgets.controller.RunController` (thread worker, stop, one
run at a time); the run button, progress bar, plot and result layer subscribe
to the controller's signals. Task widgets (tasks.py) add their own fields and
arguments through ``task_widgets`` and ``task_arguments``. torch is imported
when the widget opens (for the preset defaults and the device list), never when
napari starts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import napari.layers
from magicgui.widgets import CheckBox, ComboBox, Container, FloatSpinBox, SpinBox
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QTimer, Signal
from qtpy.QtWidgets import QApplication, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget
from superqt import QCollapsible

from ..amortised import AMORTISE_WORDS, amortised_summary
from ..api import format_seconds, kept_summary, noise_summary, stage_line
from ..core.tasks import get_task
from ..errors import DIPInputError
from ..options import RestoreOptions
from .controller import RunController, RunStatus
from .layer_data import (
    CURRENT_PLANE,
    PLANE_MODES,
    VOLUME,
    InputSelection,
    Placement,
    companion_array,
    layer_array,
    result_placement,
    select_input,
    spatial_axes,
)
from .loss_plot import LossPlot
from .result_layers import ResultLayers
from .worker import seconds_per_iteration, start

NETWORK_KINDS = ("skip", "hourglass", "light")

class WrappedLabel(QLabel):
    """A word-wrapped label that claims the height its text needs at its width. Qt sizes a wrapped label from a
    guessed width, so in a dock short of height the final status lost its last lines under the loss plot."""

    def __init__(self, text: str = ""):
        super().__init__(text)
        self.setWordWrap(True)

    def setText(self, text: str):  # noqa: N802 - Qt's name
        super().setText(text)
        self._claim_height()

    def resizeEvent(self, event):  # noqa: N802 - Qt's name
        super().resizeEvent(event)
        self._claim_height()

    def _claim_height(self):
        needed = self.heightForWidth(self.width()) if self.width() > 0 else -1
        if needed > 0 and needed != self.minimumHeight():
            self.setMinimumHeight(needed)


@dataclass
class RunRequest:
    """What one run needs: the input chosen in the form, the engine's options as the form has them, and where
    the result goes."""

    selection: InputSelection
    options: RestoreOptions
    placement: Placement


def available_devices() -> list[str]:
    """The device choices: 'auto', 'cpu', every CUDA device, and 'mps' when it is available."""
    import torch

    devices = ["auto", "cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        devices.append("mps")
    return devices


def layer_choice(viewer, layer_type, label, nullable=False, tooltip=None) -> ComboBox:
    """A drop-down of the viewer's layers of one type; visible layers first, so hidden ground truths are not
    the default."""

    def choices(_widget):
        layers = [layer for layer in viewer.layers if isinstance(layer, layer_type)]
        layers.sort(key=lambda layer: not layer.visible)
        return [(layer.name, layer) for layer in layers]

    return ComboBox(label=label, choices=choices, nullable=nullable, tooltip=tooltip)


def qt_object_deleted(qt_object) -> bool:
    """True once Qt has deleted the C++ side of a widget (e.g. with its viewer); works for every Qt binding."""
    try:
        qt_object.objectName()
    except RuntimeError:
        return True
    return False


class RestorationWidget(QWidget):
    """Common form, run control, progress, device line and live plot of the task widgets."""

    task = "denoise"  # the engine's task name
    title = "Denoise"

    snapshot_shown = Signal(object)  # a Snapshot, once it is in the viewer
    run_finished = Signal()

    def __init__(self, napari_viewer):
        from ..core.presets import PRESETS

        super().__init__()
        self.viewer = napari_viewer
        # restore_iter settings applied on top of the form (scripts and tests use a tiny network this way)
        self.extra_settings: dict = {}
        # the run's state (worker, stop, one run at a time) lives here; it reports to the dock while it exists
        self.controller = RunController(alive=lambda: not qt_object_deleted(self.plot))
        self._results: ResultLayers | None = None
        self._is_stack = False  # the layer has axes beyond Y/X and channels: the plane choice applies
        self._preset_values: dict = {}
        self._estimates: dict = {}

        self.image = layer_choice(napari_viewer, napari.layers.Image, "image",
                                  tooltip="The degraded image. RGB layers are restored as colour images.")
        self.channel_axis = ComboBox(label="channel axis", choices=self._channel_axis_choices,
                                     tooltip="Axis of colour channels or spectral bands, restored together.")
        self.planes = ComboBox(label="planes", choices=PLANE_MODES, value=CURRENT_PLANE,
                               tooltip="For stacks: the plane on screen, every plane one after the other, "
                                       "or the whole volume with a 3D network.")
        self.ground_truth = layer_choice(napari_viewer, napari.layers.Image, "ground truth", nullable=True,
                                         tooltip="Optional clean image of the result's size: PSNR and SSIM "
                                                 "are then shown live and saved in the run record.")
        self.preset = ComboBox(label="preset", choices=PRESETS[self.task], value="fast",
                               tooltip="'fast' suits a CPU; 'paper' reproduces the paper's settings (GPU).")
        self.iterations = SpinBox(label="iterations", min=1, max=1_000_000)
        self.history = CheckBox(text="keep every snapshot in a history layer", value=False)
        self.main = Container(widgets=[self.image, *self.task_widgets(), self.channel_axis, self.planes,
                                       self.ground_truth, self.preset, self.iterations, self.history])

        collapsible = self._advanced_options()

        self.device_label = WrappedLabel()
        self.run_button = QPushButton("Run")
        self.progress = QProgressBar()
        self.progress.setFormat("ready")
        self.progress.setValue(0)
        self.status = WrappedLabel()
        self.plot = LossPlot()

        layout = QVBoxLayout(self)
        for part in (self.main.native, collapsible, self.device_label, self.run_button, self.progress,
                     self.status, self.plot):
            layout.addWidget(part)
        layout.addStretch()

        self._estimate_timer = QTimer(self)
        self._estimate_timer.setSingleShot(True)
        self._estimate_timer.setInterval(400)
        self._estimate_timer.timeout.connect(self.update_device_line)

        self.run_button.clicked.connect(self._on_run_button)
        self.preset.changed.connect(self.apply_preset_defaults)
        self.image.changed.connect(self._on_image_changed)
        self.channel_axis.changed.connect(self._update_plane_choice)
        for widget in (self.preset, self.planes, self.network, self.device):
            widget.changed.connect(self._schedule_estimate)

        self._subscribe(self.controller)
        # closing the viewer deletes this widget: stop the run so its thread ends cleanly
        self.destroyed.connect(self.controller.abort)
        app = QApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.controller.abort)

        active = napari_viewer.layers.selection.active
        if isinstance(active, napari.layers.Image) and active.visible:
            self.image.value = active
        self.apply_preset_defaults()
        self._on_image_changed()
        self.device_label.setText(self._describe_device())

    def _advanced_options(self) -> QCollapsible:
        """The *Advanced* section: network, learning rate, jitter, EMA, stopping rules, amortisation, seed, device
        and display interval, collapsed."""
        self.network = ComboBox(label="network", choices=NETWORK_KINDS,
                                tooltip="skip: the paper's encoder-decoder; hourglass: the same without "
                                        "skips; light: a small decoder, fast on a CPU and hard to over-fit.")
        self.lr = FloatSpinBox(label="learning rate", min=1e-5, max=1.0, step=0.0001)
        self.jitter = FloatSpinBox(label="input jitter σ", min=0.0, max=1.0, step=0.001,
                                   tooltip="Noise added to the network input at each iteration; "
                                           "regularises the fit.")
        self.ema = FloatSpinBox(label="EMA weight", min=0.0, max=0.9999, step=0.001,
                                tooltip="Show the exponential moving average of the outputs with this "
                                        "weight; 0 turns it off.")
        self.early_stopping = CheckBox(text="early stopping (ES-WMV)",
                                       tooltip="Stop when the running variance of the output stops "
                                               "falling and keep the best iterate.")
        self.auto_stop = CheckBox(text="automatic stopping (held-out pixels)", value=True,
                                  tooltip="Leave a few per cent of the pixels out of the fit and judge each "
                                          "iterate by its error there: the run keeps the best-estimated "
                                          "result, shows its estimated PSNR without a ground truth, and "
                                          "stops once it no longer improves (iterations is then a ceiling). "
                                          "Unticked: every iteration runs and the last result is kept.")
        # one stopping rule at a time: ticking one unticks the other
        self.auto_stop.changed.connect(lambda on: on and setattr(self.early_stopping, "value", False))
        self.early_stopping.changed.connect(lambda on: on and setattr(self.auto_stop, "value", False))
        self.seed = SpinBox(label="seed", min=0, max=2**31 - 1, value=0,
                            tooltip="The same seed gives the same result on the CPU.")
        self.device = ComboBox(label="device", choices=available_devices(), value="auto")
        self.display_every = SpinBox(label="display every", min=1, max=100_000,
                                     tooltip="Iterations between updates of the result layer and the curve.")
        self.amortise = ComboBox(label="amortise", choices=tuple(AMORTISE_WORDS), value="auto",
                                 tooltip="Teach once, apply everywhere: DIP restores a few crops, a student network "
                                         "learns from them and restores every plane, judged on a crop it never "
                                         "saw. auto: for denoising, inpainting, super-resolution and deconvolution "
                                         "of a megapixel (16 × 256²) of result or more, and denoising and axial "
                                         "super-resolution of volumes as large; off: every plane or tile fitted "
                                         "by DIP.")
        self.advanced = Container(widgets=[self.network, self.lr, self.jitter, self.ema, self.auto_stop,
                                           self.early_stopping, self.amortise, self.seed, self.device,
                                           self.display_every])
        collapsible = QCollapsible("Advanced")
        collapsible.addWidget(self.advanced.native)
        return collapsible

    # ----------------------------------------------------------------------------------------------
    # what task widgets provide

    def task_widgets(self) -> list:
        """Extra fields shown under the image choice."""
        return []

    def task_arguments(self, selection: InputSelection) -> dict:
        """Task arguments for restore_iter (mask, factor, psf, guide, noise); raise DIPInputError if incomplete."""
        return {}

    def factor(self) -> int | None:
        """The enlargement factor the form asks for (None: the task has none)."""
        return None

    def result_name(self, layer_name: str) -> str:
        return f"{layer_name} [{self.task}]"

    # ----------------------------------------------------------------------------------------------
    # the form

    def reset_choices(self, *_):
        """Called by napari when layers are added, removed, renamed or reordered."""
        self.main.reset_choices()
        self._on_image_changed()

    def _channel_axis_choices(self, _widget):
        layer = self.image.value if hasattr(self, "image") else None
        if layer is None:
            return [("none", None)]
        if layer.rgb:
            return [("RGB(A): last axis", -1)]
        shape = layer.data.shape
        if len(shape) < 3:  # a plain 2D image has no room for a channel axis
            return [("none", None)]
        return [("none", None)] + [(f"axis {axis} (size {size})", axis) for axis, size in enumerate(shape)]

    def _on_image_changed(self, *_):
        self.channel_axis.reset_choices()
        self._update_plane_choice()

    def _update_plane_choice(self, *_):
        layer = self.image.value
        self._is_stack = False
        if layer is not None:
            ndim = len(layer.data.shape)
            channel_axis = ndim - 1 if layer.rgb else self.channel_axis.value
            self._is_stack = len([a for a in range(ndim) if a != channel_axis]) > 2
        # a task that restores volumes (axial resolution) takes the whole stack: no choice to make
        self.planes.visible = self._is_stack and not get_task(self.task).volumetric
        self._schedule_estimate()

    def _plane_mode(self) -> str:
        """The plane choice in effect: the form's for a stack, the whole volume for a volume task."""
        if get_task(self.task).volumetric:
            return VOLUME
        return self.planes.value if self._is_stack else CURRENT_PLANE

    def apply_preset_defaults(self, *_):
        """Fill iterations and the advanced fields from the preset; only fields the user changes are sent."""
        from ..core.presets import get_settings

        settings = get_settings(self.task, self.preset.value, self.factor())
        values = {
            self.iterations: settings.iterations, self.network: settings.network.kind, self.lr: settings.lr,
            self.jitter: settings.reg_noise_std, self.ema: settings.ema or 0.0,
            self.early_stopping: settings.early_stopping, self.display_every: settings.snapshot_every,
        }
        for widget, value in values.items():
            widget.value = value
        # what the widgets show (rounded to their decimals), to spot the user's changes later
        self._preset_values = {id(widget): widget.value for widget in values}

    def _changed(self, widget) -> bool:
        return widget.value != self._preset_values.get(id(widget))

    def build_request(self) -> RunRequest:
        """The engine's arguments from the form; raises DIPInputError when something is missing."""
        layer = self.image.value
        if layer is None:
            raise DIPInputError("choose an image layer to restore (File → Open Sample → napari-dip has examples)")
        selection = select_input(layer, self.viewer, self._plane_mode(), self.channel_axis.value)
        ground_truth = None
        if self.ground_truth.value is not None:
            ground_truth = companion_array(layer_array(self.ground_truth.value), selection)
        options = RestoreOptions(
            task=self.task, preset=self.preset.value, iterations=self.iterations.value, seed=self.seed.value,
            device=self.device.value, channel_axis=selection.channel_axis, volumetric=selection.volumetric,
            snapshot_every=self.display_every.value, ground_truth=ground_truth, auto_stop=self.auto_stop.value,
            early_stopping=self.early_stopping.value if self._changed(self.early_stopping) else None,
            amortise=AMORTISE_WORDS[self.amortise.value], settings=self._changed_settings())
        options = options.updated(**self.task_arguments(selection)).updated(**self.extra_settings)
        if options.early_stopping and "auto_stop" not in self.extra_settings:
            options = replace(options, auto_stop=False)  # the engine takes one stopping rule at a time
        spatial_dims = 3 if selection.volumetric else 2
        factors = get_task(self.task).axis_factors(options.factor or 1, spatial_dims)
        placement = result_placement(selection, self.result_name(layer.name), factors)
        return RunRequest(selection, options, placement)

    def _changed_settings(self) -> dict:
        """The settings the user changed from the preset's (the preset's own values are used exactly)."""
        settings = {}
        if self._changed(self.network):
            settings["network_kind"] = self.network.value
        if self._changed(self.lr):
            settings["lr"] = self.lr.value
        if self._changed(self.jitter):
            settings["reg_noise_std"] = self.jitter.value
        if self._changed(self.ema):
            settings["ema"] = self.ema.value or None
        return settings

    # ----------------------------------------------------------------------------------------------
    # the device line

    def _describe_device(self) -> str:
        from ..core.device import describe_device, resolve_device

        try:
            return describe_device(resolve_device(self.device.value))
        except DIPInputError as exc:
            return str(exc)

    def _output_plane(self):
        """(spatial shape of one restored plane or volume, channels), for the estimate."""
        layer = self.image.value
        shape = layer.data.shape
        channel_axis = len(shape) - 1 if layer.rgb else self.channel_axis.value
        volumetric = self._plane_mode() == VOLUME
        spatial = [shape[a] for a in spatial_axes(len(shape), channel_axis, volumetric)]
        factors = get_task(self.task).axis_factors(self.factor() or 1, len(spatial))
        spatial = [s * f for s, f in zip(spatial, factors)]
        return tuple(spatial), 1 if channel_axis is None else shape[channel_axis]

    def _schedule_estimate(self, *_):
        if self.isVisible():
            self._estimate_timer.start()

    def showEvent(self, event):
        super().showEvent(event)
        self._schedule_estimate()

    def update_device_line(self):
        """'CPU, 2 threads: expect about 0.4 s per iteration (estimate)', timed in a worker thread."""
        description = self._describe_device()
        layer = self.image.value
        if layer is None or self.controller.busy:
            self.device_label.setText(description)
            return
        try:
            output_shape, channels = self._output_plane()
        except (DIPInputError, ValueError, IndexError) as exc:  # an odd layer shape: the run will say it again
            self.device_label.setText(f"{description} (no time estimate: {exc})")
            return
        overrides = dict(self.extra_settings)
        if self._changed(self.network):
            overrides["network_kind"] = self.network.value
        key = (self.task, self.preset.value, self.factor(), repr(sorted(overrides.items())), output_shape,
               channels, self.device.value)
        if key in self._estimates:
            self._show_estimate(key, self._estimates[key])
            return
        self.device_label.setText(f"{description}: timing a few iterations…")

        def done(result):
            if not qt_object_deleted(self.device_label):  # the viewer may have closed meanwhile
                self._estimates[key] = result
                self._show_estimate(key, result)

        start(self._estimate, key, overrides, on_returned=done)

    @staticmethod
    def _estimate(key, overrides):
        task, preset, factor, _, output_shape, channels, device = key
        try:
            return seconds_per_iteration(task, preset, factor, overrides, output_shape, channels, device)
        except Exception as exc:  # the estimate is a courtesy: never an error dialog
            return None, str(exc)

    def _show_estimate(self, key, result):
        seconds, description = result
        if seconds is None:
            self.device_label.setText(self._describe_device())
            return
        size = "×".join(map(str, key[4]))
        self.device_label.setText(
            f"{description}: expect about {seconds:.2g} s per iteration at {size} "
            f"(estimate from a short timing)")

    # ----------------------------------------------------------------------------------------------
    # running

    @property
    def running(self) -> bool:
        return self.controller.busy

    def _on_run_button(self):
        if self.running:
            self.stop_restoration()
        else:
            self.run_restoration()

    def run_restoration(self):
        """Start a run from the form. Refused, with a message, while another run is active."""
        refusal = self.controller.refusal()
        if refusal is not None:
            show_info(refusal)
            return
        try:
            request = self.build_request()
        except DIPInputError as exc:
            show_error(f"napari-dip: {exc}")
            return
        self._results = ResultLayers(self.viewer, request.placement, self.history.value)
        self._plane, self._iterations_before_plane, self._iterations_done = 0, 0, 0
        self._running_text = "Running"
        self.plot.clear()
        self.progress.setValue(0)
        self.progress.setFormat("starting…")
        self.status.setText("")
        self.controller.start(f"{self.title} on {request.selection.layer.name!r}", request.selection.data,
                              request.options)

    def stop_restoration(self):
        """End the run after the current iteration; its best result so far stays in the viewer."""
        self.controller.stop()

    # the controller's subscribers: the dock's parts first, the result layer last, since napari calls
    # made for the layer may process Qt events (and a closing viewer with them)

    def _subscribe(self, run: RunController):
        run.status_changed.connect(self._show_status)
        run.started.connect(self._show_start)
        run.snapshot.connect(self._count_iterations)
        run.snapshot.connect(self._update_plot)
        run.snapshot.connect(self._update_progress)
        run.snapshot.connect(self._update_result)
        run.snapshot.connect(self._announce_snapshot)
        run.failed.connect(self._show_failure)
        run.finished.connect(self._announce_finished)

    def _show_status(self, status: RunStatus):
        """The run button and the form follow the run's status."""
        if status is RunStatus.RUNNING:
            self.run_button.setText("Stop")
            self.run_button.setEnabled(True)
            self.main.enabled = self.advanced.enabled = False
        elif status is RunStatus.STOPPING:
            self.run_button.setText("Stopping…")
            self.run_button.setEnabled(False)
        else:
            self.run_button.setText("Run")
            self.run_button.setEnabled(True)
            self.main.enabled = self.advanced.enabled = True
            if status is RunStatus.FAILED:
                self.progress.setFormat("not finished")

    def _show_start(self, run):
        self.progress.setRange(0, self.controller.total)
        self._running_text = f"Running on {run.device_description}"
        self.status.setText(self._running_text)

    def _count_iterations(self, snapshot):
        """Iterations done over all planes: automatic stopping may end a plane early."""
        if snapshot.plane != self._plane:  # a new plane: count the last plane's iterations as done
            self._iterations_before_plane = self._iterations_done
            self._plane = snapshot.plane
        self._iterations_done = self._iterations_before_plane + snapshot.iteration

    def _update_plot(self, snapshot):
        if not math.isfinite(snapshot.loss):  # an amortised run's judge and application: no loss to plot
            return
        quality = snapshot.quality or {}
        self.plot.add_point(self._iterations_done, snapshot.loss, current_psnr(snapshot),
                            quality.get("estimated_psnr"))
        if quality.get("chosen_iteration") is not None:
            chosen = quality["chosen_iteration"]
            self.plot.set_chosen(self._iterations_before_plane + chosen, f"kept: it {chosen}")

    def _update_progress(self, snapshot):
        """The progress bar, the status line and, at the end, the device line's measured speed."""
        run = self.controller
        done = self._iterations_done
        quality = snapshot.quality or {}
        self.progress.setValue(run.steps)
        if snapshot.done:
            self.progress.setFormat(f"done · {done} iterations in {format_seconds(snapshot.seconds)}")
            if done:
                self.device_label.setText(f"{snapshot.record.device}: the last run took "
                                          f"{snapshot.seconds / done:.2g} s per iteration")
            sentences = [f"Finished: {snapshot.stop_reason}"]
            kept = kept_description(snapshot.record.quality if snapshot.record else None, quality)
            if kept:
                sentences.append(kept)
            if "psnr" in snapshot.metrics:
                sentences.append(f"PSNR {snapshot.metrics['psnr']:.2f} dB, SSIM {snapshot.metrics['ssim']:.3f}")
            if snapshot.record:
                noise = noise_summary(snapshot.record.parameters)
                sentences.append(noise[0].upper() + noise[1:])
                amortised = amortised_summary(snapshot.record)
                if amortised:
                    sentences.append(amortised[0].upper() + amortised[1:])
            sentences.append("The run record is in the layer's metadata['napari_dip'].")
            self.status.setText(". ".join(sentences))
            return
        if snapshot.stage:  # an amortised run: its stage and the time left, in thousandths of the whole run
            self.progress.setFormat(stage_line(snapshot))
            if run.status is RunStatus.STOPPING:
                self.status.setText("Stopping…")
            return
        rate = done / snapshot.seconds if snapshot.seconds > 0 else float("nan")
        eta = (run.total - run.steps) / rate if rate > 0 else float("nan")
        plane = f"plane {snapshot.plane + 1}/{snapshot.planes} · " if snapshot.planes > 1 else ""
        self.progress.setFormat(f"{plane}iteration {snapshot.iteration}/{snapshot.total} · "
                                f"{rate:.2f} it/s · ETA {format_seconds(eta)}")
        if run.status is RunStatus.STOPPING:
            self.status.setText("Stopping after this iteration…")
        elif quality.get("chosen_iteration") is not None:
            self.status.setText(f"{self._running_text} · {running_quality(quality)}")

    def _update_result(self, snapshot):
        self._results.show(snapshot, self._iterations_done)
        if snapshot.done:
            self._results.finish(snapshot.record)

    def _announce_snapshot(self, snapshot):
        if not qt_object_deleted(self):
            self.snapshot_shown.emit(snapshot)

    def _show_failure(self, message: str):
        self.status.setText(f"Not run: {message}")
        show_error(f"napari-dip: {message}")

    def _announce_finished(self):
        self.run_finished.emit()


def current_psnr(snapshot) -> float | None:
    """The true PSNR of the current iterate, to set beside its estimate: ``psnr_current`` when the engine
    gives it (automatic stopping keeps an earlier result, whose PSNR is ``psnr``), else ``psnr``. The final
    snapshot of an automatically stopped run holds the kept result's PSNR only: no point then."""
    metrics = snapshot.metrics or {}
    if "psnr_current" in metrics:
        return metrics["psnr_current"]
    if snapshot.done and snapshot.quality:
        return None
    return metrics.get("psnr")


def _decibels(value) -> str:
    return "not measurable yet" if value is None else f"{value:.1f} dB"


def running_quality(quality: dict) -> str:
    """'estimated PSNR 24.9 dB · keeping iteration 27 (25.2 dB)' from a snapshot's ``quality``."""
    text = f"estimated PSNR {_decibels(quality.get('estimated_psnr'))} · keeping iteration " \
           f"{quality['chosen_iteration']}"
    if quality.get("chosen_estimated_psnr") is not None:
        text += f" ({quality['chosen_estimated_psnr']:.1f} dB)"
    return text


def kept_description(record_quality: dict | None, quality: dict) -> str:
    """'Kept iteration 27, estimated PSNR 25.2 dB' from the record's ``quality`` entry, or from the final
    snapshot's own ``quality`` when the record has none; '' when automatic stopping was off."""
    if record_quality is None and quality:
        record_quality = {"chosen_iteration": quality.get("chosen_iteration"),
                          "estimated_psnr": quality.get("chosen_estimated_psnr")}
    kept = kept_summary(record_quality)
    return f"Kept {kept}" if kept else ""
