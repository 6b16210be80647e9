"""The live training app in a real browser (Chromium, driven by Playwright), served in-process,
with the network cut: every test checks what the page shows and what the server-side app does.

The Bokeh data sources are named (``raster``, ``potentials``, ``thresholds``, ``accuracy``):
the tests wait for data to arrive, not for time to pass.
"""

import os
import re
from pathlib import Path

import numpy as np
import pytest

from spikeviz.viz.app import DRAIN_PERIOD_MS, NMNIST_DIR, live_workers

from .conftest import wait_until

pytestmark = pytest.mark.browser

SCREENSHOT = Path(__file__).parents[2] / "docs" / "figures" / "app.png"
CONTROLS = ["start-button", "pause-button", "step-button", "reset-button", "evaluate-button",
            "save-button", "load-button", "kappa-hidden", "kappa-output", "alpha", "lam", "rho",
            "eta-w", "eta-th", "checkpoint-path", "status"]


def wait_for_rows(page, source, column, at_least=1, timeout_s=30):
    page.wait_for_function(
        "([name, column, n]) => Bokeh.documents[0].get_model_by_name(name).data[column].length"
        " >= n", arg=[source, column, at_least], timeout=timeout_s * 1000)


def click(page, css_class):
    page.locator(f".{css_class} button").click()


def status(page):
    return page.locator(".status p").inner_text()


def samples_shown(page):
    """The sample counter of the status line: 'sample 1,234 / 5,000'."""
    match = re.search(r"sample ([\d,]+) /", status(page))
    assert match, f"no sample counter in the status line: {status(page)!r}"
    return int(match.group(1).replace(",", ""))


def start(page, app):
    click(page, "start-button")
    wait_for_rows(page, "accuracy", "sample")
    assert app.running


def pause(page, app):
    click(page, "pause-button")
    page.locator(".status p", has_text="paused").wait_for()
    wait_until(lambda: not app.running, 5, "the worker to pause")


def test_the_page_loads_offline_and_shows_the_controls(page, app, outside_requests):
    for css_class in CONTROLS:
        assert page.locator(f".{css_class}").first.is_visible(), css_class
    assert page.evaluate("() => Bokeh.documents[0].get_model_by_name('raster')"
                         ".data.t.length") == 0
    assert re.search(r"paused.*sample 0 / 5,000", status(page)), status(page)
    assert app.trainer.network.sizes == (784, 100, 10)
    assert not outside_requests  # every script, style and font came from the app's server
    # the cut works: a request outside is aborted, and seen
    assert page.evaluate("() => fetch('https://example.com/').then(() => 'reached', "
                         "() => 'blocked')") == "blocked"
    assert outside_requests == ["https://example.com/"]
    outside_requests.clear()


def test_start_streams_the_raster_and_the_accuracy_curve(page, app):
    click(page, "start-button")
    wait_for_rows(page, "raster", "t", at_least=10)
    wait_for_rows(page, "accuracy", "sample", at_least=2)
    wait_for_rows(page, "potentials", "xs", at_least=4 + 10)
    wait_for_rows(page, "thresholds", "top")
    page.locator(".status p", has_text="running").wait_for()
    # the status line is one of the views updated once a second: it may still say sample 0
    wait_until(lambda: samples_shown(page) > 0, 10, "the status to count the samples")
    shown = samples_shown(page)
    wait_until(lambda: samples_shown(page) > shown, 10, "the sample counter to move")
    layers = set(page.evaluate("() => Array.from(Bokeh.documents[0]"
                               ".get_model_by_name('raster').data.layer)"))
    assert {0, 1} <= layers  # input events and hidden spikes
    if os.environ.get("SPIKEVIZ_SCREENSHOT"):
        click(page, "evaluate-button")  # the confusion matrix, and a point on the test curve
        wait_for_rows(page, "confusion", "count")
        wait_for_rows(page, "accuracy", "sample", at_least=40)
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOT), full_page=True)


def test_the_kappa_slider_changes_the_running_trainer(page, app):
    start(page, app)
    before = app.config.kappa_hidden
    assert app.trainer.kappas[0] == pytest.approx(before)
    after = round(before + 0.05, 2)
    page.locator(".kappa-hidden .noUi-handle").focus()
    page.keyboard.press("ArrowRight")  # one step of 0.05
    wait_until(lambda: app.config.kappa_hidden == pytest.approx(after), 10,
               "the slider's value on the server")
    changed_at = app._sample_count
    wait_until(lambda: app.trainer.kappas[0] == pytest.approx(after), 10,
               "the running trainer to take the new kappa")
    wait_until(lambda: app._sample_count > changed_at + 10, 10, "training to go on")
    assert app.running  # no restart: the same run, still training
    page.wait_for_function("() => Array.from(Bokeh.documents[0].get_model_by_name('markers')"
                           f".data.text).includes('kappa_hidden {before:g} -> {after:g}')")


