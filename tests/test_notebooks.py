"""The lesson notebooks: built from their sources, committed with the outputs of a full run, and executable.

Structure tests read the committed ``notebooks/*.ipynb`` files (no kernel). The execution test runs every lesson
top to bottom in FAST mode (``HLGFA_FAST=1``) with nbclient, headless, into a temporary copy, and fails on any
cell error, as a reader's "Run All" would.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / "notebooks"
LESSONS = ["00_quickstart", "01_features", "02_priors", "03_alignment", "04_augmentation", "05_evaluation",
           "07_beyond_bottle"]
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
IMAGE_MIMES = ("image/png", "image/jpeg")
# Lessons whose committed outputs may, for now, come from a FAST run (empty: every lesson is held to a full run)
FAST_OUTPUTS_FOR_NOW: set[str] = set()
# the write-this gap of each lesson: its stub's name, which is also its exercise in hlgfa_lite.exercises (lesson 07,
# about an extension beyond the paper, has check-yourself questions but no gap)
WRITE_THIS = {"00_quickstart": "image_score", "01_features": "misalignment", "02_priors": "copy_the_target",
              "03_alignment": "film", "04_augmentation": "brightness", "05_evaluation": "pro_at"}
# Lessons not yet rewritten for predict-then-reveal (empty: every lesson folds its answers)
NOT_YET_REWRITTEN: set[str] = set()


def _has_image(output) -> bool:
    return any(mime in output.get("data", {}) for mime in IMAGE_MIMES)


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


build = _script("build_notebooks")


def _read(lesson: str):
    return nbformat.read(NOTEBOOKS / f"{lesson}.ipynb", as_version=4)


def _outputs(notebook):
    return [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.get("outputs", [])]


def test_every_lesson_has_a_source_and_a_notebook():
    sources = sorted(p.stem for p in build.lesson_sources())
    notebooks = sorted(p.stem for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    assert sources == LESSONS and notebooks == LESSONS


@pytest.mark.parametrize("lesson", LESSONS)
def test_notebook_matches_its_source(lesson):
    """A notebook edited by hand, or a source edited without rebuilding, is stale."""
    notebook = _read(lesson)
    assert build.same_cells(notebook, build.build_cells(build.SOURCES / f"{lesson}.py")), (
        f"{lesson}.ipynb differs from notebooks/src/{lesson}.py: run scripts/build_notebooks.py, then "
        "scripts/run_notebooks.py")


@pytest.mark.parametrize("lesson", LESSONS)
def test_notebook_structure(lesson):
    notebook = _read(lesson)
    cells = notebook.cells
    code = "\n".join(c.source for c in cells if c.cell_type == "code")
    # an Open-in-Colab link to this very notebook, at the top
    assert cells[0].cell_type == "markdown" and build.colab_url(f"{lesson}.ipynb") in cells[0].source
    # the first code cell is the shared, idempotent setup with the FAST switch
    first_code = next(c for c in cells if c.cell_type == "code")
    assert 'os.environ.get("HLGFA_FAST") == "1"' in first_code.source and "%pip install" in first_code.source
    # the library is imported, and at least one ipywidgets control is built
    assert re.search(r"^from hlgfa_lite|^import hlgfa_lite", code, re.M)
    assert "widgets.interact(" in code
    # equations in Markdown/LaTeX
    assert any(c.cell_type == "markdown" and "$" in c.source for c in cells)
    # a check-yourself section, followed by a code cell that checks the answers
    index = next(i for i, c in enumerate(cells) if c.cell_type == "markdown" and "## Check yourself" in c.source)
    assert any(c.cell_type == "code" for c in cells[index + 1:])
    # predict, then reveal: every question's answer is folded away, not printed next to it
    questions = re.findall(r"^\d+\. ", cells[index].source, re.M)
    assert questions
    if lesson not in NOT_YET_REWRITTEN:
        assert cells[index].source.count("<details><summary>Answer</summary>") == len(questions)
    # and, in lessons 00-05, a write-this gap: a stub the reader fills in, graded by the library's check function
    if lesson in WRITE_THIS:
        name = WRITE_THIS[lesson]
        assert re.search(rf'^def {name}\(.*\n(    #.*\n)*    raise NotImplementedError$', code, re.M), lesson
        assert re.search(rf'^check\("{name}", {name}\)$', code, re.M), lesson


def test_every_exercise_has_a_lesson():
    """Each write-this gap the library grades is asked for by exactly one lesson."""
    from hlgfa_lite.exercises import EXERCISES

    assert sorted(WRITE_THIS.values()) == sorted(EXERCISES)


@pytest.mark.parametrize("lesson", LESSONS)
def test_committed_outputs_come_from_a_clean_full_run(lesson):
    """Outputs must be committed (GitHub shows them without a kernel), complete, error-free and from full mode."""
    notebook = _read(lesson)
    code_cells = [c for c in notebook.cells if c.cell_type == "code"]
    counts = [c.execution_count for c in code_cells]
    assert all(counts), f"{lesson}: cells without outputs; run scripts/run_notebooks.py (full mode) and commit"
    assert counts == list(range(1, len(code_cells) + 1)), f"{lesson}: outputs are not from one top-to-bottom run"
    outputs = _outputs(notebook)
    errors = [o for o in outputs if o.output_type == "error"]
    assert not errors, f"{lesson}: error output {errors[0].ename}: {errors[0].evalue}"
    streams = "".join(o.get("text", "") for o in outputs if o.output_type == "stream" and o.get("name") == "stderr")
    assert "Traceback" not in streams
    assert any(_has_image(o) for o in outputs), f"{lesson}: no figure in the committed outputs"
    assert any(WIDGET_MIME in o.get("data", {}) for o in outputs), f"{lesson}: no widget in the committed outputs"
    # the widgets' state is stored with the outputs, so GitHub and nbviewer draw the controls without a kernel
    state = notebook.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {}).get("state", {})
    shown = [o["data"][WIDGET_MIME]["model_id"] for o in outputs if WIDGET_MIME in o.get("data", {})]
    assert shown and all(model_id in state for model_id in shown), f"{lesson}: widget state not stored for its controls"
    setup_text = "".join(o.get("text", "") for o in code_cells[0].outputs if o.output_type == "stream")
    mode = "FAST=True" if lesson in FAST_OUTPUTS_FOR_NOW else "FAST=False"
    assert mode in setup_text, f"{lesson}: committed outputs are not from a {mode} run (see FAST_OUTPUTS_FOR_NOW)"


def test_readme_lists_every_lesson_with_its_colab_link():
    readme = (NOTEBOOKS / "README.md").read_text()
    for lesson in LESSONS:
        assert f"({lesson}.ipynb)" in readme and build.colab_url(f"{lesson}.ipynb") in readme
    assert "jupyter lab notebooks/" in readme


@pytest.mark.parametrize("lesson", LESSONS)
def test_lesson_runs_headless_in_fast_mode(lesson, tmp_path, monkeypatch):
    """Every cell in order, HLGFA_FAST=1, nbclient, no display: any error fails (timeouts only catch hangs)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    runner = _script("run_notebooks")
    executed = tmp_path / f"{lesson}.ipynb"
    runner.execute(NOTEBOOKS / f"{lesson}.ipynb", fast=True, out_path=executed, timeout=600)
    notebook = nbformat.read(executed, as_version=4)
    outputs = _outputs(notebook)
    assert not [o for o in outputs if o.output_type == "error"]
    assert any(_has_image(o) for o in outputs)
    assert any(WIDGET_MIME in o.get("data", {}) for o in outputs)
    setup_text = "".join(o.get("text", "") for o in notebook.cells[1].outputs if o.output_type == "stream")
    assert "FAST=True" in setup_text
    assert json.dumps(notebook.metadata.get("kernelspec", {}))  # a plain notebook other Jupyters can open
