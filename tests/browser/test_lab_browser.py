"""The neuron lab in a real browser: the page ``apps/train.py`` serves (training app and lab as
tabs), offline; stepping, scrubbing, play/pause and the single-neuron sliders reach the server's
lab, and the page shows what the lab computed.

With ``SPIKEVIZ_SCREENSHOT`` set, the tests also write the docs' screenshots
(``docs/figures/lab-*.png``).
"""

import os
import re
from pathlib import Path

import numpy as np
import pytest

from .conftest import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.parametrize("page", ["lab"], indirect=True)]

FIGURES = Path(__file__).parents[2] / "docs" / "figures"


@pytest.fixture
def neuron_lab(page, served):
    """The server-side NeuronLab of the test's tab, shown."""
    lab = served.labs[-1]
    page.get_by_text("Neuron lab", exact=True).click()
    page.locator(".lab-player input[type=range]").wait_for()
    shown_event(page, 0)  # the digit runs once the page is connected
    return lab


def position(page):
    """(event, of) from the position line: 'event 12 of 307, t = ...'."""
    text = page.locator(".lab-position p").inner_text()
    match = re.search(r"event (\d+) of (\d+)", text)
    assert match, text
    return int(match.group(1)), int(match.group(2))


def shown_event(page, event):
    """Wait until the page shows ``event`` (0-based) in the position line and the story."""
    page.locator(".lab-position p", has_text=f"event {event + 1} of").wait_for()
    page.locator(".lab-story", has_text=f"Event {event + 1} of").wait_for()


def screenshot(page, name):
    if os.environ.get("SPIKEVIZ_SCREENSHOT"):
        FIGURES.mkdir(parents=True, exist_ok=True)
        page.set_viewport_size({"width": 1400, "height": 1800})  # the whole lab, no scrolling
        page.wait_for_timeout(500)  # the layout follows the new size
        page.screenshot(path=str(FIGURES / f"lab-{name}.png"), full_page=True)


def test_the_lab_tab_shows_a_digit_from_the_training_runs_network(page, neuron_lab, app):
    assert neuron_lab.source == "training run"
    assert neuron_lab.network.sizes == app.trainer.network.sizes == (784, 100, 10)
    n_hidden = page.evaluate("() => Bokeh.documents[0].get_model_by_name('lab-hidden-curves')"
                             ".data.xs.length")
    assert n_hidden == 4
    assert position(page) == (1, neuron_lab.trace.n_events)
    assert page.evaluate("() => Bokeh.documents[0].get_model_by_name('lab-event').data.x"
                         ".length") == 1


def test_use_network_takes_a_new_snapshot_of_the_training_run(page, neuron_lab, app):
    first = neuron_lab.network.weights[0].copy()
    app.step(1000)  # queued to the session's worker
    wait_until(lambda: app.trainer.position >= 1000, 60, "1,000 training samples")
    old = neuron_lab.trace
    page.locator(".lab-use-network button").click()
    wait_until(lambda: neuron_lab.trace is not old, 20, "the digit through the new network")
    page.locator(".lab-status", has_text="snapshot of the training run").wait_for()
    trainer = app.trainer
    np.testing.assert_allclose(neuron_lab.network.weights[0],
                               trainer.network.weights[0] * trainer.sim.state.scale[:100],
                               rtol=1e-6)
    assert not np.array_equal(neuron_lab.network.weights[0], first)
    shown_event(page, 0)
    page.locator(".lab-next-output button").click()
    wait_until(lambda: neuron_lab.event > 0, 10, "the jump to the first output spike")
    page.locator(".lab-story", has_text="Output").wait_for()
    screenshot(page, "network")


