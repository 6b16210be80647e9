"""The event-driven engine against its naive twin, spike for spike, and against the physics."""

import math

import numpy as np
import pytest

from spikeviz.encode import Events
from spikeviz.engine import Network, Simulator, init_network, make_dynamics
from spikeviz.errors import ConfigError
from tests import naive


def random_events(rng, n_inputs, n_events, duration_ms, same_time_fraction=0.0):
    """Sorted random events; some share a time stamp to exercise same-time ordering."""
    times = np.sort(rng.uniform(0, duration_ms, n_events))
    repeat = rng.random(n_events) < same_time_fraction
    repeat[0] = False
    for e in np.flatnonzero(repeat):
        times[e] = times[e - 1]
    return Events(times, rng.integers(0, n_inputs, n_events).astype(np.int32))


def busy_network(rng, sizes, alpha=1.0):
    """A small network with low thresholds, so that every mechanism acts within a few events."""
    network = init_network(sizes, rng, alpha=alpha, floor_fraction=0.9)
    for w in network.weights:
        w += np.float32(0.3 * np.sqrt(3 / w.shape[0]))  # excitatory bias: layers fire a lot
    return network


def assert_same_as_naive(network, events, end_ms, kappas, dyn, watch=(), scale=None, keep=None):
    sim = Simulator(network, watch=watch, spike_capacity=100_000, potential_capacity=100_000)
    if scale is not None:
        sim.state.scale[:] = scale
    if keep is not None:
        sim.keep[:] = keep
    starts = network.neuron_start
    scales = [sim.state.scale[a:b] for a, b in zip(starts[:-1], starts[1:])]
    keeps = [sim.keep[a:b] > 0 for a, b in zip(starts[:-1], starts[1:])]
    twin_layers, (x_trace, x_counts), twin_spikes, twin_potentials = naive.simulate(
        network.weights, network.thresholds, network.threshold_floors,
        events.times_ms, events.channels, end_ms, kappas, dyn, watch, scales, keeps=keeps,
    )
    sim.run(events, end_ms, kappas=kappas, dynamics=dyn)

    t, layer, neuron = sim.recorded_spikes()
    assert list(zip(t, layer, neuron)) == twin_spikes
    for index, twin in enumerate(twin_layers):
        np.testing.assert_array_equal(sim.counts(index), twin.counts)
        np.testing.assert_array_equal(sim.traces(index), twin.trace)
        np.testing.assert_array_equal(sim.potentials(index), twin.v)
        np.testing.assert_array_equal(network.thresholds[index], twin.th)
        error = sim.state.threshold_error[starts[index]:starts[index + 1]]
        np.testing.assert_array_equal(network.thresholds[index] + error, twin.exact)
        np.testing.assert_array_equal(network.weights[index], twin.w)
    np.testing.assert_array_equal(sim.inputs.trace, x_trace)
    np.testing.assert_array_equal(sim.inputs.counts, x_counts)
    rows = sim.recorded_potentials()
    assert list(zip(*rows)) == twin_potentials
    return len(twin_spikes)


@pytest.mark.parametrize(
    "sizes, kappas",
    [
        ((20, 15, 5), (-0.4, -1.0)),
        ((20, 15, 5), (0.0, 0.0)),
        ((30, 12, 8, 4), (-1.0, 0.0, -0.5)),
        ((25, 6), (-0.2,)),
    ],
)
@pytest.mark.parametrize("t_ref_ms", [0.0, 1.0, 5.0])
@pytest.mark.parametrize("rho", [0.0, 2e-3])
@pytest.mark.parametrize("scaled", [False, True])
def test_kernel_matches_naive_twin(sizes, kappas, t_ref_ms, rho, scaled):
    rng = np.random.default_rng(hash((sizes, kappas, t_ref_ms, rho)) % 2**32)
    network = busy_network(rng, sizes)
    events = random_events(rng, sizes[0], 400, 100.0, same_time_fraction=0.1)
    dyn = make_dynamics(tau_mp_ms=20.0, t_ref_ms=t_ref_ms, w_dyn0=0.1, rho=rho, weight_boost=0.5)
    watch = [(0, 0), (len(sizes) - 2, 1), (0, 3)]
    # Training keeps a per-neuron weight scale (the lazy weight regularization).
    scale = rng.uniform(0.8, 1.2, network.flat_thresholds.size) if scaled else None
    n_spikes = assert_same_as_naive(network, events, 100.0, kappas, dyn, watch, scale)
    assert n_spikes > 50  # the comparison covered real activity


