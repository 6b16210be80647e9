"""The sweep view next to the trainer in a real browser: a sweep made with ``spikeviz sweep`` is
listed, a trial chosen in its table opens in the trainer, and a bad folder is a message.

The page is the layout of the app: a Train tab (the TrainingApp of ``conftest.py``) and a
Sweeps tab whose "Open in the trainer" calls that app's ``load``.  This module's ``served``
fixture replaces the one of ``conftest.py``; its ``page`` and ``app`` fixtures (network cut,
JavaScript errors fail the test, the tab's worker stops on close) are reused as they are.
"""

import os
import subprocess
import sys
from pathlib import Path

import panel as pn
import pytest

from spikeviz.sweep import read_csv
from spikeviz.viz.sweep_view import SweepView

from .conftest import Served, _free_port, serving, wait_until

pytestmark = pytest.mark.browser

CHOSEN = "kappa_hidden=-0.4_seed=1"


@pytest.fixture(scope="module")
def sweep_folder(tmp_path_factory):
    """A folder with one small real sweep (4 trials on the bundled digits), made by the CLI."""
    folder = tmp_path_factory.mktemp("runs")
    spikeviz = Path(sys.executable).parent / "spikeviz"
    env = {**os.environ, "SPIKEVIZ_CACHE_DIR": str(folder / "cache"), "PYTHONWARNINGS": "ignore"}
    env.pop("SPIKEVIZ_DATA", None)
    done = subprocess.run(
        [str(spikeviz), "sweep", "--grid", "kappa_hidden=-0.2,-0.4", "--grid", "seed=0,1",
         "--hidden", "20", "--bundled", "--train-samples", "200", "--test-samples", "50",
         "--test-duration-ms", "100", "--workers", "2", "--out", str(folder / "tiny")],
        env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return folder


class SweepServed(Served):
    """Each session: conftest's TrainingApp in a Train tab, a SweepView opening into it."""

    def __init__(self, port, folder):
        super().__init__(port)
        self.folder = folder
        self.views = []

    def make_app(self):
        app = super().make_app()
        view = SweepView(folder=str(self.folder), on_open=app.load)
        self.views.append(view)
        return pn.Tabs(("Train", app), ("Sweeps", view))


@pytest.fixture(scope="module")
def served(sweep_folder):
    served = SweepServed(_free_port(), sweep_folder)
    with serving(served, {"app": served.make_app}):
        yield served


def table_trials(page):
    return page.locator(".sweep-table .tabulator-cell[tabulator-field='trial']").all_inner_texts()


def plot_titles(page):
    return page.evaluate("() => [...Bokeh.documents[0].all_models]"
                         ".filter(m => m.type === 'Title').map(m => m.text)")


def test_a_trial_chosen_in_the_sweep_table_opens_in_the_trainer(page, app, served,
                                                                 sweep_folder):
    view = served.views[served.opened]
    rows = read_csv(sweep_folder / "tiny" / "results.csv")
    assert [row["status"] for row in rows] == ["ok"] * 4

    page.locator(".bk-tab", has_text="Sweeps").click()
    page.locator(".sweep-table .tabulator-row", has_text=rows[0]["trial"]).wait_for()
    assert table_trials(page) == [row["trial"] for row in rows]
    assert "test_accuracy against kappa_hidden" in plot_titles(page)

    # sorted by a click on a header (kappa -0.4 first), a click on a row chooses its trial
    page.locator(".sweep-table .tabulator-col[tabulator-field='kappa_hidden']").click()
    wait_until(lambda: table_trials(page)[0].startswith("kappa_hidden=-0.4"), 10, "the sort")
    row = page.locator(".sweep-table .tabulator-row", has_text=CHOSEN)
    row.locator(".tabulator-cell[tabulator-field='trial']").click()
    wait_until(lambda: view.trial == CHOSEN, 10, "the clicked row to reach the view")
    wait_until(lambda: page.locator(".trial-choice select").input_value() == CHOSEN, 10,
               "the trial list to show the clicked row")
    page.wait_for_function("(name) => [...Bokeh.documents[0].all_models].some("
                           "m => m.type === 'Title' && m.text === 'learning curve: ' + name)",
                           arg=CHOSEN, timeout=10_000)

    page.locator(".open-trial-button button").click()
    wait_until(lambda: app.message.startswith("loaded"), 15, "the trainer to load the trial")
    checkpoint = sweep_folder / "tiny" / "trials" / CHOSEN / "last.npz"
    assert str(checkpoint) in app.message
    page.locator(".sweep-message", has_text="loading").wait_for()
    assert app.trainer.network.sizes == (784, 20, 10)  # the trial's network, not 784-100-10
    assert (app.config.kappa_hidden, app.config.seed) == (-0.4, 1)

    page.locator(".bk-tab", has_text="Train").click()
    page.locator(".alert", has_text="loaded").wait_for()
    page.locator(".status p", has_text="epoch 2").wait_for()  # its one epoch is done


def test_a_bad_folder_is_a_message_and_the_view_recovers(page, served, sweep_folder):
    view = served.views[served.opened]
    page.locator(".bk-tab", has_text="Sweeps").click()
    folder = page.locator(".sweep-folder input")
    folder.fill(str(sweep_folder / "nowhere"))
    folder.press("Enter")
    page.locator(".sweep-message", has_text="no such folder").wait_for()
    page.locator(".sweep-table .tabulator-row").first.wait_for(state="detached")
    assert view.data is None

    folder.fill(str(sweep_folder))
    folder.press("Enter")
    page.locator(".sweep-table .tabulator-row", has_text=CHOSEN).wait_for()
    assert len(table_trials(page)) == 4 and view.data is not None
