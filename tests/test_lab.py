"""The neuron lab's data side: its trace is the engine's recording, told event by event, and the
single neuron follows its analytic rate curve."""

import numpy as np
import pytest

from spikeviz import lab
from spikeviz.data import load_mnist
from spikeviz.engine import Simulator, init_network, make_dynamics
from spikeviz.errors import ConfigError
from tests.engine.test_kernels import busy_network, random_events

KAPPAS = (-0.4, -1.0)


@pytest.fixture(scope="module")
def digit_trace():
    """A bundled test digit through a fresh 784-60-10 network, 4 hidden and all outputs watched."""
    network = init_network((784, 60, 10), np.random.default_rng(0))
    events = lab.encode_digit(load_mnist(bundled=True).test_images[0], 80.0, seed=1)
    dyn = make_dynamics()
    watch = lab.most_active_hidden(network, events, 80.0, kappas=KAPPAS, dynamics=dyn)
    watch += [(1, n) for n in range(10)]
    return network, lab.record_sample(network, events, 80.0, kappas=KAPPAS, dynamics=dyn,
                                      watch=watch)


def test_the_trace_is_the_engines_recording_for_the_same_seed(digit_trace):
    network, trace = digit_trace
    again = lab.encode_digit(load_mnist(bundled=True).test_images[0], 80.0, seed=1)
    np.testing.assert_array_equal(again.times_ms, trace.events.times_ms)  # same seed, same events
    sim = Simulator(network, watch=trace.watch, spike_capacity=10**5, potential_capacity=10**5,
                    detail=True)
    counts = sim.run(again, 80.0, kappas=KAPPAS, dynamics=make_dynamics()).copy()
    t_ms, which, peak, end = sim.recorded_potentials()
    for name, values in zip(("t_ms", "watch", "peak", "end"), (t_ms, which, peak, end)):
        np.testing.assert_array_equal(trace.rows[name], values, err_msg=name)
    for name, values in sim.recorded_detail().items():
        key = ("spikes", "event") if name == "spike_event" else ("rows", name)
        np.testing.assert_array_equal(getattr(trace, key[0])[key[1]], values, err_msg=name)
    np.testing.assert_array_equal(trace.output_counts(trace.n_events - 1), counts)
    assert counts.sum() > 0


def test_the_lab_leaves_the_network_alone(digit_trace):
    network, _ = digit_trace
    before = network.copy()
    lab.record_sample(network, random_events(np.random.default_rng(2), 784, 200, 40.0), 40.0,
                      kappas=KAPPAS, dynamics=make_dynamics(rho=1e-3), watch=[(0, 0)])
    for a, b in zip(before.weights + before.thresholds, network.weights + network.thresholds):
        np.testing.assert_array_equal(a, b)


def test_layers_and_senders_are_named_as_documented():
    assert [lab.layer_name(layer, 2) for layer in range(2)] == ["hidden", "output"]
    assert [lab.layer_name(layer, 3) for layer in range(3)] == ["hidden1", "hidden2", "output"]
    rng = np.random.default_rng(1)
    network = busy_network(rng, (20, 15, 10, 5))
    trace = lab.record_sample(network, random_events(rng, 20, 100, 20.0), 20.0,
                              kappas=(-0.4, 0.0, -1.0), dynamics=make_dynamics(),
                              watch=[(0, 1), (1, 2), (2, 3)])
    assert [trace.name(w) for w in range(3)] == ["hidden1 1", "hidden2 2", "output 3"]
    senders = {step.sender.split()[0] for event in range(trace.n_events)
               for m in lab.describe_event(trace, event)[1:2] for step in m.steps}
    assert senders == {"hidden1"}  # hidden2 hears the spikes of hidden1


def test_the_most_active_hidden_neurons_fire_most(digit_trace):
    network, trace = digit_trace
    hidden = [n for layer, n in trace.watch if layer == 0]
    spikes = trace.spikes
    counts = np.bincount(spikes["neuron"][spikes["layer"] == 0], minlength=60)
    assert counts[hidden].min() >= np.delete(counts, hidden).max()


def test_every_mechanism_can_be_found_and_is_told_at_its_event(digit_trace):
    _, trace = digit_trace
    for mechanism in lab.MECHANISMS:
        event = lab.next_event(trace, -1, mechanism)
        assert event is not None, mechanism
        story = lab.story(trace, event)
        assert mechanism in dict(story), (mechanism, story)
        order = [lab.MECHANISMS.index(m) for m, _ in story]
        assert order == sorted(order) and order[0] == 0  # told in the order an event acts
        # going back from later finds an event where it acted, too
        assert lab.next_event(trace, trace.n_events, mechanism, -1) >= event
    with pytest.raises(ConfigError, match="unknown mechanism"):
        lab.next_event(trace, 0, "teleport")