@pytest.mark.parametrize("sizes, kappas", [((20, 15, 5), (-0.4, -1.0)), ((30, 12, 8, 4),
                                                                         (-1.0, 0.0, -0.5))])
@pytest.mark.parametrize("rho", [0.0, 2e-3])
def test_neurons_dropout_silences_receive_nothing_and_the_twin_agrees(sizes, kappas, rho):
    rng = np.random.default_rng(len(sizes) + int(rho * 1e3))
    network = busy_network(rng, sizes)
    events = random_events(rng, sizes[0], 400, 100.0, same_time_fraction=0.1)
    dyn = make_dynamics(tau_mp_ms=20.0, t_ref_ms=1.0, w_dyn0=0.1, rho=rho, weight_boost=0.5)
    keep = (rng.random(network.flat_thresholds.size) >= 0.4).astype(np.float32)
    keep[network.neuron_start[-2]:] = 1.0  # dropout silences hidden neurons only
    scale = rng.uniform(0.8, 1.2, network.flat_thresholds.size)
    watch = [(0, int(np.argmin(keep))), (0, int(np.argmax(keep)))]  # a silenced one, a kept one
    n_spikes = assert_same_as_naive(network, events, 100.0, kappas, dyn, watch, scale, keep)
    assert n_spikes > 50
    sim = Simulator(network)
    sim.keep[:] = keep
    sim.run(events, 100.0, kappas=kappas, dynamics=make_dynamics(tau_mp_ms=20.0))
    counts = sim.state.counts
    assert counts[keep == 0].sum() == 0 and counts[:network.neuron_start[-2]][keep[
        :network.neuron_start[-2]] == 1].sum() > 0


def test_threshold_regularization_changes_the_network_as_the_twin_does():
    """Training mode rewrites thresholds (and weights at the floor) in place; both agree."""
    rng = np.random.default_rng(7)
    network = busy_network(rng, (20, 15, 5))
    before = network.copy()
    dyn = make_dynamics(rho=5e-3, weight_boost=1.0)
    assert_same_as_naive(network, random_events(rng, 20, 300, 50.0), 50.0, (-0.4, -1.0), dyn)
    assert not np.array_equal(before.thresholds[0], network.thresholds[0])
    floors = network.threshold_floors
    assert all(th.min() >= floor for th, floor in zip(network.thresholds, floors))
    assert not np.array_equal(before.weights[0], network.weights[0])  # floor reached: boosted


@pytest.mark.parametrize("weight_boost", [0.0, 0.5])
def test_spreading_blocked_threshold_decreases_matches_the_twin(weight_boost):
    rng = np.random.default_rng(13)
    network = busy_network(rng, (20, 15, 5))
    scale = rng.uniform(0.8, 1.2, network.flat_thresholds.size)
    dyn = make_dynamics(rho=5e-3, weight_boost=weight_boost, spread_blocked=True)
    n_spikes = assert_same_as_naive(network, random_events(rng, 20, 300, 50.0), 50.0,
                                    (-0.4, -1.0), dyn, scale=scale)
    assert n_spikes > 50
    assert (network.thresholds[0] == network.threshold_floors[0]).any()  # the floor blocked some


