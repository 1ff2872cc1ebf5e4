"""The dock widgets, one per task: each adds its own fields to the shared form and turns them into engine arguments."""

from __future__ import annotations

import napari.layers
import numpy as np
from magicgui.widgets import CheckBox, ComboBox, FloatSpinBox

from ..core.tasks import get_task
from ..errors import DIPInputError
from .base import RestorationWidget, layer_choice
from .layer_data import InputSelection, companion_array, layer_array


def noise_model_choice() -> ComboBox:
    """The noise model drop-down: automatic (the default), Gaussian, Poisson, Poisson-Gaussian or speckle."""
    return ComboBox(label="noise model", value="auto",
                    choices=[("automatic (from the image)", "auto"), ("Gaussian (squared error)", "gaussian"),
                             ("Poisson (photon counts)", "poisson"),
                             ("Poisson-Gaussian (camera ADU)", "poisson-gaussian"),
                             ("speckle (radar)", "speckle")],
                    tooltip="Automatic fits how the image's variance grows with its intensity and chooses "
                            "Gaussian (flat), Poisson-Gaussian (rising) or speckle (rising with the square of "
                            "the intensity); the status line says which. "
                            "Poisson suits photon-counting data (fluorescence, low-light cameras) "
                            "whose values are counts ≥ 0; Poisson-Gaussian suits raw camera values (ADU): "
                            "counts times a gain, plus an offset and read noise; speckle suits synthetic aperture "
                            "radar amplitude or intensity (multiplicative noise).")


class NoiseModel:
    """The noise model choice and, for 'poisson-gaussian', the camera's gain, offset and read noise
    (0 = estimate from the image); for 'speckle', the looks (0 = estimate) and what the data hold."""

    def __init__(self):
        self.model = noise_model_choice()
        self.gain = FloatSpinBox(label="camera gain", value=0.0, min=0.0, max=1e6, step=0.01,
                                 tooltip="ADU per photon; 0: estimate from the image.")
        self.offset = FloatSpinBox(label="camera offset", value=0.0, min=0.0, max=1e9, step=1.0,
                                   tooltip="The dark level in ADU; 0: estimate from the image.")
        self.read_noise = FloatSpinBox(label="read noise σ", value=0.0, min=0.0, max=1e6, step=0.1,
                                       tooltip="Standard deviation of the read noise in ADU; 0: estimated "
                                               "with the offset.")
        self.looks = FloatSpinBox(label="looks", value=0.0, min=0.0, max=1000.0, step=1.0,
                                  tooltip="The number of looks of the radar data: 1 for single-look; 0: estimated "
                                          "from the image's homogeneous regions.")
        self.speckle = ComboBox(label="data", value="amplitude",
                                choices=[("amplitude (magnitude)", "amplitude"), ("intensity (power)", "intensity")],
                                tooltip="What the radar image holds: the signal's magnitude or its square.")
        self.model.changed.connect(self._show_model_fields)
        self._show_model_fields()

    @property
    def widgets(self) -> list:
        return [self.model, self.gain, self.offset, self.read_noise, self.looks, self.speckle]

    def _show_model_fields(self, *_):
        for widget in (self.gain, self.offset, self.read_noise):
            widget.visible = self.model.value == "poisson-gaussian"
        for widget in (self.looks, self.speckle):
            widget.visible = self.model.value == "speckle"

    def arguments(self) -> dict:
        """noise=, plus gain=, offset=, read_noise= for 'poisson-gaussian' (None where not given)."""
        arguments = {"noise": self.model.value}
        if self.model.value == "poisson-gaussian":
            for name in ("gain", "offset", "read_noise"):
                arguments[name] = getattr(self, name).value or None
        if self.model.value == "speckle":
            arguments.update(looks=self.looks.value or None, speckle=self.speckle.value)
        return arguments


class DenoiseWidget(RestorationWidget):
    """Removes noise: the network fits the image's structure before it fits the noise."""

    task = "denoise"
    title = "Denoise"

    def task_widgets(self):
        self.noise_model = NoiseModel()
        self.noise = self.noise_model.model
        return self.noise_model.widgets

    def task_arguments(self, selection):
        return self.noise_model.arguments()


class InpaintWidget(RestorationWidget):
    """Fills missing pixels (painted in a Labels layer, zeros or NaN) from the rest of the image."""

    task = "inpaint"
    title = "Inpaint"

    def task_widgets(self):
        self.mask = layer_choice(self.viewer, napari.layers.Labels, "mask", nullable=True,
                                 tooltip="Labels layer: painted pixels (label > 0) are filled in.")
        self.invert_mask = CheckBox(text="invert: painted pixels are the good ones", value=False)
        self.zeros_missing = CheckBox(text="pixels equal to 0 are missing", value=False,
                                      tooltip="For fill values such as Landsat's 0 (all channels 0). "
                                              "NaN pixels are always treated as missing.")
        if self.mask.choices[1:]:  # the usual case: one mask painted for this image
            self.mask.value = self.mask.choices[1]
        return [self.mask, self.invert_mask, self.zeros_missing]

    def task_arguments(self, selection: InputSelection):
        missing = None
        if self.mask.value is not None:
            labels = companion_array(layer_array(self.mask.value), selection)
            missing = labels == 0 if self.invert_mask.value else labels > 0
        data = selection.data
        if selection.streamed:
            import dask.array as da

            data = da.asarray(data)  # stays lazy: each plane is read when it is restored
        if self.zeros_missing.value:
            zeros = data == 0
            if selection.channel_axis is not None:
                zeros = zeros.all(axis=selection.channel_axis)
            missing = zeros if missing is None else missing | zeros
        # (a streamed stack is checked plane by plane by the engine)
        if missing is None and not selection.streamed and not np.isnan(data).any():
            raise DIPInputError("nothing to fill: choose a mask (a Labels layer painted over the pixels to "
                                "fill), or tick 'pixels equal to 0 are missing'")
        return {} if missing is None else {"mask": missing}


