"""The npe2 manifest: valid, and contributes what the menus promise."""

import subprocess
import sys

import pytest

npe2 = pytest.importorskip("npe2")

SAMPLES = ["noisy_camera", "astronaut_text", "low_resolution", "fluorescence", "scan_line_gaps", "pansharpening"]


@pytest.fixture(scope="module")
def manifest():
    return npe2.PluginManifest.from_distribution("napari-dip")


def test_npe2_validate_passes():
    result = subprocess.run(["npe2", "validate", "napari-dip"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_manifest_contributes_widgets_samples_and_filter_menu(manifest):
    contributions = manifest.contributions
    assert [w.display_name for w in contributions.widgets][:2] == ["Denoise", "Inpaint"]
    assert [s.key for s in contributions.sample_data] == SAMPLES
    filter_menu = [item.command for item in contributions.menus["napari/layers/filter"]]
    assert filter_menu == ["napari-dip.denoise_widget", "napari-dip.inpaint_widget"]
    commands = {c.id: c.python_name for c in contributions.commands}
    for widget in contributions.widgets:
        assert commands[widget.command].startswith("napari_dip.widgets:")
    # one widget per registered task
    import napari_dip.widgets as widgets
    from napari_dip.core.tasks import TASKS

    tasks = [getattr(widgets, commands[w.command].split(":")[1]).task for w in contributions.widgets]
    assert sorted(tasks) == sorted(TASKS)


def test_every_command_imports(manifest):
    for command in manifest.contributions.commands:
        module, _, name = command.python_name.partition(":")
        assert callable(getattr(__import__(module, fromlist=[name]), name))


def test_widget_modules_do_not_import_torch():
    code = "import sys, napari_dip.widgets, napari_dip._sample_data; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr


@pytest.mark.gui
def test_denoise_and_inpaint_are_in_the_layers_filter_menu(make_napari_viewer):
    from napari._app_model import get_app_model

    make_napari_viewer()
    items = get_app_model().menus.get_menu("napari/layers/filter")
    commands = {getattr(item, "command", None) and item.command.id for item in items}
    assert {"napari-dip.denoise_widget", "napari-dip.inpaint_widget"} <= commands