@pytest.mark.parametrize("spread", [False, True])
def test_spreading_blocked_decreases_keeps_the_layer_mean_threshold(spread):
    """Without spreading, the falls the floor blocks are lost and the layer's mean threshold
    ratchets up; spread over the thresholds above the floor, they keep it."""
    rng = np.random.default_rng(5)
    network = busy_network(rng, (20, 15, 5))
    network.thresholds[0][:] = rng.uniform(0.36, 0.6, 15)  # a few just above the floor (0.35)
    before = network.thresholds[0].astype(np.float64).sum()
    sim = Simulator(network)
    dyn = make_dynamics(rho=1e-3, weight_boost=0.0, spread_blocked=spread)
    sim.run(random_events(rng, 20, 600, 100.0), 100.0, kappas=(-0.4, -1.0), dynamics=dyn)
    after = (network.thresholds[0] + sim.state.threshold_error[:15]).sum()
    assert (network.thresholds[0] == network.threshold_floors[0]).any()  # decreases were blocked
    if spread:
        assert after == pytest.approx(before, abs=1e-9)
    else:
        assert after > before + 0.01


def test_threshold_regularization_cancels_out_with_steps_below_float32_resolution():
    """Late in a run rho * Nw is about one float32 unit of a threshold or less: rounding each
    step to float32 made the falls of Sec. 5.2 come out 0% to 200% of their size, by the
    thresholds' binary exponent, and the layers drifted. Kept exact, rises and falls cancel."""
    rng = np.random.default_rng(11)
    network = busy_network(rng, (20, 15, 5))
    network.threshold_floors[:] = 0.0  # nothing blocked: the sum of a layer's thresholds is kept
    network.thresholds[0][:] = rng.uniform(0.3, 0.9, 15)  # on both sides of 0.5 (an exponent)
    sim = Simulator(network)
    exact = lambda: network.flat_thresholds.astype(np.float64) + sim.state.threshold_error
    starts = network.neuron_start
    layer_sums = lambda: [exact()[a:b].sum() for a, b in zip(starts[:-1], starts[1:])]
    before = layer_sums()
    dyn = make_dynamics(rho=2e-8)
    sim.run(random_events(rng, 20, 3000, 600.0), 600.0, kappas=(-0.4, -1.0), dynamics=dyn)
    assert sim.counts(0).sum() > 300  # many rises and falls
    np.testing.assert_allclose(layer_sums(), before, rtol=0, atol=1e-12)


def test_threshold_steps_far_below_float32_resolution_add_up():
    from spikeviz.engine.kernels import move_threshold

    thresholds, error = np.array([0.7], np.float32), np.zeros(1)
    for _ in range(10_000):  # each step a sixth of a float32 unit at 0.7: alone, each is lost
        move_threshold(thresholds, error, 0, -1e-8, 0.0)
    assert thresholds[0] + error[0] == pytest.approx(np.float64(np.float32(0.7)) - 1e-4, abs=1e-11)
    assert thresholds[0] == np.float32(thresholds[0] + error[0])  # the forward pass reads it
    floor = np.float32(0.6)  # the engine's floors are float32
    blocked = move_threshold(thresholds, error, 0, -0.2, floor)
    assert thresholds[0] == floor and error[0] == 0.0
    assert blocked == pytest.approx(floor - (np.float64(np.float32(0.7)) - 1e-4 - 0.2), abs=1e-11)


def single_neuron(threshold, weight=1.0):
    return Network([np.array([[weight]])], [np.array([threshold])])


def lif_rate_hz(drive_per_ms, tau_ms, threshold):
    """Analytic firing rate of a LIF neuron under a constant drive I: 1 / (tau ln(I tau / (I tau - Vth)))."""
    steady = drive_per_ms * tau_ms
    if steady <= threshold:
        return 0.0
    return 1000.0 / (tau_ms * math.log(steady / (steady - threshold)))


