"""Errors that napari-dip raises for the user to read."""


class DIPInputError(ValueError):
    """The input cannot be restored as given; the message says what to change."""


class DIPMemoryError(MemoryError):
    """The run needs more memory than the device has; the message says how much and what to try."""
