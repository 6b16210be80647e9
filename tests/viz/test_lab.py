"""The neuron lab's view driven in pytest, without a server: set its parameters, press its
buttons (call their actions), read its Bokeh sources and text."""

import threading

import numpy as np
import pytest

from spikeviz import lab
from spikeviz.config import Config
from spikeviz.data import load_mnist
from spikeviz.engine import Simulator, make_dynamics
from spikeviz.train.tasks import ImageTask
from spikeviz.train.trainer import Trainer
from spikeviz.viz.app import TrainingApp
from spikeviz.viz import lab as viz_lab
from spikeviz.viz.lab import SPEEDS, NeuronLab, SingleNeuronLab


@pytest.fixture(scope="module")
def data():
    return load_mnist(bundled=True)


@pytest.fixture
def neuron_lab(data):
    return NeuronLab(data=data, config=Config(hidden=[40]), duration_ms=40.0)


def source(view, name):
    layout = view.__panel__()
    found = [m for m in layout.get_root().select({"name": name})]
    assert found, name
    return found[0]


def test_a_digit_is_loaded_and_shown_at_its_first_event(neuron_lab):
    trace = neuron_lab.trace
    assert trace.sizes == (784, 40, 10)
    assert [layer for layer, _ in trace.watch] == [0] * 4 + [1] * 10
    assert neuron_lab.event == 0 and neuron_lab._player.end == trace.n_events - 1
    assert len(source(neuron_lab, "lab-hidden-curves").data["xs"]) == 4
    assert len(source(neuron_lab, "lab-output-curves").data["xs"]) == 10
    assert source(neuron_lab, "lab-event").data["x"] == [int(trace.events.channels[0]) % 28]
    assert "Event 1 of" in neuron_lab._story.object


def test_digits_are_presented_as_in_training_permuted_pixels_and_rate(data):
    """A PI-MNIST run's lab gets the run's permuted channels at its input rate, and draws each
    event on the pixel that sent it."""
    config = Config(hidden=[40], permute_pixels=True, rate_hz=2000.0, seed=3)
    neuron_lab = NeuronLab(data=data, config=config, duration_ms=40.0, seed=5)
    image = data.test_images[0]
    training = ImageTask(config, data).encoder.encode(image, 40.0, np.random.default_rng(5))
    events = neuron_lab.trace.events
    np.testing.assert_array_equal(events.channels, training.channels)
    np.testing.assert_array_equal(events.times_ms, training.times_ms)
    assert not np.array_equal(events.channels, lab.encode_digit(image, 40.0, 5).channels)
    neuron_lab.event = neuron_lab.trace.n_events - 1
    lit = np.flipud(image.reshape(28, 28)) > 0  # (y, x), y up, as drawn
    for name in ("lab-events", "lab-event"):
        points = source(neuron_lab, name).data
        assert points["x"] and lit[points["y"], points["x"]].all(), name
    config.rate_hz = 1000.0  # changed mid-run: the next digit takes it up
    neuron_lab.load_digit()
    assert neuron_lab.trace.n_events < 0.7 * events.times_ms.size


def test_stepping_and_scrubbing_move_every_view(neuron_lab):
    trace = neuron_lab.trace
    neuron_lab.step(5)
    assert neuron_lab.event == 5 and neuron_lab._player.value == 5
    assert "Event 6 of" in neuron_lab._story.object
    neuron_lab.step(-2)
    assert neuron_lab.event == 3
    neuron_lab._player.value = 120  # the slider of the player, as the browser moves it
    assert neuron_lab.event == 120
    t_now = trace.events.times_ms[120]
    assert source(neuron_lab, "lab-hidden-now").data["x"] == [t_now] * 4
    neuron_lab.step(-10_000)
    assert neuron_lab.event == 0
    neuron_lab.step(10_000)
    assert neuron_lab.event == trace.n_events - 1


def test_jumping_to_a_mechanism_tells_it(neuron_lab):
    for mechanism, heading in (("spike", "Spike and reset"), ("inhibition", "WTA inhibition"),
                               ("clip", "Clipping at -Vth"), ("output", "Output")):
        before = neuron_lab.event
        neuron_lab.jump_to(mechanism)
        assert neuron_lab.message == "" and neuron_lab.event > before, mechanism  # it found one
        assert f"**{heading}**" in neuron_lab._story.object, mechanism
    first_output = neuron_lab.event
    neuron_lab.jump_to("output", -1)
    assert neuron_lab.event == first_output and "no output before" in neuron_lab.message
    neuron_lab.step(10_000)
    neuron_lab.jump_to("output", -1)
    assert first_output <= neuron_lab.event < neuron_lab.trace.n_events - 1
    assert "**Output**" in neuron_lab._story.object
    counts = source(neuron_lab, "lab-counts").data["count"]
    assert counts == neuron_lab.trace.output_counts(neuron_lab.event).tolist()


