"""docs/ stays true to the code."""

import dataclasses
import inspect
import re
from pathlib import Path

import napari_dip
from napari_dip.core.networks import NetworkSpec
from napari_dip.core.presets import Settings, preset_table

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_presets_page_shows_the_presets_as_the_code_defines_them():
    assert preset_table() in (DOCS / "presets.md").read_text()


def _undocumented(names, text, prefix=""):
    """The names that ``text`` never shows as code: `name`, `name=…`, or with ``prefix`` (`network_kind`)."""
    return sorted(name for name in names
                  if not re.search(rf"`(?:{prefix})?{re.escape(name)}(?:=[^`]*)?`", text))


def test_every_argument_of_the_public_functions_is_on_the_api_page():
    text = (DOCS / "api.md").read_text()
    missing = {}
    for name in napari_dip.__all__:
        function = getattr(napari_dip, name)
        if not inspect.isfunction(function):
            continue  # the errors and the version
        arguments = [p.name for p in inspect.signature(function).parameters.values()
                     if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        missing[name] = _undocumented(arguments, text)
    assert not any(missing.values()), f"docs/api.md does not describe these arguments: {missing}"


def test_every_setting_and_network_field_is_documented():
    text = (DOCS / "api.md").read_text() + (DOCS / "presets.md").read_text()
    settings = [f.name for f in dataclasses.fields(Settings)]
    assert not _undocumented(settings, text), "docs/presets.md (or api.md) does not describe these settings"
    network = [f.name for f in dataclasses.fields(NetworkSpec)]
    assert not _undocumented(network, text, prefix=r"network[._]"), "undocumented network fields"


def test_restore_shows_every_option_and_its_docstring_names_every_task_noise_model_and_option():
    from napari_dip.core.tasks import TASKS
    from napari_dip.job import NOISE_MODELS  # the core's models and 'auto'

    parameters = inspect.signature(napari_dip.restore).parameters
    assert list(parameters) == list(inspect.signature(napari_dip.restore_iter).parameters)
    doc = napari_dip.restore.__doc__
    documented = set(re.findall(r"^    (\w[\w, ]*) :", doc, flags=re.M))
    names = {n.strip() for entry in documented for n in entry.split(",")}
    options = {p.name for p in parameters.values() if p.kind is not p.VAR_KEYWORD}
    assert options <= names, f"restore's docstring misses {sorted(options - names)}"
    assert "**settings" in doc
    for task in TASKS:
        assert f"'{task}'" in doc.split("task :")[1].split("\n")[0], task
    for model in NOISE_MODELS:
        assert f"'{model}'" in doc.split("noise :")[1].split("\n")[0], model
