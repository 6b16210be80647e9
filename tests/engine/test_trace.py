"""The engine's detailed recording (the neuron lab's trace) against its naive twin and against
the model's equations, and proof that it changes nothing in the simulation."""

import math

import numpy as np
import pytest

from spikeviz.encode import Events
from spikeviz.engine import Simulator, make_dynamics
from spikeviz.engine.network import DETAIL_ROWS
from tests import naive
from tests.engine.test_kernels import busy_network, random_events, single_neuron


def detailed_run(network, events, end_ms, kappas, dyn, watch, detail=True):
    sim = Simulator(network, watch=watch, spike_capacity=100_000, potential_capacity=100_000,
                    detail=detail)
    sim.run(events, end_ms, kappas=kappas, dynamics=dyn)
    return sim


@pytest.mark.parametrize(
    "sizes, kappas",
    [((20, 15, 5), (-0.4, -1.0)), ((20, 15, 5), (0.0, 0.0)), ((30, 12, 8, 4), (-1.0, 0.0, -0.5))],
)
@pytest.mark.parametrize("t_ref_ms, rho, gamma", [(0.0, 0.0, 1.0), (2.0, 0.0, 0.5),
                                                  (1.0, 2e-3, 1.0)])
def test_detail_matches_the_naive_twin(sizes, kappas, t_ref_ms, rho, gamma):
    rng = np.random.default_rng(hash((sizes, kappas, t_ref_ms, rho)) % 2**32)
    network = busy_network(rng, sizes)
    events = random_events(rng, sizes[0], 300, 60.0, same_time_fraction=0.1)
    dyn = make_dynamics(t_ref_ms=t_ref_ms, w_dyn0=0.1, rho=rho, gamma=gamma)
    watch = [(0, 0), (0, 3), (len(sizes) - 2, 1), (len(sizes) - 2, 2)]
    twin = {}
    naive.simulate(network.weights, network.thresholds, network.threshold_floors,
                   events.times_ms, events.channels, 60.0, kappas, dyn, watch, detail=twin)
    detail = detailed_run(network, events, 60.0, kappas, dyn, watch).recorded_detail()

    assert len(twin["rows"]) == detail["event"].size > 300
    for name in DETAIL_ROWS:
        expected = np.array([row[name] for row in twin["rows"]], dtype=detail[name].dtype)
        np.testing.assert_array_equal(detail[name], expected, err_msg=name)
    np.testing.assert_array_equal(detail["spike_event"], twin["spike_event"])
    assert (detail["rank"] >= 0).sum() > 20  # watched neurons fired: resets were compared


def test_detail_changes_nothing_and_is_empty_when_off():
    rng = np.random.default_rng(3)
    network = busy_network(rng, (20, 15, 5))
    events = random_events(rng, 20, 300, 60.0)
    dyn = make_dynamics(t_ref_ms=1.0)
    watch = [(0, 1), (1, 0)]
    on = detailed_run(network, events, 60.0, (-0.4, -1.0), dyn, watch, detail=True)
    off = detailed_run(network, events, 60.0, (-0.4, -1.0), dyn, watch, detail=False)
    for a, b in zip(on.recorded_spikes() + on.recorded_potentials(),
                    off.recorded_spikes() + off.recorded_potentials()):
        np.testing.assert_array_equal(a, b)
    assert all(values.size == 0 for values in off.recorded_detail().values())


def test_each_step_follows_the_equations():
    """The recorded steps compose into the engine's own peak and end values, (1), (2), (4)."""
    rng = np.random.default_rng(5)
    network = busy_network(rng, (20, 15, 5))
    events = random_events(rng, 20, 400, 80.0)
    tau, gamma, kappas = 20.0, 1.0, (-0.4, -1.0)
    dyn = make_dynamics(tau_mp_ms=tau, t_ref_ms=1.0, gamma=gamma)
    watch = [(0, n) for n in range(15)]  # a whole WTA layer: every winner is watched
    sim = detailed_run(network, events, 80.0, kappas, dyn, watch)
    _, which, peak, end = sim.recorded_potentials()
    d = sim.recorded_detail()
    th = d["threshold"]
    # decay (1): V * exp(-dt / tau), as float32
    factor = np.exp(-d["dt_ms"] / tau).astype(np.float32)
    np.testing.assert_allclose(d["decayed"], d["before"] * factor, rtol=1e-6)
    # input (1) then the clip at -Vth gives the peak
    np.testing.assert_array_equal(np.maximum(d["decayed"] + d["jump"], -th), peak)
    # the weight used is the one from the event's source, times the dynamic weight
    weights = network.weights[0][d["source"], np.array(watch)[which, 1]]
    np.testing.assert_array_equal(d["jump"], weights * d["gain"])
    # a neuron that did not fire and was not inhibited ends at its peak
    quiet = (d["winners"] == 0)
    np.testing.assert_array_equal(end[quiet], peak[quiet])
    # the first winner resets from its peak: V - gamma * Vth, within [-Vth, Vth] (2)
    first = d["rank"] == 0
    assert first.sum() > 5
    np.testing.assert_array_equal(
        d["reset"][first], np.clip(peak[first] - gamma * th[first], -th[first], th[first]))
    # a lone winner's rivals receive kappa * their own Vth (4), then the clip at -Vth
    lone = (d["winners"] == 1) & (d["rank"] == -1)
    assert lone.sum() > 20
    np.testing.assert_allclose(
        end[lone], np.maximum(peak[lone] + np.float32(kappas[0]) * th[lone], -th[lone]),
        rtol=1e-6)
    assert np.any(end[lone] == -th[lone])  # the clip acted somewhere


def test_spike_event_names_the_input_event_of_each_spike():
    rng = np.random.default_rng(11)
    network = busy_network(rng, (20, 15, 5))
    events = random_events(rng, 20, 300, 60.0)
    sim = detailed_run(network, events, 60.0, (-0.4, -1.0), make_dynamics(), [(1, 0)])
    t_ms, _, _ = sim.recorded_spikes()
    spike_event = sim.recorded_detail()["spike_event"]
    assert t_ms.size > 20
    np.testing.assert_array_equal(events.times_ms[spike_event], t_ms)


def test_the_refractory_dynamic_weight_recovers_quadratically():
    weight, threshold, t_ref = 0.3, 0.5, 2.0
    times = np.array([1.0, 1.0, 1.5, 2.0, 2.5, 3.5])  # fires at 1 ms only, then probes w_dyn
    sim = Simulator(single_neuron(threshold, weight), watch=[(0, 0)], potential_capacity=10,
                    spike_capacity=10, detail=True)
    sim.run(Events(times, np.zeros(times.size, np.int32)), 4.0, kappas=[0.0],
            dynamics=make_dynamics(t_ref_ms=t_ref))
    d = sim.recorded_detail()
    assert d["rank"][1] == 0 and math.isclose(d["reset"][1], 0.6 - 0.5, rel_tol=1e-6)
    since_spike = times[2:] - 1.0
    np.testing.assert_allclose(d["gain"][2:], np.minimum(1.0, (since_spike / t_ref) ** 2),
                               rtol=1e-6)
