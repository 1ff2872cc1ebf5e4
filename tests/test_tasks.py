"""The task registry (core/tasks.py): its facts, the engine's use of them, and the docs' task tables."""

import re
from pathlib import Path

import numpy as np
import pytest
from conftest import DEVICE

import napari_dip
from napari_dip import DIPInputError
from napari_dip.core import presets
from napari_dip.core.tasks import TASKS, Task, default_factor, get_task

ROOT = Path(__file__).resolve().parents[1]


def test_every_registered_task_is_found_by_name_and_has_settings():
    assert tuple(TASKS) == presets.TASKS
    for name, task in TASKS.items():
        assert get_task(name) is task and isinstance(task, Task) and task.name == name
        assert task.summary and task.title and task.presets[0] == "fast"
        assert presets.PRESETS[name] == task.presets
        for preset in task.presets:
            presets.get_settings(name, preset, task.default_factor)
    with pytest.raises(ValueError, match="unknown task 'sharpen'; choose one of: denoise, inpaint"):
        get_task("sharpen")


def test_factor_defaults_and_choices():
    expected = {"denoise": 1, "inpaint": 1, "superres": 4, "deconvolve": 1, "guided": 1}
    assert {name: TASKS[name].factor(None) for name in expected} == expected
    assert default_factor("superres") == 4 and default_factor("denoise") == 1 and default_factor("nonsense") == 1
    assert get_task("superres").factors == (2, 4, 8)
    assert not get_task("denoise").takes_factor and not get_task("inpaint").takes_factor
    assert get_task("deconvolve").factor(2) == 2 and get_task("guided").factor(1) == 1


@pytest.mark.parametrize("task, factor, message", [
    ("superres", 3, "factor must be 2, 4 or 8; got 3"),
    ("superres", 1, "super-resolution needs factor 2, 4 or 8"),
    ("denoise", 2, "task 'denoise' takes no factor; use task='superres' to enlarge the image"),
    ("inpaint", 4, "task 'inpaint' takes no factor"),
    ("denoise", 3, "factor must be 2, 4 or 8; got 3"),
    ("deconvolve", 16, "factor must be 2, 4 or 8; got 16"),
    ("guided", 5, "factor must be 2, 4 or 8; got 5"),
])
def test_bad_factors_are_rejected_by_restore(task, factor, message):
    image = np.random.default_rng(0).random((32, 32)).astype(np.float32)
    extra = {"inpaint": {"mask": image > 0.5}, "deconvolve": {"psf_sigma": 1.0}, "guided": {"guide": image}}
    with pytest.raises(DIPInputError, match=re.escape(message)):
        napari_dip.restore(image, task, factor=factor, iterations=1, device=DEVICE, **extra.get(task, {}))


def _task_table(path, header):
    """The rows of the table under ``header`` in ``path``: {task: [the cells after the task]}."""
    lines = (ROOT / path).read_text().splitlines()
    start = lines.index(header)
    rows = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows[cells[0].strip("`")] = cells[1:]
    return rows


@pytest.mark.parametrize("path, header", [
    ("README.md", "| task | degradation model A | presets (`fast` is the default) |"),
    ("docs/api.md", "| task | presets |"),
])
def test_the_docs_task_tables_list_the_registered_tasks_and_their_presets(path, header):
    rows = _task_table(path, header)
    assert list(rows) == list(TASKS), f"{path}: the task table does not list the registered tasks"
    for name, cells in rows.items():
        assert tuple(re.findall(r"`([^`]+)`", cells[-1])) == TASKS[name].presets, f"{path}: presets of {name}"


def test_the_demo_table_lists_the_registered_tasks():
    photo_tasks = [name for name, task in TASKS.items() if not task.volumetric]  # the demo restores a photo
    assert list(_task_table("docs/cli.md", "| task | degradation |")) == photo_tasks