def test_the_current_dots_sit_on_the_engines_potentials(neuron_lab):
    neuron_lab.event = 50
    trace = neuron_lab.trace
    rows = trace.rows
    dots = source(neuron_lab, "lab-hidden-now").data["y"]
    for w, y in enumerate(dots):  # top band first, 2.6 Vth apart
        mine = np.flatnonzero((rows["watch"] == w) & (rows["event"] == 50))
        offset = 2.6 * (3 - w)
        assert y - offset == pytest.approx(rows["end"][mine[-1]] / trace.thresholds[w], rel=1e-5)


def test_chosen_hidden_neurons_and_bad_ones(neuron_lab):
    neuron_lab.hidden = "3, 17"
    neuron_lab.load_digit()
    assert neuron_lab.trace.watch[:2] == [(0, 3), (0, 17)]
    assert len(source(neuron_lab, "lab-hidden-curves").data["xs"]) == 2
    neuron_lab.hidden = "3, 400"
    neuron_lab.load_digit()
    assert "0..39" in neuron_lab.message and neuron_lab.trace.watch[:2] == [(0, 3), (0, 17)]


def test_a_network_of_another_input_size_is_refused(neuron_lab):
    from spikeviz.engine import init_network

    shown = neuron_lab.trace
    neuron_lab.network = init_network((2312, 20, 10), np.random.default_rng(0))
    neuron_lab.load_digit()
    assert "2312 inputs" in neuron_lab.message and neuron_lab.trace is shown


def test_another_digit_and_speed(neuron_lab, data):
    neuron_lab.sample = 7
    neuron_lab.load_digit()
    assert f"the digit is {data.test_labels[7]}" in neuron_lab._story.object
    neuron_lab.speed = "10 events/s"
    assert neuron_lab._player.interval == SPEEDS["10 events/s"]


def test_a_drawn_digit_runs_through_the_network(neuron_lab):
    neuron_lab.use_drawing()
    assert "draw a digit" in neuron_lab.message and neuron_lab.label is not None
    strokes = source(neuron_lab, "lab-strokes")
    strokes.data = {"xs": [[14.0, 14.0]], "ys": [[4.0, 24.0]]}  # what the freehand tool sends
    neuron_lab.use_drawing()
    assert neuron_lab.label is None and "(a drawn digit)" in neuron_lab._story.object
    image = source(neuron_lab, "lab-image").data["image"][0]
    np.testing.assert_array_equal(np.flipud(image), lab.rasterize_strokes([[14, 14]], [[4, 24]]))
    lit = set(np.flatnonzero(np.flipud(image).ravel() > 0))
    assert set(neuron_lab.trace.events.channels.tolist()) <= lit  # events come from the stroke
    neuron_lab.clear_drawing()
    assert strokes.data["xs"] == []
    neuron_lab.run_test_digit()
    assert neuron_lab.label == neuron_lab.data.test_labels[neuron_lab.sample]


def test_a_checkpoint_of_spikeviz_train(neuron_lab, data, tmp_path):
    neuron_lab.source = "checkpoint"
    neuron_lab.checkpoint = str(tmp_path / "missing.npz")
    neuron_lab.take_network()
    assert "missing.npz" in neuron_lab.message
    trainer = Trainer(Config(hidden=[30], train_samples=5, seed=2), data)
    for _ in range(5):
        trainer.train_sample()
    trainer.save(tmp_path / "run.npz")
    neuron_lab.checkpoint = str(tmp_path / "run.npz")
    neuron_lab.take_network()
    expected, _, _ = Trainer.from_checkpoint_network(tmp_path / "run.npz")
    assert neuron_lab.trace.sizes == (784, 30, 10)
    np.testing.assert_array_equal(neuron_lab.network.weights[0], expected.weights[0])


def test_the_training_run_network_is_a_snapshot(data):
    app = TrainingApp(config=Config(hidden=[30]), data=data)
    app.step(3)
    neuron_lab = NeuronLab(data=data, training_app=app, duration_ms=30.0)
    assert neuron_lab.source == "training run"
    trainer = app.trainer
    real = trainer.network.weights[0] * trainer.sim.state.scale[:30]
    np.testing.assert_allclose(neuron_lab.network.weights[0], real, rtol=1e-6)
    app.step(2)  # training goes on; the lab keeps its copy until asked again
    assert not np.allclose(neuron_lab.network.weights[0],
                           trainer.network.weights[0] * trainer.sim.state.scale[:30])
    neuron_lab.take_network()
    np.testing.assert_allclose(neuron_lab.network.weights[0],
                               trainer.network.weights[0] * trainer.sim.state.scale[:30],
                               rtol=1e-6)
    assert "snapshot" in neuron_lab.message
    app.close()