def assert_adds_up(m, dynamics):
    """Every step of a moment adds up on its own (1), (2), (4), and hands its end to the next."""
    th, close = m.threshold, dict(rel=1e-5, abs=1e-6)
    for step, following in zip(m.steps, m.steps[1:] + (None,)):
        assert step.decayed == pytest.approx(
            step.before * np.exp(-step.dt_ms / dynamics.tau_mp_ms), **close)
        assert step.peak == pytest.approx(max(step.decayed + step.jump, -th), **close)
        later = step.inhibitions
        v = step.peak
        if step.fired:  # the rivals that fired first inhibit it, then it resets
            v = min(max(v + step.rank * m.kappa * th - dynamics.gamma * th, -th), th)
            assert step.reset == pytest.approx(v, **close)
            later -= step.rank
        assert step.end == pytest.approx(max(v + later * m.kappa * th, -th), **close)
        if following is not None:
            assert following.before == step.end and following.dt_ms == 0


def test_a_spike_moment_adds_up(digit_trace):
    """Before -> decay -> jump -> peak -> reset: the numbers of one spike, from the rows."""
    _, trace = digit_trace
    event = lab.next_event(trace, -1, "spike")
    fired = [m for m in lab.describe_event(trace, event) if m.fired]
    assert fired
    step = fired[0].steps[0]
    assert step.peak >= fired[0].threshold and step.dt_ms > 0 and step.sender.startswith("input")
    assert_adds_up(fired[0], trace.dynamics)


def test_the_numbers_add_up_when_several_spikes_reach_a_layer_in_one_event():
    """An output neuron that receives three hidden spikes on one event has three steps, each
    with its own jump, peak and end; the story tells each, the table lists each."""
    rng = np.random.default_rng(4)
    network = busy_network(rng, (20, 15, 5))
    watch = [(0, n) for n in range(15)] + [(1, n) for n in range(5)]
    trace = lab.record_sample(network, random_events(rng, 20, 200, 40.0), 40.0, kappas=KAPPAS,
                              dynamics=make_dynamics(gamma=0.8), watch=watch)
    several = 0
    for event in range(trace.n_events):
        for m in lab.describe_event(trace, event):
            assert_adds_up(m, trace.dynamics)
            if len(m.steps) > 1:
                several += 1
                told = [text for kind, text in lab.story(trace, event) if kind == "jump"
                        and text.startswith(f"{m.name} <- hidden")]
                assert len(told) == len(m.steps)
                for text, step in zip(told, m.steps):
                    assert f"{step.peak:+.4f}" in text and step.sender in text
    assert several > 20


def test_inhibition_is_proportional_to_the_rivals_threshold(digit_trace):
    _, trace = digit_trace
    event = lab.next_event(trace, -1, "output")
    moments = lab.describe_event(trace, event)
    rivals = [m for m in moments if m.name.startswith("output") and not m.fired and m.reached]
    assert rivals and all(sum(s.inhibitions for s in m.steps) >= 1 for m in rivals)
    for m in rivals:
        assert_adds_up(m, trace.dynamics)  # each hit is kappa * the neuron's own Vth
        assert m.clipped == (min(min(s.peak, s.end) for s in m.steps) <= -m.threshold)


def test_output_counts_build_up_to_the_decision(digit_trace):
    _, trace = digit_trace
    totals = [trace.output_counts(e).sum() for e in range(trace.n_events)]
    assert totals == sorted(totals) and totals[0] == 0 and totals[-1] > 0
    decided = 0
    for event in range(trace.n_events):  # the unique argmax of the counts, else no decision
        counts = trace.output_counts(event)
        leaders = np.flatnonzero((counts == counts.max()) & (counts > 0))
        expected = int(leaders[0]) if leaders.size == 1 else None
        assert trace.decision(event) == expected, event
        decided += expected is not None
    assert trace.decision(0) is None and 0 < decided < trace.n_events  # silence, a lead, a tie


def test_the_potential_curve_passes_through_the_engines_values(digit_trace):
    _, trace = digit_trace
    t, v = lab.potential_curve(trace, 0)
    mine = trace.rows["watch"] == 0
    th = trace.thresholds[0]
    assert np.all(np.diff(t) >= 0)
    ends = trace.rows["end"][mine].astype(float) / th
    assert np.abs(v[None, :] - ends[:, None]).min(axis=1).max() < 1e-6


def test_record_sample_grows_its_buffers_for_a_busy_sample():
    rng = np.random.default_rng(4)
    network = busy_network(rng, (20, 15, 5))
    events = random_events(rng, 20, 200, 40.0)
    watch = [(0, n) for n in range(15)] + [(1, n) for n in range(5)]
    trace = lab.record_sample(network, events, 40.0, kappas=KAPPAS, dynamics=make_dynamics(),
                              watch=watch)
    assert trace.spikes["t_ms"].size > events.times_ms.size  # more than the first guess
    hidden_spikes = np.sum(trace.spikes["layer"] == 0)
    # a row per event for each hidden neuron, and per hidden spike for each output neuron
    assert trace.rows["event"].size == trace.rows["t_ms"].size == 15 * 200 + 5 * hidden_spikes
    with pytest.raises(ConfigError, match="watch at least one"):
        lab.record_sample(network, events, 40.0, kappas=KAPPAS, dynamics=make_dynamics(),
                          watch=[])


