"""The tutorial notebook runs from top to bottom, and its committed copy is what
notebooks/make_tutorial.py writes (outputs stripped)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def _maker():
    spec = importlib.util.spec_from_file_location("make_tutorial", NOTEBOOKS / "make_tutorial.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_notebook_is_the_generated_one_without_outputs():
    nbformat = pytest.importorskip("nbformat")
    committed = nbformat.read(NOTEBOOKS / "tutorial.ipynb", as_version=4)
    built = _maker().build()
    assert [c.source for c in committed.cells] == [c.source for c in built.cells]
    assert all(not c.get("outputs") for c in committed.cells if c.cell_type == "code")


@pytest.mark.slow
def test_the_tutorial_notebook_runs(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    notebook = nbformat.read(NOTEBOOKS / "tutorial.ipynb", as_version=4)
    client = nbclient.NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
    )
    client.execute()  # raises CellExecutionError, with the cell and its traceback, on failure
    images = [
        output
        for cell in notebook.cells
        for output in cell.get("outputs", [])
        if "image/png" in output.get("data", {})
    ]
    assert len(images) == 2  # the reliability plot and the learning curves, inline