def test_each_network_source_brings_its_own_settings(data, tmp_path):
    """A checkpoint's settings last only while its network is shown: the training run's
    snapshot then runs with the app's kappas and dynamics, a fresh network with the lab's own."""
    app = TrainingApp(config=Config(hidden=[30], kappa_hidden=-0.2, gamma=0.9), data=data)
    saved = Trainer(Config(hidden=[20], kappa_hidden=-0.6, gamma=0.7, train_samples=2), data)
    saved.train_sample()
    saved.save(tmp_path / "run.npz")
    neuron_lab = NeuronLab(data=data, config=Config(hidden=[25], kappa_hidden=-0.3, gamma=0.8),
                           training_app=app, duration_ms=20.0)
    expected = {"training run": (30, -0.2, 0.9), "checkpoint": (20, -0.6, 0.7),
                "fresh network": (25, -0.3, 0.8)}

    def shown():
        trace = neuron_lab.trace
        return trace.sizes[1], trace.kappas[0], trace.dynamics.gamma

    assert shown() == pytest.approx(expected["training run"])
    neuron_lab.checkpoint = str(tmp_path / "run.npz")
    for name in ("checkpoint", "training run", "fresh network", "checkpoint", "fresh network"):
        neuron_lab.source = name
        neuron_lab.take_network()
        assert shown() == pytest.approx(expected[name]), name
    app.close()


def test_a_busy_training_run_is_a_message_not_a_frozen_page(data, monkeypatch):
    """While the app's worker holds its lock (a long evaluation), "training run" gives up after
    a short wait and says so; the lab keeps the network it had, and opens on a fresh one."""
    monkeypatch.setattr(viz_lab, "TRAINING_WAIT_S", 0.2)
    app = TrainingApp(config=Config(hidden=[30]), data=data)
    neuron_lab = NeuronLab(data=data, training_app=app, duration_ms=20.0)
    shown = neuron_lab.network
    held, release = threading.Event(), threading.Event()

    def evaluate_for_long():
        with app._lock:
            held.set()
            release.wait(30)

    worker = threading.Thread(target=evaluate_for_long)
    worker.start()
    held.wait(5)
    try:
        pressing = threading.Thread(target=neuron_lab.take_network)
        pressing.start()
        pressing.join(5)
        assert not pressing.is_alive(), "Use network waits for the training run"
        assert "busy" in neuron_lab.message and neuron_lab.network is shown
        opened = NeuronLab(data=data, training_app=app, duration_ms=20.0)
        assert opened.source == "fresh network" and "busy" in opened.message
        assert opened.trace.sizes == (784, 30, 10)  # the app's shape, untrained
    finally:
        release.set()
        worker.join()
    neuron_lab.take_network()  # free again: a snapshot
    assert "snapshot" in neuron_lab.message and neuron_lab.network is not shown
    app.close()


def test_the_single_neuron_view_shows_the_engines_run():
    view = SingleNeuronLab(rate_hz=900.0, weight=0.08, duration_ms=300.0)
    trace = view.run()
    assert view.sources["lab-sn-now"].data["out"] == [trace.spikes["t_ms"].size * 1000 / 300.0]
    assert view.sources["lab-sn-spikes"].data["t"] == trace.spikes["t_ms"].tolist()
    assert len(view.sources["lab-sn-simulated"].data["out"]) == SingleNeuronLab.CURVE_POINTS
    view.param.update(threshold=1.0, gamma=0.5, t_ref_ms=0.0, train="Poisson")
    # mean drive 0.08 * 0.9 per ms for 20 ms = 1.44 > Vth = 1: from V0 = (1 - gamma) Vth to Vth
    # in tau ln((1.44 - 0.5) / (1.44 - 1)) ms
    analytic_hz = 1000.0 / (20.0 * np.log((1.44 - 0.5) / (1.44 - 1.0)))
    assert f"**{analytic_hz:.1f} Hz**" in view._summary.object
    # the point of this run is the engine's rate for these very settings
    sim = Simulator(lab._single_neuron(0.08, 1.0))
    events = lab.drive_events(900.0, 300.0, regular=False, rng=np.random.default_rng(0))
    sim.run(events, 300.0, kappas=[0.0],
            dynamics=make_dynamics(tau_mp_ms=20.0, t_ref_ms=0.0, gamma=0.5))
    assert view.sources["lab-sn-now"].data["out"] == [sim.counts(0)[0] * 1000 / 300.0]
    spikes = view.sources["lab-sn-spikes"].data["t"]
    view.seed = 7  # every setting redraws, the last one too
    assert view.sources["lab-sn-spikes"].data["t"] != spikes