@pytest.mark.parametrize("input_rate_hz", [500.0, 800.0, 1500.0, 3000.0])
def test_regular_input_fires_at_the_analytic_lif_rate(input_rate_hz):
    """Small jumps at a high regular rate approach the LIF with constant drive I = w * rate."""
    weight, threshold, tau, duration = 0.02, 0.5, 20.0, 4000.0
    times = np.arange(1, int(duration * input_rate_hz / 1000)) * (1000.0 / input_rate_hz)
    events = Events(times, np.zeros(times.size, np.int32))
    sim = Simulator(single_neuron(threshold, weight))
    sim.run(events, duration, kappas=[0.0], dynamics=make_dynamics(tau_mp_ms=tau, t_ref_ms=0.0))
    expected = lif_rate_hz(weight * input_rate_hz / 1000.0, tau, threshold)
    simulated = sim.counts(0)[0] * 1000.0 / duration
    # A jump of w = Vth / 25 leaves a residue after the subtractive reset: a few percent.
    assert simulated == pytest.approx(expected, rel=0.05, abs=1.0)


def test_below_rheobase_a_neuron_never_fires():
    weight, threshold, tau = 0.02, 0.5, 20.0
    rate_hz = 0.8 * threshold / (weight * tau) * 1000.0  # steady state at 80% of threshold
    times = np.arange(1, 4000) * (1000.0 / rate_hz)
    events = Events(times, np.zeros(times.size, np.int32))
    sim = Simulator(single_neuron(threshold, weight))
    sim.run(events, times[-1], kappas=[0.0], dynamics=make_dynamics(tau_mp_ms=tau, t_ref_ms=0.0))
    assert sim.counts(0)[0] == 0
    # Right after each jump the potential settles at the geometric sum w / (1 - exp(-P/tau)).
    period = 1000.0 / rate_hz
    assert sim.potentials(0)[0] == pytest.approx(weight / (1 - math.exp(-period / tau)), rel=1e-4)


@pytest.mark.parametrize("dt_ms", [0.1, 0.5, 0.9])
def test_refractory_input_is_scaled_by_dt_over_tref_squared(dt_ms):
    weight, threshold, tau, t_ref = 0.3, 0.5, 20.0, 1.0
    # Two events at t = 1 ms make it fire; one more arrives dt later.
    times = np.array([1.0, 1.0, 1.0 + dt_ms])
    events = Events(times, np.zeros(3, np.int32))
    sim = Simulator(single_neuron(threshold, weight), watch=[(0, 0)], potential_capacity=10)
    dyn = make_dynamics(tau_mp_ms=tau, t_ref_ms=t_ref)
    sim.run(events, 2.0, kappas=[0.0], dynamics=dyn)
    t, _, peak, end = sim.recorded_potentials()
    assert sim.counts(0)[0] == 1 and peak[1] >= threshold > end[1]
    jump = peak[2] - end[1] * math.exp(-dt_ms / tau)
    assert jump == pytest.approx(weight * (dt_ms / t_ref) ** 2, rel=1e-5)
    # After T_ref the full weight is back.
    sim.run(Events(np.array([1.0, 1.0, 2.5]), np.zeros(3, np.int32)), 3.0, kappas=[0.0], dynamics=dyn)
    t, _, peak, end = sim.recorded_potentials()
    assert peak[2] - end[1] * math.exp(-1.5 / tau) == pytest.approx(weight, rel=1e-5)


def spikes_per_event(sim, layer):
    t, layers, _ = sim.recorded_spikes()
    _, per_time = np.unique(t[layers == layer], return_counts=True)
    return per_time


def test_wta_with_kappa_minus_one_lets_one_winner_fire_per_event():
    rng = np.random.default_rng(3)
    network = init_network((100, 50, 10), rng, alpha=1.5)  # |w| < Vth: one input cannot double it
    events = random_events(rng, 100, 3000, 300.0)
    dyn = make_dynamics()
    wta = Simulator(network, spike_capacity=100_000)
    wta.run(events, 300.0, kappas=[-1.0, 0.0], dynamics=dyn)
    assert spikes_per_event(wta, 0).max() == 1 and wta.counts(0).sum() > 100
    free = Simulator(network, spike_capacity=100_000)
    free.run(events, 300.0, kappas=[0.0, 0.0], dynamics=dyn)
    assert spikes_per_event(free, 0).max() > 1  # without WTA, several fire on one event


