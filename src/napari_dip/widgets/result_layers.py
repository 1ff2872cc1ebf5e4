"""Writing snapshots into the viewer: the result layer and the optional snapshot history."""

from __future__ import annotations

import numpy as np

from .layer_data import Placement

METADATA_KEY = "napari_dip"


class ResultLayers:
    """Creates the result layer at the first snapshot and updates it in place after that.

    Contrast limits are set once, from the input layer, so the picture does not
    flicker while the restoration converges. With ``keep_history`` a second layer
    stacks every snapshot along a new leading axis, to scrub through the run.
    """

    def __init__(self, viewer, placement: Placement, keep_history: bool = False):
        self.viewer = viewer
        self.placement = placement
        self.keep_history = keep_history
        self.layer = None
        self.history_layer = None
        self._frames: list[np.ndarray] = []
        self._frame_iterations: list[int] = []

    def _add(self, data, name, lead=()):
        p = self.placement
        kwargs = dict(
            name=name, rgb=p.rgb, contrast_limits=p.contrast_limits,
            scale=(1.0,) * len(lead) + p.scale, translate=(0.0,) * len(lead) + p.translate,
        )
        if p.units is not None:
            kwargs["units"] = ("pixel",) * len(lead) + p.units
        if p.axis_labels is not None:
            kwargs["axis_labels"] = tuple(lead) + p.axis_labels
        if p.colormap is not None:
            kwargs["colormap"] = p.colormap
        return self.viewer.add_image(data, **kwargs)

    def _set_data(self, layer, data):
        limits = layer.contrast_limits
        layer.data = data
        if tuple(layer.contrast_limits) != tuple(limits):
            layer.contrast_limits = limits

    def _alive(self, layer) -> bool:
        """False once the user has deleted the layer: the run then stops writing to it."""
        return layer is not None and layer in self.viewer.layers

    def show(self, snapshot, iteration_label: int):
        """Put one snapshot into the viewer; ``iteration_label`` names it in the history."""
        if self.layer is None:
            self.layer = self._add(snapshot.image, self.placement.name)
        elif self._alive(self.layer):
            self._set_data(self.layer, snapshot.image)
        if not self.keep_history:
            return
        self._frames.append(np.array(snapshot.image))  # a frame of its own, whatever the engine does next
        self._frame_iterations.append(iteration_label)
        stack = np.stack(self._frames)
        if self.history_layer is None:
            self.history_layer = self._add(stack, f"{self.placement.name} history", lead=("snapshot",))
        elif self._alive(self.history_layer):
            self._set_data(self.history_layer, stack)
        if self.history_layer is not None:
            self.history_layer.metadata[METADATA_KEY] = {"snapshot_iterations": list(self._frame_iterations)}

    def finish(self, record):
        """Attach the run record (a record.RunRecord, None where there is none) to the final result, as the
        dictionaries of its JSON, so that the layer's metadata saves and reads like any other."""
        record = record.as_dict() if record is not None else None
        if self._alive(self.layer):
            self.layer.metadata[METADATA_KEY] = record
        if self._alive(self.history_layer):
            self.history_layer.metadata[METADATA_KEY] = {
                "snapshot_iterations": list(self._frame_iterations), "record": record}
