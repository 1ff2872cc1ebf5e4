"""napari dock widgets: read layers, run the engine in a thread worker, write the results back as layers.

The manifest (napari.yaml) points at these classes; napari imports this package
only when a widget is opened.
"""

from .base import RestorationWidget
from .tasks import (
    AxialSuperResolveWidget,
    DeconvolveWidget,
    DenoiseWidget,
    GuidedWidget,
    InpaintWidget,
    SuperResolveWidget,
)

__all__ = ["RestorationWidget", "DenoiseWidget", "InpaintWidget", "SuperResolveWidget", "DeconvolveWidget",
           "GuidedWidget", "AxialSuperResolveWidget"]