def test_wta_inhibition_is_proportional_to_each_neurons_threshold():
    thresholds = np.array([1.0, 2.0, 4.0])
    weights = np.array([[1.5, 0.9, 1.0]])  # only neuron 0 reaches threshold
    sim = Simulator(Network([weights], [thresholds]), watch=[(0, 0), (0, 1), (0, 2)],
                    potential_capacity=10)
    sim.run(Events(np.array([0.0]), np.zeros(1, np.int32)), 1.0, kappas=[-0.25],
            dynamics=make_dynamics())
    _, _, peak, end = sim.recorded_potentials()
    np.testing.assert_allclose(peak, [1.5, 0.9, 1.0])
    np.testing.assert_allclose(end, [0.5, 0.9 - 0.5, 1.0 - 1.0])


def test_candidates_fire_in_order_of_v_over_threshold_and_ties_by_index():
    thresholds = np.array([1.0, 2.0, 1.0, 1.0])
    weights = np.array([[1.2, 3.0, 1.5, 1.5]])  # ratios 1.2, 1.5, 1.5, 1.5
    sim = Simulator(Network([weights], [thresholds]), spike_capacity=10)
    sim.run(Events(np.array([0.0]), np.zeros(1, np.int32)), 1.0, kappas=[0.0],
            dynamics=make_dynamics())
    assert sim.recorded_spikes()[2].tolist() == [1, 2, 3, 0]


def test_spikes_propagate_through_all_layers_at_the_same_time():
    chain = Network([np.array([[2.0]]), np.array([[2.0]]), np.array([[2.0]])],
                    [np.array([1.0])] * 3)
    sim = Simulator(chain, spike_capacity=10)
    sim.run(Events(np.array([3.0]), np.zeros(1, np.int32)), 5.0, kappas=[0, 0, 0],
            dynamics=make_dynamics())
    t, layer, _ = sim.recorded_spikes()
    assert t.tolist() == [3.0, 3.0, 3.0] and layer.tolist() == [0, 1, 2]


def test_traces_are_decayed_sums_over_spikes_at_the_end_of_the_presentation():
    rng = np.random.default_rng(11)
    network = busy_network(rng, (10, 8, 3))
    events = random_events(rng, 10, 200, 80.0)
    tau = 20.0
    sim = Simulator(network, spike_capacity=10_000)
    sim.run(events, 100.0, kappas=[-0.4, -1.0], dynamics=make_dynamics(tau_mp_ms=tau))
    x = np.zeros(10)
    np.add.at(x, events.channels, np.exp((events.times_ms - 100.0) / tau))
    np.testing.assert_allclose(sim.inputs.trace, x, rtol=1e-5)
    t, layer, neuron = sim.recorded_spikes()
    a = np.zeros(8)
    np.add.at(a, neuron[layer == 0], np.exp((t[layer == 0] - 100.0) / tau))
    np.testing.assert_allclose(sim.traces(0), a, rtol=1e-5)
    assert sim.counts(0).sum() == (layer == 0).sum() > 0


def test_every_sample_starts_from_rest_and_the_same_input_gives_the_same_spikes():
    rng = np.random.default_rng(5)
    network = busy_network(rng, (20, 15, 5))
    events = random_events(rng, 20, 300, 50.0)
    sim = Simulator(network, spike_capacity=10_000)
    sim.run(events, 50.0, kappas=[-0.4, -1.0], dynamics=make_dynamics())
    first = sim.recorded_spikes()
    sim.run(random_events(rng, 20, 300, 50.0), 50.0, kappas=[-0.4, -1.0], dynamics=make_dynamics())
    sim.run(events, 50.0, kappas=[-0.4, -1.0], dynamics=make_dynamics())
    for a, b in zip(first, sim.recorded_spikes()):
        np.testing.assert_array_equal(a, b)