def test_a_drawn_stroke_becomes_a_centered_mnist_like_image():
    # a vertical stroke at the left edge, from y = 4 to 24 (y up)
    image = lab.rasterize_strokes([[3.0, 3.0]], [[4.0, 24.0]])
    assert image.dtype == np.uint8 and image.shape == (28, 28) and image.max() == 255
    lit_rows = np.flatnonzero(image.max(axis=1) > 128)
    lit_cols = np.flatnonzero(image.max(axis=0) > 128)
    assert lit_rows.min() <= 4 and lit_rows.max() >= 23  # its whole length
    assert set(lit_cols) <= {13, 14}  # moved to the center, one pen wide
    # an L: two strokes, both drawn
    ell = lab.rasterize_strokes([[8, 8], [8, 20]], [[24, 6], [6, 6]])
    assert (ell > 128).sum() > (image > 128).sum()
    assert not lab.rasterize_strokes([], []).any()


# --- the single neuron ---


def test_drive_trains_have_the_chosen_rate():
    rng = np.random.default_rng(0)
    regular = lab.drive_events(200.0, 1000.0, regular=True, rng=rng)
    assert regular.times_ms.size == 200
    np.testing.assert_allclose(np.diff(regular.times_ms), 5.0)
    poisson = lab.drive_events(200.0, 10_000.0, regular=False, rng=rng)
    assert poisson.times_ms.size == pytest.approx(2000, rel=0.1)
    assert np.all(np.diff(poisson.times_ms) >= 0) and poisson.times_ms[-1] <= 10_000.0
    with pytest.raises(ConfigError, match="positive rate"):
        lab.drive_events(0.0, 100.0, regular=True, rng=rng)


@pytest.mark.parametrize("t_ref_ms, gamma", [(0.0, 1.0), (2.0, 1.0), (0.0, 0.5), (3.0, 0.7)])
@pytest.mark.parametrize("input_rate_hz", [3000.0, 5000.0, 10_000.0])  # rheobase 2,500
def test_the_engine_follows_the_analytic_rate_for_small_jumps(t_ref_ms, gamma, input_rate_hz):
    """Small, regular jumps approach the mean drive: the closed form of (1)-(2) with w_dyn."""
    common = dict(weight=0.01, threshold=0.5)
    dyn = make_dynamics(tau_mp_ms=20.0, t_ref_ms=t_ref_ms, gamma=gamma)
    simulated = lab.simulated_rates([input_rate_hz], regular=True, dynamics=dyn,
                                    duration_ms=3000.0, **common)[0]
    expected = lab.analytic_rate_hz(input_rate_hz, tau_ms=20.0, t_ref_ms=t_ref_ms, gamma=gamma,
                                    **common)[0]
    assert expected > 0
    assert simulated == pytest.approx(expected, rel=0.06, abs=1.0)


def test_the_analytic_rate_has_its_limits():
    common = dict(weight=0.01, threshold=0.5, tau_ms=20.0)
    rheobase_hz = 0.5 / (0.01 * 20.0) * 1000.0  # w * rate * tau = Vth
    below, above = lab.analytic_rate_hz([0.99 * rheobase_hz, 1.01 * rheobase_hz], **common)
    assert below == 0 and above > 0
    # refractoriness slows it, a partial reset (gamma < 1) speeds it up
    base, refractory = lab.analytic_rate_hz(3000.0, **common), lab.analytic_rate_hz(
        3000.0, t_ref_ms=2.0, **common)
    partial = lab.analytic_rate_hz(3000.0, gamma=0.5, **common)
    assert refractory < base < partial
    # never more spikes than input events
    huge = lab.analytic_rate_hz(100.0, weight=5.0, threshold=0.5, tau_ms=20.0)[0]
    assert huge == 100.0


def test_the_single_neuron_run_is_recorded_by_the_engine():
    dyn = make_dynamics(tau_mp_ms=20.0, t_ref_ms=1.0, gamma=0.8)
    trace = lab.single_neuron_run(rate_hz=800.0, regular=False, weight=0.08, threshold=0.5,
                                  dynamics=dyn, duration_ms=300.0, seed=3)
    assert trace.rows["event"].size == trace.n_events  # one row per input event
    fired = trace.rows["rank"] == 0
    assert fired.sum() == trace.spikes["t_ms"].size > 5
    np.testing.assert_allclose(trace.rows["reset"][fired],
                               np.clip(trace.rows["peak"][fired] - 0.8 * 0.5, -0.5, 0.5),
                               rtol=1e-6)
    again = lab.single_neuron_run(rate_hz=800.0, regular=False, weight=0.08, threshold=0.5,
                                  dynamics=dyn, duration_ms=300.0, seed=3)
    np.testing.assert_array_equal(again.spikes["t_ms"], trace.spikes["t_ms"])