def test_a_slow_tab_gets_the_newest_state_instead_of_a_queue(page, app):
    start(page, app)
    wait_until(lambda: app._ack.tags[0] >= 5, 10, "the page to acknowledge what it drew")
    cdp = page.context.new_cdp_session(page)
    cdp.send("Emulation.setCPUThrottlingRate", {"rate": 40})  # a tab on a starved machine
    try:
        skipped, sent = app.skipped_updates, app._update_seq
        page.wait_for_timeout(3000)
        assert app.skipped_updates > skipped  # the server waited for the tab
        assert app._update_seq - sent < 3000 / DRAIN_PERIOD_MS / 2  # far fewer than it would
        assert app._update_seq - app._ack.tags[0] <= 2  # nothing queued up on the way
    finally:
        cdp.send("Emulation.setCPUThrottlingRate", {"rate": 1})
    wait_until(lambda: app._ack.tags[0] == app._update_seq, 10, "the tab to catch up")


def test_reset_to_emulated_n_mnist_asks_first_then_trains(page, app):
    app.config.param.update(train_samples=12, test_samples=6)  # a short emulation
    page.locator(".card-header", has_text="New run").click()
    choices = page.locator(f"option[value='{NMNIST_DIR}']")
    page.locator("select").filter(has=choices).select_option(NMNIST_DIR)
    wait_until(lambda: app.dataset == NMNIST_DIR, 10, "the data set choice on the server")
    click(page, "reset-button")
    page.locator(".reset-question", has_text="Start a new run?").wait_for()
    assert app.trainer.n_inputs == 784  # nothing reset before the confirmation
    click(page, "confirm-reset-button")
    wait_until(lambda: app.trainer.n_inputs == 2 * 34 * 34, 60, "the emulated N-MNIST run")
    page.locator(".alert", has_text="new run").wait_for()
    start(page, app)
    wait_for_rows(page, "raster", "t", at_least=10)


def test_pause_stops_the_sample_counter(page, app):
    start(page, app)
    wait_until(lambda: samples_shown(page) > 0, 10, "a moving counter")
    pause(page, app)
    page.wait_for_timeout(300)  # the worker ends its slice (50 ms) after the current sample
    wait_until(lambda: samples_shown(page) == app.trainer.position, 5,
               "the page to show where training stopped")
    before = samples_shown(page)
    page.wait_for_timeout(1000)
    assert samples_shown(page) == before
    assert app.trainer.position == before


def test_save_then_load_restores_the_network(page, app, tmp_path):
    path = tmp_path / "run.npz"
    field = page.locator(".checkpoint-path input")
    field.fill(str(path))
    field.press("Enter")
    wait_until(lambda: app.checkpoint == str(path), 10, "the checkpoint path on the server")
    start(page, app)
    pause(page, app)
    click(page, "save-button")
    wait_until(lambda: path.is_file() and app.message.startswith("saved"), 15, "the save")
    page.locator(".alert", has_text="saved the run").wait_for()
    with app._lock:
        weights = app.trainer.sim.state.weights.copy()
        thresholds = app.trainer.sim.state.thresholds.copy()
        position = app.trainer.position
        # perturbed: Load must bring the saved ones back
        app.trainer.sim.state.weights[...] += 0.05
        app.trainer.sim.state.thresholds[...] *= 1.5
    click(page, "step-button")  # and one more sample trained
    wait_until(lambda: app.trainer.position == position + 1, 10, "the step")
    click(page, "load-button")
    wait_until(lambda: app.message.startswith("loaded"), 15, "the load")
    page.locator(".alert", has_text="loaded").wait_for()
    with app._lock:
        np.testing.assert_array_equal(app.trainer.sim.state.weights, weights)
        np.testing.assert_array_equal(app.trainer.sim.state.thresholds, thresholds)
        assert app.trainer.position == position
    wait_until(lambda: samples_shown(page) == position, 10, "the page to show the loaded run")


def test_closing_the_tab_stops_its_worker(page, app):
    start(page, app)
    worker = app._worker
    assert worker.is_alive() and live_workers() == 1
    page.close()
    wait_until(lambda: not worker.is_alive() and live_workers() == 0, 5,
               "the session to end and its worker to stop")