def test_recording_buffers_are_bounded_and_count_what_they_drop():
    rng = np.random.default_rng(2)
    network = busy_network(rng, (20, 15, 5))
    sim = Simulator(network, watch=[(0, 1)], spike_capacity=10, potential_capacity=7)
    sim.run(random_events(rng, 20, 300, 50.0), 50.0, kappas=[0, 0], dynamics=make_dynamics())
    assert len(sim.recorded_spikes()[0]) == 10 and sim.recording.seen[0] > 10
    assert len(sim.recorded_potentials()[0]) == 7 and sim.recording.seen[1] == 300


@pytest.mark.parametrize(
    "events, duration, kappas, match",
    [
        (Events(np.array([2.0, 1.0]), np.array([0, 1])), 5.0, [0, 0], "sorted"),
        (Events(np.array([1.0, 2.0]), np.array([0, 99])), 5.0, [0, 0], "inputs"),
        (Events(np.array([1.0, 9.0]), np.array([0, 1])), 5.0, [0, 0], "outside"),
        (Events(np.array([1.0]), np.array([0])), 0.0, [0, 0], "positive"),
        (Events(np.array([1.0]), np.array([0])), 5.0, [-1.5, 0], r"\[-1, 0\)"),
        (Events(np.array([1.0]), np.array([0])), 5.0, [0.3, 0], r"\[-1, 0\)"),
        (Events(np.array([1.0]), np.array([0])), 5.0, [0.0], "one lateral"),
        (Events(np.array([1.0, 2.0]), np.array([0])), 5.0, [0, 0], "one time per channel"),
    ],
)
def test_bad_input_is_rejected_before_any_work(events, duration, kappas, match):
    sim = Simulator(init_network((4, 3, 2), np.random.default_rng(0)))
    with pytest.raises(ConfigError, match=match):
        sim.run(events, duration, kappas=kappas, dynamics=make_dynamics())


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"tau_mp_ms": 0.0}, "tau_mp_ms"),
        ({"tau_mp_ms": float("nan")}, "tau_mp_ms"),
        ({"t_ref_ms": -1.0}, "t_ref_ms"),
        ({"rho": -1e-4}, "rho"),
        ({"w_dyn0": 2.0}, "w_dyn0"),
    ],
)
def test_out_of_range_dynamics_are_rejected(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        make_dynamics(**kwargs)


def test_layer_sizes_must_chain_and_match_thresholds():
    with pytest.raises(ConfigError, match="takes 5 inputs"):
        Network([np.zeros((4, 3)), np.zeros((5, 2))], [np.ones(3), np.ones(2)])
    with pytest.raises(ConfigError, match="do not match"):
        Network([np.zeros((4, 3))], [np.ones(4)])
    with pytest.raises(ConfigError, match="cannot watch"):
        Simulator(init_network((4, 3, 2), np.random.default_rng(0)), watch=[(2, 0)])


def test_initialization_follows_eq_9():
    rng = np.random.default_rng(0)
    network = init_network((784, 800, 10), rng, alpha=(3.0, 5.0))
    bound = np.sqrt(3 / 784)
    w = network.weights[0]
    assert w.shape == (784, 800) and w.dtype == np.float32
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.99 * bound
    assert np.mean(np.sum(w.astype(float) ** 2, axis=0)) == pytest.approx(1.0, rel=0.01)  # (10)
    np.testing.assert_allclose(network.thresholds[0], 3.0 * bound, rtol=1e-6)
    np.testing.assert_allclose(network.thresholds[1], 5.0 * np.sqrt(3 / 800), rtol=1e-6)
    assert network.sizes == (784, 800, 10)