def test_stepping_forward_and_back(page, neuron_lab):
    for _ in range(3):
        page.locator(".lab-step button").click()
    shown_event(page, 3)
    assert neuron_lab.event == 3
    page.locator(".lab-back button").click()
    shown_event(page, 2)
    # the current input event on the digit is the one the server's trace holds
    channel = int(neuron_lab.trace.events.channels[2])
    page.wait_for_function(
        "([x, y]) => { const d = Bokeh.documents[0].get_model_by_name('lab-event').data;"
        " return d.x[0] == x && d.y[0] == y; }", arg=[channel % 28, 27 - channel // 28])


def test_scrubbing_the_time_slider_and_jumping_to_a_spike(page, neuron_lab):
    slider = page.locator(".lab-player input[type=range]")
    slider.fill("150")
    shown_event(page, 150)
    t_ms = neuron_lab.trace.events.times_ms[150]
    assert f"t = {t_ms:.3f} ms" in page.locator(".lab-position p").inner_text()
    slider.focus()
    page.keyboard.press("ArrowLeft")
    shown_event(page, 149)
    page.locator(".lab-next-spike button").click()
    wait_until(lambda: neuron_lab.event > 149, 10, "the jump to the next spike")
    shown_event(page, neuron_lab.event)
    page.locator(".lab-story", has_text="Spike and reset").wait_for()
    assert int(slider.input_value()) == neuron_lab.event  # the slider followed
    slider.fill("0")
    shown_event(page, 0)
    page.locator(".lab-next-output button").click()
    wait_until(lambda: neuron_lab.event > 0, 10, "the jump to the first output spike")
    shown_event(page, neuron_lab.event)
    page.locator(".lab-story", has_text="Output").wait_for()
    wait_until(lambda: sum(page.evaluate(
        "() => Array.from(Bokeh.documents[0].get_model_by_name('lab-counts').data.count)")) > 0,
        10, "the output counts to show the spike")


def test_another_digit_resets_the_slider_to_its_events(page, neuron_lab):
    page.locator(".lab-sample input").fill("3")
    page.locator(".lab-sample input").press("Enter")
    wait_until(lambda: neuron_lab.sample == 3, 10, "the digit index on the server")
    old = neuron_lab.trace
    page.locator(".lab-run button").click()
    wait_until(lambda: neuron_lab.trace is not old, 20, "the new digit's run")
    n_events = neuron_lab.trace.n_events
    page.locator(".lab-story", has_text=f"the digit is {neuron_lab.label}").wait_for()
    assert position(page) == (1, n_events)
    slider = page.locator(".lab-player input[type=range]")
    assert int(slider.get_attribute("max")) == n_events - 1
    slider.fill(str(n_events - 1))
    shown_event(page, n_events - 1)


def test_a_digit_drawn_with_the_mouse(page, neuron_lab):
    pad = page.locator(".lab-pad").first
    box = pad.bounding_box()
    x, top = box["x"] + box["width"] / 2, box["y"] + 0.2 * box["height"]
    page.mouse.move(x, top)
    page.mouse.down()
    for k in range(1, 21):  # a vertical stroke: a "1"
        page.mouse.move(x, top + k * 0.03 * box["height"])
    page.mouse.up()
    wait_until(lambda: len(neuron_lab._strokes.data["xs"]) == 1, 10, "the stroke on the server")
    page.locator(".lab-use-drawing button").click()
    page.locator(".lab-story", has_text="a drawn digit").wait_for()
    assert neuron_lab.label is None and position(page) == (1, neuron_lab.trace.n_events)
    screenshot(page, "drawn")


def test_play_runs_in_slow_motion_and_pause_stops(page, neuron_lab):
    page.locator(".lab-player button.play").click()
    wait_until(lambda: neuron_lab.event >= 3, 10, "the player to step the lab")
    page.locator(".lab-player button.pause").click()
    page.wait_for_timeout(300)  # a step already on its way may still land
    stopped = neuron_lab.event
    page.wait_for_timeout(1000)  # at 3 events/s, three more steps had it kept playing
    assert neuron_lab.event == stopped
    shown_event(page, stopped)


def test_the_single_neuron_sliders_reach_the_engine(page, neuron_lab):
    page.get_by_text("Single neuron", exact=True).click()
    single = neuron_lab.single
    before = page.evaluate("() => Bokeh.documents[0].get_model_by_name('lab-sn-now').data.rate[0]")
    assert before == single.rate_hz == 800.0
    page.locator(".lab-sn-rate .noUi-handle").focus()
    for _ in range(5):
        page.keyboard.press("ArrowRight")  # 10 Hz per step
    wait_until(lambda: single.rate_hz == pytest.approx(850.0), 10, "the rate on the server")
    page.wait_for_function("() => Bokeh.documents[0].get_model_by_name('lab-sn-now')"
                           ".data.rate[0] == 850")
    shown = page.evaluate("() => Bokeh.documents[0].get_model_by_name('lab-sn-now').data.out[0]")
    assert shown == single.run().spikes["t_ms"].size * 1000.0 / single.duration_ms
    page.locator(".lab-sn-summary", has_text="Analytic").wait_for()
    screenshot(page, "single")
