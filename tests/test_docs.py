"""docs/ stays true to the code."""

from pathlib import Path

from napari_dip.core.presets import preset_table

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_presets_page_shows_the_presets_as_the_code_defines_them():
    assert preset_table() in (DOCS / "presets.md").read_text()
