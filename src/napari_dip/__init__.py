"""napari-dip: Deep Image Prior restoration for napari, Python and the command line.

``import napari_dip`` stays light: torch is imported only when a restoration runs.
"""

from importlib.metadata import PackageNotFoundError, version

from .errors import DIPInputError, DIPMemoryError

try:
    __version__ = version("napari-dip")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["restore", "restore_iter", "DIPInputError", "DIPMemoryError", "__version__"]


def __getattr__(name):
    # The API module imports numpy only; torch waits until a run starts.
    if name in ("restore", "restore_iter"):
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'napari_dip' has no attribute {name!r}")