class SuperResolveWidget(RestorationWidget):
    """Enlarges the image ×2, ×4 or ×8: the network's output, shrunk, must match the input."""

    task = "superres"
    title = "Super-resolve"

    def task_widgets(self):
        spec = get_task(self.task)
        self.factor_choice = ComboBox(label="factor", value=spec.default_factor,
                                      choices=[(f"×{f}", f) for f in spec.factors],
                                      tooltip="The result has this many times more pixels along Y and X.")
        self.factor_choice.changed.connect(self.apply_preset_defaults)
        self.factor_choice.changed.connect(self._schedule_estimate)
        return [self.factor_choice]

    def factor(self):
        return self.factor_choice.value

    def task_arguments(self, selection):
        return {"factor": self.factor_choice.value}

    def result_name(self, layer_name):
        return f"{layer_name} [super-resolved ×{self.factor_choice.value}]"


class AxialSuperResolveWidget(SuperResolveWidget):
    """Fills in planes between the measured ones of a stack whose Z step is larger than its pixels: the
    network's volume, shrunk along Z, must match the stack. The result's Z scale is the input's / factor."""

    task = "axial-superres"
    title = "Axial super-resolve"

    def task_widgets(self):
        widgets = super().task_widgets()
        self.factor_choice.tooltip = ("The result has this many times more planes along Z (choose about the "
                                      "Z step divided by the XY pixel size). The stack is restored as one volume.")
        return widgets

    def result_name(self, layer_name):
        return f"{layer_name} [axial ×{self.factor_choice.value}]"


class DeconvolveWidget(RestorationWidget):
    """Removes a known blur (the point-spread function) and the noise with it."""

    task = "deconvolve"
    title = "Deconvolve"

    def task_widgets(self):
        self.psf = layer_choice(self.viewer, napari.layers.Image, "PSF", nullable=True,
                                tooltip="An image of the point-spread function (a bead, or a computed "
                                        "PSF), centred; normalised to unit sum. Leave empty to use a "
                                        "Gaussian of the σ below.")
        self.psf_sigma = FloatSpinBox(label="Gaussian PSF σ", value=1.5, min=0.1, max=50.0, step=0.1,
                                      tooltip="Standard deviation of a Gaussian blur, in pixels; used when "
                                              "no PSF layer is chosen.")
        self.noise_model = NoiseModel()
        self.noise = self.noise_model.model
        self.psf.changed.connect(lambda value: setattr(self.psf_sigma, "enabled", value is None))
        return [self.psf, self.psf_sigma, *self.noise_model.widgets]

    def task_arguments(self, selection):
        arguments = self.noise_model.arguments()
        if self.psf.value is not None:
            arguments["psf"] = np.asarray(layer_array(self.psf.value))
        else:
            arguments["psf_sigma"] = self.psf_sigma.value
        return arguments


class GuidedWidget(RestorationWidget):
    """Restores an image with a second, sharper image as the network input (flash/no-flash, pansharpening)."""

    task = "guided"
    title = "Guided restoration"

    def task_widgets(self):
        self.guide = layer_choice(self.viewer, napari.layers.Image, "guide",
                                  tooltip="The sharp image whose structure guides the result: the flash "
                                          "photo, or the panchromatic band. It must cover the result's grid.")
        spec = get_task(self.task)
        self.factor_choice = ComboBox(label="factor", value=spec.default_factor,
                                      choices=[("same size" if f == 1 else f"×{f}", f) for f in spec.factors],
                                      tooltip="How many times larger (along Y and X) the guide is than the "
                                              "image; the result has the guide's size.")
        self.factor_choice.changed.connect(self._schedule_estimate)
        return [self.guide, self.factor_choice]

    def factor(self):
        return self.factor_choice.value if self.factor_choice.value > 1 else None

    def task_arguments(self, selection):
        if self.guide.value is None:
            raise DIPInputError("choose the guide layer (the flash photo, or the panchromatic band)")
        if self.guide.value is selection.layer:
            raise DIPInputError("the guide must be another layer than the image to restore")
        arguments = {"guide": companion_array(layer_array(self.guide.value), selection)}
        if self.factor_choice.value > 1:
            arguments["factor"] = self.factor_choice.value
        return arguments

    def result_name(self, layer_name):
        return f"{layer_name} [guided by {self.guide.value.name}]"
