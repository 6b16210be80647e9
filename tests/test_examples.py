"""The notebooks in examples/ run from top to bottom without an error (executed headlessly)."""

import os
import re
import time
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parents[1] / "examples"
IN_CI = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _import_nbclient():
    try:
        import nbclient
        import nbformat
    except ImportError as error:
        if IN_CI:
            pytest.fail(f"{error}: CI installs the test extras (nbclient, nbformat, ipykernel)",
                        pytrace=False)
        pytest.skip(f"{error}: install the test extras (`pip install -e '.[test]'`)")
    return nbclient, nbformat


def run_notebook(name, directory):
    """Execute examples/<name> in ``directory``; returns the outputs of its code cells, after
    checking that none is an error and that it ran within a minute."""
    nbclient, nbformat = _import_nbclient()
    notebook = nbformat.read(EXAMPLES / name, as_version=4)
    start = time.perf_counter()
    # the kernel of this interpreter (ipykernel in the same environment), run in a scratch
    # directory: the notebook writes nothing into the repository
    nbclient.NotebookClient(notebook, kernel_name="python3", timeout=60,
                            resources={"metadata": {"path": str(directory)}}).execute()
    assert time.perf_counter() - start < 60
    outputs = [output for cell in notebook.cells if cell.cell_type == "code"
               for output in cell.outputs]
    assert not [output for output in outputs if output.output_type == "error"]
    return outputs


@pytest.mark.slow
@pytest.mark.parametrize("name", ["live_training.ipynb", "neuron_lab.ipynb"])
def test_the_notebook_runs(name, tmp_path):
    outputs = run_notebook(name, tmp_path)
    results = [output for output in outputs if output.output_type == "execute_result"]
    assert any("application/vnd.holoviews_exec.v0+json" in output.data
               for output in results)  # the app rendered as a Panel object
    texts = [str(value) for output in outputs for value in output.get("data", {}).values()]
    # inline resources, so it works offline: plain pn.extension() would load these from a CDN
    assert not [text for text in texts
                if re.search(r"https://cdn\.(bokeh\.org/bokeh|holoviz\.org/panel)", text)]


@pytest.mark.slow
def test_the_sweep_notebook_runs_a_small_figure_1a(tmp_path):
    outputs = run_notebook("sweep_figure1a.ipynb", tmp_path)  # trials, table, plot land there
    printed = "".join(output.get("text", "") for output in outputs)
    table = [line.split() for line in printed.splitlines() if line.startswith("kappa_hidden=")]
    assert [(row[0], row[3]) for row in table] == [("kappa_hidden=-0.2_hidden=30", "ok"),
                                                   ("kappa_hidden=-0.4_hidden=30", "ok")]
    assert any("image/png" in output.get("data", {}) for output in outputs)
    assert (tmp_path / "sweep-fig1a" / "results.csv").is_file()
