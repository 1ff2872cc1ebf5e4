"""``python -m napari_dip`` is the ``napari-dip`` command."""

from .cli import main

raise SystemExit(main())
