"""The backward pass against METHOD.md, with the spikes held fixed.

Every test writes spike counts, traces, thresholds and weight scales into a small simulator's
state by hand, calls one compiled kernel of ``spikeviz.train.backprop`` and compares what it did
with a reference computed here in float64 NumPy from the equations of METHOD.md: finite
differences of the transfer function (5) for the WTA correction (8) and the updates (12), the
closed forms of (11), (12) and (13), and ADAM written out step by step.
"""

import math

import numpy as np
import pytest

from spikeviz.encode import Events
from spikeviz.engine import Simulator, init_network, make_dynamics
from spikeviz.train import backprop

F32 = np.float32


# --- helpers -------------------------------------------------------------------------------------

def make_hyper(**changes):
    """Hyper as the trainer builds it, with fixed Python types (one numba signature)."""
    values = dict(
        eta_w=0.01, eta_th=0.01, sigma=0.5, gamma=1.0, lam=0.0, beta=10.0, use_counts=False,
        all_outputs=True, output_normalized=True, adam=False, adam_dense=False,
        wta_effective=True, wta_factor=True, wta_fired=False, decay_exponential=True,
        decay_output=False, max_step=0.0, max_step_thresholds=False, beta1=0.9, beta2=0.999,
        eps=1e-8,
    )
    values.update(changes)
    flags = ("use_counts", "all_outputs", "output_normalized", "adam", "adam_dense",
             "wta_effective", "wta_factor", "wta_fired", "decay_exponential", "decay_output",
             "max_step_thresholds")
    return backprop.Hyper(**{k: bool(v) if k in flags else float(v) for k, v in values.items()})


def make_buffers(network, adam=False, dense=False):
    """Adam and Scratch exactly as ``Trainer.__init__`` allocates them."""
    sizes = network.sizes
    n_neurons, n_weights = network.flat_thresholds.size, network.flat_weights.size
    dense = adam and dense
    moments = backprop.Adam(
        *(np.zeros(n_weights if adam else 0, np.float32) for _ in range(2)),
        *(np.zeros(n_neurons if adam else 0, np.float32) for _ in range(2)),
        np.zeros(1, np.int64),
    )
    scratch = backprop.Scratch(
        delta=np.zeros(n_neurons), takes_part=np.zeros(n_neurons, np.bool_),
        active=np.zeros(max(sizes), np.int64), part=np.zeros(max(sizes), np.int64),
        grad_w=np.zeros(n_weights if dense else 0), grad_th=np.zeros(n_neurons if dense else 0),
        step_cuts=np.zeros((len(sizes) - 1, 2), np.int64),
    )
    return moments, scratch


def layer_slice(state, layer):
    return slice(int(state.neuron_start[layer]), int(state.neuron_start[layer + 1]))


def stored_weights(state, layer):
    """(M, N) view of a layer's stored weights; row k is the fan-out of input k."""
    a, b = state.weight_start[layer], state.weight_start[layer + 1]
    n = state.neuron_start[layer + 1] - state.neuron_start[layer]
    return state.weights[a:b].reshape(-1, n)


def real_weights(state, layer, scale_error=None):
    """(M, N) float64 real weights: stored weight times the neuron's scale (its exact scale if
    given the float64 ``scale_error`` the trainer keeps beside it)."""
    part = layer_slice(state, layer)
    scale = state.scale[part].astype(np.float64)
    if scale_error is not None:
        scale += scale_error[part]
    return stored_weights(state, layer).astype(np.float64) * scale


def zero_errors(state):
    """A fresh float64 scale error per neuron, as ``Trainer.__init__`` allocates it."""
    return np.zeros(state.scale.size)


def random_spikes(rng, size, silent_fraction=0.35, max_count=4):
    """Counts with some silent units (at least two active), traces consistent with them."""
    counts = rng.integers(1, max_count + 1, size) * (rng.random(size) >= silent_fraction)
    counts[rng.choice(size, 2, replace=False)] = rng.integers(1, max_count + 1, 2)
    trace = np.where(counts > 0, counts * rng.uniform(0.2, 1.0, size), 0.0)
    return counts.astype(np.int32), trace.astype(np.float32)


def set_spikes(sim, rng, layer_counts=None):
    """Random fixed spikes in the inputs and every layer; ``layer_counts`` overrides counts."""
    counts, trace = random_spikes(rng, sim.inputs.counts.size)
    sim.inputs.counts[:], sim.inputs.trace[:] = counts, trace
    state = sim.state
    for layer in range(state.neuron_start.size - 1):
        sl = layer_slice(state, layer)
        counts, trace = random_spikes(rng, sl.stop - sl.start)
        if layer_counts is not None and layer_counts.get(layer) is not None:
            counts = np.asarray(layer_counts[layer], np.int32)
            trace = np.where(counts > 0, counts * rng.uniform(0.2, 1.0, counts.size), 0.0)
        state.counts[sl], state.trace[sl] = counts, trace.astype(np.float32)


def activity(counts, trace, use_counts):
    return (counts if use_counts else trace).astype(np.float64)


def expected_output(counts, thresholds, label, all_outputs, normalized=True):
    """METHOD "Output and loss" and the output error: (a, loss, takes_part, delta); without
    ``normalized`` the error is (a - y) / Vth alone."""
    counts = np.asarray(counts, np.float64)
    most = counts.max()
    a = counts / most if most > 0 else np.zeros_like(counts)
    y = np.zeros_like(a)
    y[label] = 1.0
    loss = 0.5 * np.sum((a - y) ** 2)
    takes = np.ones(a.size, bool) if all_outputs else counts > 0
    g = 1.0 / np.asarray(thresholds, np.float64)
    delta = np.zeros_like(a)
    if takes.any():
        g_bar = math.sqrt(np.mean(g[takes] ** 2)) if normalized else 1.0
        delta[takes] = g[takes] / g_bar * (a - y)[takes]
    return a, y, loss, takes, delta


def central_gradient(f, x0, h=1e-5):
    """Central finite differences of a scalar or vector function of a float64 array."""
    x0 = np.asarray(x0, np.float64)
    columns = []
    for k in np.ndindex(x0.shape):
        step = np.zeros_like(x0)
        step[k] = h
        columns.append((np.asarray(f(x0 + step)) - np.asarray(f(x0 - step))) / (2 * h))
    out = np.array(columns)  # (x0.size, *f.shape)
    return out.reshape(x0.shape + out.shape[1:])


def busy_network(rng, sizes, alpha=1.0):
    """Low thresholds, floors at 90% of them, excitatory bias: threshold regularization hits
    the floor within a few events (as in tests/engine/test_kernels.py)."""
    network = init_network(sizes, rng, alpha=alpha, floor_fraction=0.9)
    for w in network.weights:
        w += np.float32(0.3 * np.sqrt(3 / w.shape[0]))
    return network


def recomputed_sums(state):
    sum_sq, col_sum = [], []
    for layer in range(state.neuron_start.size - 1):
        w = stored_weights(state, layer).astype(np.float64)
        sum_sq.append(np.sum(w ** 2, axis=0))
        col_sum.append(np.sum(w, axis=0))
    return np.concatenate(sum_sq), np.concatenate(col_sum)


def assert_sums_tracked(state, rtol=1e-12):
    sum_sq, col_sum = recomputed_sums(state)
    np.testing.assert_allclose(state.sum_sq, sum_sq, rtol=rtol)
    np.testing.assert_allclose(state.col_sum, col_sum, rtol=rtol, atol=rtol)


# --- 1. error normalization (11) with the WTA correction (8) -------------------------------------

def wta_transfer(x, w_up, th_up, kappa, sigma, gamma):
    """a(x) from the linear system (7) built on (5), over the n active neurons of a WTA layer:
    a = (1/gamma) diag(1/Vth) W x + (sigma kappa/gamma) (J - I) a."""
    n = th_up.size
    lateral = sigma * kappa / gamma * (np.ones((n, n)) - np.eye(n))
    return np.linalg.solve(np.eye(n) - lateral, (w_up @ x) / (gamma * th_up))


def lower_errors(state, lower, back):
    """(11) for the lower layer's neurons that fired, from ``back`` = sum_j delta_j (effective
    w_ji); 0 for the silent ones."""
    active = state.counts[lower] > 0
    g = 1.0 / state.thresholds[lower].astype(np.float64)
    g_bar = math.sqrt(np.mean(g[active] ** 2))
    return np.where(active, g / g_bar * math.sqrt(active.size / active.sum()) * back, 0.0)


@pytest.mark.parametrize(
    "kappa, sigma, gamma",
    [
        (0.0, 0.5, 1.0),  # no WTA: plain (11)
        (-0.2, 0.5, 1.0),
        (-0.4, 0.5, 1.0),
        (-1.0, 0.5, 1.0),  # n = 3: the printed (8) divides by zero here (METHOD "Correction")
        (-0.7, 0.8, 1.5),
        (-1.0, 1.0, 0.8),
    ],
)
@pytest.mark.parametrize("scaled", [False, True])
@pytest.mark.parametrize("upper_silent", [False, True])
def test_backpropagate_matches_finite_differences_of_the_wta_transfer_function(
    kappa, sigma, gamma, scaled, upper_silent
):
    rng = np.random.default_rng(11)
    n_up = 4 if upper_silent else 3  # with upper_silent, one of 4 takes no part: n = 3
    network = init_network((5, 7, n_up), rng)
    network.thresholds[0][:] = rng.uniform(0.3, 1.2, 7)
    network.thresholds[1][:] = rng.uniform(0.3, 1.2, n_up)
    sim = Simulator(network)
    state = sim.state
    if scaled:
        state.scale[:] = rng.uniform(0.6, 1.5, state.scale.size)
    lower, upper = layer_slice(state, 0), layer_slice(state, 1)
    lower_counts = np.array([2, 0, 1, 3, 0, 1, 4], np.int32)
    state.counts[lower] = lower_counts
    delta = np.zeros(state.thresholds.size)
    takes_part = np.zeros(state.thresholds.size, np.bool_)
    delta[upper] = rng.normal(size=n_up)
    takes_part[upper] = True
    if upper_silent:
        takes_part[upper.start + 2] = False  # its delta must be ignored, and n = 3
    part_up = takes_part[upper].copy()
    delta_up = delta[upper].copy()
    hyper = make_hyper(sigma=sigma, gamma=gamma)

    backprop.backpropagate(state, 0, kappa, hyper, delta, takes_part)

    w_up = real_weights(state, 1).T[part_up]  # (n, 7): w_up[j, i] from lower i to upper j
    th_up = state.thresholds[upper].astype(np.float64)[part_up]
    x0 = rng.uniform(0.0, 2.0, 7)  # the system is linear: any operating point
    jac = central_gradient(lambda x: wta_transfer(x, w_up, th_up, kappa, sigma, gamma), x0)
    assert np.all(np.isfinite(jac))
    back = jac @ (delta_up[part_up] * gamma * th_up)  # sum_j delta_j gamma Vth_j da_j/dx_i
    active = lower_counts > 0
    expected = lower_errors(state, lower, back)

    np.testing.assert_array_equal(takes_part[lower], active)
    assert np.all(np.isfinite(delta[lower]))
    # numba's float() keeps float32 operands float32: w * scale is a float32 product (see report)
    np.testing.assert_allclose(delta[lower], expected, rtol=1e-6, atol=5e-7)
    np.testing.assert_array_equal(delta[upper], delta_up)  # the upper errors are left alone


def wta_transfer_fired(x, w_up, th_up, fired, kappa, sigma, gamma, divisor=1.0):
    """a(x) when the system (7) holds only among the neurons that ``fired``: a silent neuron j
    (with an error) gets a_j = s_j/(gamma Vth_j) + (sigma kappa/gamma) sum_fired a_l and inhibits
    none.  ``divisor`` divides the fired ones' a, as the bracket drops (8)'s leading factor."""
    a = (w_up @ x) / (gamma * th_up)
    if fired.any():
        a_fired = wta_transfer(x, w_up[fired], th_up[fired], kappa, sigma, gamma) / divisor
        a[~fired] += sigma * kappa / gamma * a_fired.sum()
        a[fired] = a_fired
    return a


@pytest.mark.parametrize("kappa, sigma, gamma", [(-0.4, 0.5, 1.0), (-1.0, 0.5, 1.0),
                                                 (-0.7, 0.8, 1.5)])
@pytest.mark.parametrize("upper_counts", [[0, 0, 0, 0, 0], [0, 2, 0, 0, 1], [1, 0, 3, 0, 2],
                                          [1, 1, 2, 3, 1]])
@pytest.mark.parametrize("factor", [True, False])
def test_fired_wta_members_match_finite_differences_of_the_fired_system(
    kappa, sigma, gamma, upper_counts, factor
):
    """``wta_members="fired"``: (8) over the upper neurons that fired (METHOD.md's n active
    neurons); the silent ones with an error feel their inhibition; neuron 3 takes no part."""
    rng = np.random.default_rng(14)
    network = init_network((5, 7, 5), rng)
    network.thresholds[0][:] = rng.uniform(0.3, 1.2, 7)
    network.thresholds[1][:] = rng.uniform(0.3, 1.2, 5)
    state = Simulator(network).state
    state.scale[:] = rng.uniform(0.6, 1.5, state.scale.size)
    lower, upper = layer_slice(state, 0), layer_slice(state, 1)
    state.counts[lower] = [2, 0, 1, 3, 0, 1, 4]
    state.counts[upper] = upper_counts
    delta = np.zeros(state.thresholds.size)
    takes_part = np.zeros(state.thresholds.size, np.bool_)
    delta[upper] = rng.normal(size=5)
    takes_part[upper] = [True, True, True, False, True]
    part_up, delta_up = takes_part[upper].copy(), delta[upper].copy()
    hyper = make_hyper(sigma=sigma, gamma=gamma, wta_fired=True, wta_factor=factor)

    backprop.backpropagate(state, 0, kappa, hyper, delta, takes_part)

    w_up = real_weights(state, 1).T[part_up]
    th_up = state.thresholds[upper].astype(np.float64)[part_up]
    fired = np.asarray(upper_counts)[part_up] > 0
    divisor = 1.0 if factor else gamma / (gamma + kappa * sigma)
    jac = central_gradient(
        lambda x: wta_transfer_fired(x, w_up, th_up, fired, kappa, sigma, gamma, divisor),
        rng.uniform(0.0, 2.0, 7))
    back = jac @ (delta_up[part_up] * gamma * th_up)
    expected = lower_errors(state, lower, back)
    np.testing.assert_allclose(delta[lower], expected, rtol=1e-6, atol=5e-7)


def test_fired_wta_members_equal_every_member_when_every_neuron_with_an_error_fired():
    network = init_network((5, 6, 4), np.random.default_rng(15))
    results = []
    for fired in (False, True):
        state = Simulator(network).state
        state.counts[:] = [2, 0, 1, 3, 1, 4, 1, 2, 1, 3]
        delta = np.zeros(state.thresholds.size)
        takes_part = np.zeros(state.thresholds.size, np.bool_)
        delta[6:], takes_part[6:] = np.linspace(-1.0, 1.0, 4), True
        backprop.backpropagate(state, 0, -1.0, make_hyper(wta_fired=fired), delta, takes_part)
        results.append(delta[:6].copy())
    assert np.count_nonzero(results[0]) == 5
    np.testing.assert_array_equal(results[0], results[1])


def hidden_errors(network, kappa, **hyper):
    """Errors of the 6 hidden neurons of a (5, 6, 4) network (neuron 1 silent) from fixed
    errors of its 4 output neurons, through a layer of lateral strength ``kappa``."""
    state = Simulator(network).state
    state.counts[:6] = [2, 0, 1, 3, 1, 4]
    delta = np.zeros(state.thresholds.size)
    takes_part = np.zeros(state.thresholds.size, np.bool_)
    delta[6:] = np.linspace(-1.0, 1.0, 4)
    takes_part[6:] = True
    backprop.backpropagate(state, 0, kappa, make_hyper(**hyper), delta, takes_part)
    return delta[:6].copy()


@pytest.mark.parametrize("kappa", [-0.4, -1.0])
def test_plain_wta_error_ignores_the_lateral_correction(kappa):
    """``wta_error="plain"``: the errors through a WTA layer are those of (11) without (8)."""
    network = init_network((5, 6, 4), np.random.default_rng(12))
    plain = hidden_errors(network, kappa, wta_effective=False)
    np.testing.assert_array_equal(plain, hidden_errors(network, 0.0))  # as if no WTA
    assert np.abs(hidden_errors(network, kappa) - plain).max() > 1e-3


@pytest.mark.parametrize("kappa", [-0.4, -1.0])
def test_bracket_wta_error_drops_only_the_leading_factor(kappa):
    """``wta_error="bracket"``: the effective weights of (8) without gamma/(gamma + kappa sigma),
    so every error of the layer below is the effective one divided by that factor."""
    network = init_network((5, 6, 4), np.random.default_rng(13))
    results = {name: hidden_errors(network, kappa, gamma=1.0, sigma=0.5, wta_factor=factor)
               for name, factor in [("effective", True), ("bracket", False)]}
    leading = 1.0 / (1.0 + 0.5 * kappa)
    assert np.count_nonzero(results["bracket"]) == 5  # the silent neuron 1 has none
    np.testing.assert_allclose(results["effective"], leading * results["bracket"], rtol=1e-12)


def test_backpropagate_with_no_active_lower_neuron_gives_no_error():
    rng = np.random.default_rng(3)
    sim = Simulator(init_network((4, 5, 3), rng))
    state = sim.state
    delta = np.full(state.thresholds.size, 7.0)
    takes_part = np.ones(state.thresholds.size, np.bool_)
    delta[5:] = rng.normal(size=3)
    backprop.backpropagate(state, 0, -0.5, make_hyper(), delta, takes_part)
    assert not takes_part[:5].any()


# --- 2. output layer --------------------------------------------------------------------------

@pytest.mark.parametrize("all_outputs", [True, False])
@pytest.mark.parametrize(
    "counts, label, predicted",
    [
        ([0, 3, 1, 0, 0, 0, 0, 2, 0, 0], 1, 1),
        ([0, 3, 1, 0, 0, 0, 0, 2, 0, 0], 4, 1),
        ([0, 3, 1, 0, 0, 0, 0, 3, 0, 0], 7, -1),  # a tie for the maximum is an error
        ([0] * 10, 2, -1),  # no output spike
        ([0, 0, 0, 0, 0, 0, 0, 0, 0, 5], 9, 9),
        ([1] * 10, 0, -1),
    ],
)
@pytest.mark.parametrize("normalized", [True, False])
def test_output_error_loss_prediction_and_normalized_deltas(
    all_outputs, counts, label, predicted, normalized
):
    rng = np.random.default_rng(5)
    network = init_network((6, 4, 10), rng)  # the output layer is the last one, not layer 0
    network.thresholds[1][:] = rng.uniform(0.2, 1.5, 10)
    sim = Simulator(network)
    state = sim.state
    state.counts[:4] = [3, 0, 2, 9]
    state.counts[4:] = counts
    delta = np.full(14, 99.0)
    takes_part = np.zeros(14, np.bool_)

    loss, got = backprop.output_error(state, label, all_outputs, delta, takes_part, normalized)

    _, _, loss_ref, takes_ref, delta_ref = expected_output(
        counts, state.thresholds[4:], label, all_outputs, normalized
    )
    assert got == predicted
    assert loss == pytest.approx(loss_ref, rel=1e-12)
    np.testing.assert_array_equal(takes_part[4:], takes_ref)
    # 1/Vth^2 is computed in float32 by the kernel (numba's float() keeps float32)
    np.testing.assert_allclose(delta[4:], delta_ref, rtol=1e-6, atol=1e-12)
    assert np.all(delta[:4] == 99.0)  # hidden errors are not its business


# --- 3. weight update (12) is gradient descent on the transfer function (5) ---------------------

@pytest.mark.parametrize("use_counts", [False, True])
@pytest.mark.parametrize("all_outputs", [True, False])
@pytest.mark.parametrize("scaled", [False, True])
def test_sgd_weight_update_is_gradient_descent_on_the_first_order_transfer_function(
    use_counts, all_outputs, scaled
):
    """dW = -eta_w sqrt(N/m) (gamma/g_bar) dL/dW, L = 1/2 ||a - y||^2 over the neurons taking
    part, with a_i following (5) without WTA: da_i/dw_ik = x_k / (gamma Vth_i).

    The error a - y is the one of the spikes (a = n / max n); (5) supplies the slope.  So a(W) is
    taken as the observed a plus the change of s/(gamma Vth): a(W0) is what the spikes gave.
    """
    rng = np.random.default_rng(21 + use_counts + 2 * all_outputs + 4 * scaled)
    n_in, n_out, gamma, eta_w = 8, 10, 1.3, 0.01
    network = init_network((n_in, n_out), rng)
    network.thresholds[0][:] = rng.uniform(0.3, 1.2, n_out)
    sim = Simulator(network)
    state = sim.state
    if scaled:
        state.scale[:] = rng.uniform(0.6, 1.5, n_out)
    set_spikes(sim, rng, {0: [0, 1, 3, 0, 2, 1, 0, 4, 1, 0]})
    label = 3  # a silent correct neuron
    hyper = make_hyper(eta_w=eta_w, gamma=gamma, use_counts=use_counts, all_outputs=all_outputs)
    adam, scratch = make_buffers(network)
    w0 = real_weights(state, 0)
    stored0 = stored_weights(state, 0).copy()
    th_before = network.thresholds[0].copy()

    backprop.output_error(state, label, all_outputs, scratch.delta, scratch.takes_part)
    backprop.update_layer(state, sim.inputs, 0, 0.0, hyper, adam, scratch, F32(0.0))

    x = activity(sim.inputs.counts, sim.inputs.trace, use_counts)
    active = sim.inputs.counts > 0
    m = active.sum()
    th0 = th_before.astype(np.float64)  # update_layer also moved the thresholds
    a_out, y, _, takes, _ = expected_output(state.counts, th0, label, all_outputs)

    def loss(w):
        a = a_out + ((w - w0).T @ (x * active)) / (gamma * th0)
        return 0.5 * np.sum(((a - y) ** 2)[takes])

    grad = central_gradient(loss, w0, h=1e-6)
    g_bar = math.sqrt(np.mean((1.0 / th0[takes]) ** 2))
    expected = -eta_w * math.sqrt(n_out / m) * (gamma / g_bar) * grad
    change = real_weights(state, 0) - w0
    assert np.abs(expected).max() > 1e-3  # a real update was checked
    np.testing.assert_allclose(change, expected, rtol=1e-4, atol=3e-7)
    used = np.outer(active, takes)
    np.testing.assert_array_equal(stored_weights(state, 0)[~used], stored0[~used])


def one_weight_step(max_step, optimizer="sgd", eta_w=0.01, thresholds_too=False):
    """One output-layer update of a fixed 8-10 network (label 3, silent): the real weights'
    change, the thresholds' change, and the unbounded SGD step of (12) written out."""
    rng = np.random.default_rng(8)
    network = init_network((8, 10), rng)
    network.thresholds[0][:] = rng.uniform(0.3, 1.2, 10)
    sim = Simulator(network)
    set_spikes(sim, rng, {0: [0, 1, 3, 0, 2, 1, 0, 4, 1, 0]})
    state = sim.state
    hyper = make_hyper(eta_w=eta_w, max_step=max_step, adam=optimizer == "adam",
                       max_step_thresholds=thresholds_too)
    adam, scratch = make_buffers(network, adam=optimizer == "adam")
    adam.step[0] = 1  # train_step counts the sample before its updates
    w0, th0 = real_weights(state, 0), state.thresholds.copy()
    backprop.output_error(state, 3, True, scratch.delta, scratch.takes_part)
    backprop.update_layer(state, sim.inputs, 0, 0.0, hyper, adam, scratch, F32(0.0))
    active = sim.inputs.counts > 0
    x = activity(sim.inputs.counts, sim.inputs.trace, False) * active
    unbounded = -eta_w * math.sqrt(10 / active.sum()) * np.outer(x, scratch.delta)
    return real_weights(state, 0) - w0, state.thresholds - th0, unbounded, scratch.step_cuts[0]


def test_max_step_cuts_only_the_longer_sgd_steps_to_its_norm_and_keeps_their_direction():
    free, free_th, unbounded, no_cuts = one_weight_step(0.0)
    np.testing.assert_allclose(free, unbounded, rtol=1e-4, atol=1e-7)
    lengths = np.linalg.norm(unbounded, axis=0)
    max_step = 0.5 * float(np.median(lengths))
    cut = lengths > max_step
    assert 0 < cut.sum() < cut.size  # both cases are checked
    bounded, bounded_th, _, cuts = one_weight_step(max_step)
    moved = np.count_nonzero(lengths)  # the 7 outputs with an error (3 silent ones have a = y = 0)
    assert list(no_cuts) == [0, moved] and list(cuts) == [cut.sum(), moved]
    # the readable twin: each neuron's column of the closed-form step, cut to max_step
    expected = unbounded * np.minimum(1.0, max_step / np.maximum(lengths, 1e-300))
    np.testing.assert_allclose(bounded, expected, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(np.linalg.norm(bounded, axis=0)[cut], max_step, rtol=1e-4)
    np.testing.assert_array_equal(bounded_th, free_th)  # thresholds are not its business


def test_max_step_thresholds_shortens_each_threshold_step_as_much_as_its_weight_step():
    _, free_th, unbounded, _ = one_weight_step(0.0)
    lengths = np.linalg.norm(unbounded, axis=0)
    moved = free_th != 0  # neurons that fired: a_hat > 0
    max_step = float(np.median(lengths[moved]))
    bounded, bounded_th, _, _ = one_weight_step(max_step, thresholds_too=True)
    kept = np.minimum(1.0, max_step / np.maximum(lengths, 1e-300))
    assert (moved & (kept < 1)).any() and (moved & (kept == 1)).any()
    np.testing.assert_allclose(bounded_th, free_th * kept, rtol=1e-4, atol=1e-9)
    np.testing.assert_allclose(bounded, unbounded * kept, rtol=1e-4, atol=1e-7)


def test_max_step_leaves_adam_alone():
    free, free_th, _, _ = one_weight_step(0.0, "adam")
    bounded, bounded_th, _, cuts = one_weight_step(1e-6, "adam")
    assert cuts[0] == 0
    assert np.abs(free).max() > 1e-3
    np.testing.assert_array_equal(bounded, free)
    np.testing.assert_array_equal(bounded_th, free_th)


# --- 4. threshold update ------------------------------------------------------------------------

def too_much_and_silent_setup(seed=31):
    """One WTA output layer: neuron 5 fires most (a = 1) while the label is 3, which is silent."""
    rng = np.random.default_rng(seed)
    network = init_network((6, 10), rng)
    network.thresholds[0][:] = rng.uniform(0.4, 1.0, 10)
    sim = Simulator(network)
    set_spikes(sim, rng, {0: [0, 1, 0, 0, 2, 4, 0, 1, 0, 0]})
    return network, sim


@pytest.mark.parametrize("use_counts", [False, True])
def test_train_step_raises_the_threshold_of_an_overactive_neuron_and_lowers_a_silent_target(
    use_counts,
):
    kappa = -1.0
    network, sim = too_much_and_silent_setup()
    before = network.thresholds[0].copy()
    adam, scratch = make_buffers(network)
    hyper = make_hyper(eta_th=0.01, use_counts=use_counts)
    floors = np.zeros(1, np.float32)
    backprop.train_step(sim.state, zero_errors(sim.state), sim.inputs, 3, np.array([kappa]), floors,
                        hyper, adam, scratch)
    after = network.thresholds[0]
    assert after[5] > before[5]  # fires too much: higher threshold
    assert after[3] < before[3]  # silent neuron of the correct class: lower threshold


@pytest.mark.parametrize("kappa", [0.0, -0.4, -1.0])
@pytest.mark.parametrize("use_counts", [False, True])
@pytest.mark.parametrize("gamma", [1.0, 1.4])
def test_threshold_update_closed_form_and_finite_differences(kappa, use_counts, gamma):
    """dVth_i = +eta_th sqrt(N/(m M)) delta_i a_hat_i, a_hat_i = gamma a_i - sigma sum_{j!=i}
    kappa a_j, which is -eta_th sqrt(N/(m M)) (gamma/g_bar) dL/dVth_i by (5) and (6)."""
    network, sim = too_much_and_silent_setup(seed=32)
    state = sim.state
    eta_th, sigma, label = 0.02, 0.5, 3
    hyper = make_hyper(eta_th=eta_th, gamma=gamma, sigma=sigma, use_counts=use_counts)
    adam, scratch = make_buffers(network)
    th0 = network.thresholds[0].astype(np.float64)

    backprop.output_error(state, label, True, scratch.delta, scratch.takes_part)
    backprop.update_layer(state, sim.inputs, 0, kappa, hyper, adam, scratch, F32(0.0))

    n, fan_in = 10, 6
    m = np.sum(sim.inputs.counts > 0)
    a_out, y, _, takes, delta = expected_output(state.counts, th0, label, True)
    a = activity(state.counts, state.trace, use_counts)
    a_hat = gamma * a - sigma * kappa * (a.sum() - a)
    closed = eta_th * math.sqrt(n / (m * fan_in)) * delta * a_hat
    change = network.thresholds[0].astype(np.float64) - th0
    np.testing.assert_allclose(change, closed, rtol=1e-4, atol=2e-7)

    # (5) at fixed s and fixed other neurons: a_i(Vth) = s_i / (gamma Vth_i) + sigma kappa
    # sum_{j!=i} a_j / gamma with s_i = Vth_i a_hat_i, so that a_i(Vth0) is the observed a_i.
    s = th0 * a_hat

    def loss(th):
        a_now = a_out + s / (gamma * th) - s / (gamma * th0)
        return 0.5 * np.sum(((a_now - y) ** 2)[takes])

    grad = central_gradient(loss, th0, h=1e-6)
    g_bar = math.sqrt(np.mean((1.0 / th0) ** 2))
    descent = -eta_th * math.sqrt(n / (m * fan_in)) * (gamma / g_bar) * grad
    np.testing.assert_allclose(change, descent, rtol=1e-4, atol=2e-7)
    if kappa < 0:
        assert change[5] > 0 and change[3] < 0


def test_thresholds_never_fall_below_the_floor():
    kappa = -1.0
    network, sim = too_much_and_silent_setup()
    state = sim.state
    network.thresholds[0][3] = 0.3  # the lowest: the floor below it blocks only neuron 3
    hyper = make_hyper(eta_th=0.05)
    before = network.thresholds[0].copy()
    probe = network.copy()  # where the thresholds would go without a floor
    probe_sim = Simulator(probe)
    probe_sim.state.counts[:], probe_sim.state.trace[:] = state.counts, state.trace
    probe_sim.inputs.counts[:], probe_sim.inputs.trace[:] = sim.inputs.counts, sim.inputs.trace
    adam, scratch = make_buffers(probe)
    backprop.train_step(probe_sim.state, zero_errors(probe_sim.state), probe_sim.inputs, 3,
                        np.array([kappa]), np.zeros(1, np.float32), hyper, adam, scratch)
    free = probe.thresholds[0].copy()
    assert free[3] < before[3]
    floor = F32(0.5 * (free[3] + before[3]))  # blocks neuron 3's decrease half way
    assert floor < np.delete(free, 3).min()

    adam, scratch = make_buffers(network)
    backprop.train_step(state, zero_errors(state), sim.inputs, 3, np.array([kappa]),
                        np.array([floor], np.float32), hyper, adam, scratch)
    after = network.thresholds[0]
    assert after[3] == floor
    assert np.all(after >= floor)
    np.testing.assert_array_equal(np.delete(after, 3), np.delete(free, 3))


# --- 5. weight regularization (13) -------------------------------------------------------------

def regularized_network(rng, sizes=(6, 4, 3), output_too=False):
    """Hidden neurons with sums of squared real weights around 1.1..1.3 and non-unit scales
    (``output_too``: the output neurons' sums too, with unit scales)."""
    network = init_network(sizes, rng)
    w = network.weights[0]
    scale = rng.uniform(0.7, 1.4, sizes[1])
    target = rng.uniform(1.1, 1.3, sizes[1])
    w *= np.sqrt(target / np.sum(w.astype(np.float64) ** 2, axis=0)) / scale
    if output_too:
        w_out = network.weights[-1]
        target = rng.uniform(1.1, 1.3, sizes[-1])
        w_out *= np.sqrt(target / np.sum(w_out.astype(np.float64) ** 2, axis=0))
    sim = Simulator(network)  # tracked sums from the weights just set
    sim.state.scale[: sizes[1]] = scale
    return network, sim


def test_regularize_weights_shrinks_real_weights_by_exp_minus_r():
    rng = np.random.default_rng(41)
    network, sim = regularized_network(rng)
    state = sim.state
    eta_w, lam, beta = 0.05, 0.02, 10.0
    real0, out0 = real_weights(state, 0), real_weights(state, 1)
    s = np.sum(real0 ** 2, axis=0)  # of the REAL weights
    assert np.all(np.abs(s - np.sum(stored_weights(state, 0).astype(float) ** 2, axis=0)) > 0.01)

    loss = backprop.regularize_weights(state, zero_errors(state), 0, eta_w, lam, beta)

    growth = np.exp(beta * (s - 1.0))
    r = eta_w * lam * beta * growth
    assert r.min() > 1e-3
    assert loss == pytest.approx(np.sum(0.5 * lam * growth), rel=1e-6)
    np.testing.assert_allclose(real_weights(state, 0), real0 * np.exp(-r), rtol=1e-6)
    np.testing.assert_array_equal(real_weights(state, 1), out0)


def test_shrinks_below_a_float32_unit_of_the_scale_add_up():
    """Late in a run r is about 3e-9, under half a float32 unit of a scale near 1 (3e-8): each
    shrink alone would round away, so (13) would stop acting; 20,000 of them must add up, and
    survive the epoch's end, when the scale is folded into the weights."""
    rng = np.random.default_rng(45)
    network, sim = regularized_network(rng)
    state = sim.state
    errors = zero_errors(state)
    lam, beta, steps = 0.002, 10.0, 20_000
    real0 = real_weights(state, 0)
    s = np.sum(real0 ** 2, axis=0)
    eta_w = 3e-9 / (lam * beta * np.exp(beta * (s.max() - 1.0)))
    r = eta_w * lam * beta * np.exp(beta * (s - 1.0))
    assert r.max() < 0.5 * np.spacing(np.float32(1.0))

    for _ in range(steps):
        backprop.regularize_weights(state, errors, 0, eta_w, lam, beta)

    factor = np.ones(s.size)  # the slow twin, in float64: S (and r) fall as the weights shrink
    for _ in range(steps):
        factor *= np.exp(-eta_w * lam * beta * np.exp(beta * (s * factor ** 2 - 1.0)))
    expected = real0 * factor
    assert np.all(factor < 1.0 - 1e-5)
    np.testing.assert_allclose(real_weights(state, 0, errors), expected, rtol=1e-10)
    backprop.fold_scale(state, errors)
    np.testing.assert_allclose(real_weights(state, 0, errors), expected, rtol=1e-7)  # float32
    assert np.all(state.scale == 1.0)
    assert_sums_tracked(state)


@pytest.mark.parametrize("jump", [2.0, 60.0])  # exp(beta (S - 1)) large, and past a float's range
def test_a_collapsing_scale_is_folded_into_finite_weights(jump):
    """One step that pushes a neuron's sum of squares far above 1 makes exp(-r) shrink its
    weights to about 0: they must stay finite and trainable (a scale of 0 would not be)."""
    rng = np.random.default_rng(44)
    network, sim = regularized_network(rng)
    state = sim.state
    state.scale[1] *= math.sqrt(jump)  # S of neuron 1 about 1.2 * jump
    real0 = real_weights(state, 0)
    r = 0.05 * 0.02 * 10.0 * np.exp(np.minimum(10.0 * (np.sum(real0 ** 2, axis=0) - 1.0), 700.0))

    loss = backprop.regularize_weights(state, zero_errors(state), 0, 0.05, 0.02, 10.0)

    assert np.isfinite(loss) and loss > 1e3
    assert state.scale[1] == 1.0  # folded
    np.testing.assert_allclose(real_weights(state, 0), real0 * np.exp(-r), rtol=1e-5, atol=1e-30)
    assert_sums_tracked(state)
    others = [0, 2, 3]
    np.testing.assert_allclose(real_weights(state, 0)[:, others], real0[:, others] * np.exp(-r[others]),
                               rtol=1e-5)
    backprop._add_to_weight(state.weights, state.scale, state.sum_sq, state.col_sum, 1, 1, 0.25)
    assert np.isfinite(state.weights).all()
    assert_sums_tracked(state)


def test_first_order_weight_decay_multiplies_by_one_minus_r_and_can_flip_the_sign():
    rng = np.random.default_rng(43)
    network, sim = regularized_network(rng)
    state = sim.state
    eta_w, lam, beta = 0.05, 0.02, 10.0
    real0 = real_weights(state, 0)
    r = eta_w * lam * beta * np.exp(beta * (np.sum(real0 ** 2, axis=0) - 1.0))

    backprop.regularize_weights(state, zero_errors(state), 0, eta_w, lam, beta, False)
    np.testing.assert_allclose(real_weights(state, 0), real0 * (1.0 - r), rtol=1e-5)

    # a neuron far above condition (10): r > 1, and the first-order form flips its weights
    _, sim = regularized_network(np.random.default_rng(43))
    state = sim.state
    state.scale[0] *= 1.5  # sum of squares about 2.5-2.9: r = 0.01 exp(10 * 1.5..1.9) >> 1
    before = real_weights(state, 0)[:, 0]
    backprop.regularize_weights(state, zero_errors(state), 0, eta_w, lam, beta, False)
    assert np.all(np.sign(real_weights(state, 0)[:, 0]) == -np.sign(before))


def test_regularizer_gradient_and_its_first_order_agreement_with_the_decay():
    rng = np.random.default_rng(42)
    network, sim = regularized_network(rng)
    state = sim.state
    lam, beta = 0.04, 10.0
    real0 = real_weights(state, 0)

    def l_w(w):  # (13) of one neuron
        return 0.5 * lam * math.exp(beta * (np.sum(w ** 2) - 1.0))

    grads = np.stack([central_gradient(l_w, real0[:, i], h=1e-7) for i in range(4)], axis=1)
    s = np.sum(real0 ** 2, axis=0)
    closed = lam * beta * real0 * np.exp(beta * (s - 1.0))
    np.testing.assert_allclose(grads, closed, rtol=1e-6, atol=1e-10)

    eta_w = 1e-3  # small: exp(-r) = 1 - eta dL_w/dw / w + O(r^2)
    backprop.regularize_weights(state, zero_errors(state), 0, eta_w, lam, beta)
    ratio = real_weights(state, 0) / real0
    r = eta_w * grads / real0
    assert r.max() < 1e-2
    np.testing.assert_allclose(1.0 - ratio, r, rtol=2e-2)


@pytest.mark.parametrize("decay_output", [False, True])
def test_train_step_regularizes_the_chosen_layers_and_adds_their_loss(decay_output):
    rng = np.random.default_rng(43)
    network, sim = regularized_network(rng, (6, 4, 10), output_too=True)
    state = sim.state
    set_spikes(sim, rng)
    scale0 = state.scale.copy()
    eta_w, lam, beta, label = 0.01, 0.02, 10.0, 2
    hyper = make_hyper(eta_w=eta_w, lam=lam, beta=beta, decay_output=decay_output)
    adam, scratch = make_buffers(network)
    _, _, out_loss, _, _ = expected_output(state.counts[4:], state.thresholds[4:], label, True)

    loss, _ = backprop.train_step(state, zero_errors(state), sim.inputs, label,
                                  np.array([-0.4, -1.0]), np.zeros(2, np.float32), hyper, adam,
                                  scratch)

    # S of each neuron after the update (12), before the decay: old scale, new stored.
    regularized = 14 if decay_output else 4
    s = np.concatenate([
        scale0[layer_slice(state, layer)].astype(np.float64) ** 2
        * np.sum(stored_weights(state, layer).astype(np.float64) ** 2, axis=0)
        for layer in range(2)])[:regularized]
    growth = np.exp(beta * (s - 1.0))
    assert loss == pytest.approx(out_loss + np.sum(0.5 * lam * growth), rel=1e-6)
    np.testing.assert_allclose(state.scale[:regularized],
                               scale0[:regularized] * np.exp(-eta_w * lam * beta * growth),
                               rtol=1e-6)
    assert np.all(state.scale[:regularized] < scale0[:regularized])
    np.testing.assert_array_equal(state.scale[regularized:], scale0[regularized:])


# --- 6. bookkeeping of the tracked sums and the scale ------------------------------------------

@pytest.mark.parametrize("optimizer", ["sgd", "adam_lazy", "adam_dense"])
def test_tracked_sums_follow_the_stored_weights_through_training_steps(optimizer):
    rng = np.random.default_rng(51)
    network = init_network((12, 8, 6, 10), rng)
    sim = Simulator(network)
    state = sim.state
    use_adam = optimizer != "sgd"
    adam, scratch = make_buffers(network, adam=use_adam, dense=optimizer == "adam_dense")
    hyper = make_hyper(eta_w=0.01, eta_th=0.001, lam=0.02, adam=use_adam,
                       adam_dense=optimizer == "adam_dense")
    weights0 = state.weights.copy()
    kappas, floors = np.array([-0.4, 0.0, -1.0]), network.threshold_floors
    errors = zero_errors(state)
    for _ in range(6):
        set_spikes(sim, rng)
        backprop.train_step(state, errors, sim.inputs, int(rng.integers(10)), kappas, floors,
                            hyper, adam, scratch)
    assert np.sum(state.weights != weights0) > state.weights.size // 4
    assert np.all(state.scale[:14] < 1.0)  # hidden layers decayed
    assert_sums_tracked(state)

    real = [real_weights(state, layer, errors) for layer in range(3)]
    backprop.fold_scale(state, errors)
    np.testing.assert_array_equal(state.scale, 1.0)
    for layer in range(3):
        np.testing.assert_allclose(real_weights(state, layer), real[layer], rtol=1e-6)
    assert_sums_tracked(state)


@pytest.mark.parametrize("scaled", [False, True])
def test_tracked_sums_follow_the_weight_boost_of_threshold_regularization(scaled):
    rng = np.random.default_rng(61)
    network = busy_network(rng, (20, 15, 5))
    sim = Simulator(network)
    if scaled:
        sim.state.scale[:] = rng.uniform(0.8, 1.2, sim.state.scale.size)
    weights0 = sim.state.weights.copy()
    times = np.sort(rng.uniform(0, 50.0, 300))
    events = Events(times, rng.integers(0, 20, 300).astype(np.int32))
    sim.run(events, 50.0, kappas=[-0.4, -1.0], dynamics=make_dynamics(rho=5e-3, weight_boost=1.0))
    assert np.sum(sim.state.counts) > 20
    boosted = np.any(stored_weights(sim.state, 0) != weights0[: 20 * 15].reshape(20, 15), axis=0)
    assert boosted.sum() >= 2  # floors were hit: whole columns rose
    # A boost moves the sums in closed form, blind to the float32 rounding of each raised weight
    assert_sums_tracked(sim.state, rtol=1e-6)


# --- 7. ADAM ----------------------------------------------------------------------------------

def adam_setup(seed, dense):
    rng = np.random.default_rng(seed)
    network = init_network((8, 10), rng)
    network.thresholds[0][:] = rng.uniform(0.4, 1.0, 10)
    sim = Simulator(network)
    adam, scratch = make_buffers(network, adam=True, dense=dense)
    hyper = make_hyper(eta_w=0.01, eta_th=0.01, adam=True, adam_dense=dense, all_outputs=False)
    return rng, network, sim, adam, scratch, hyper


def reference_gradients(sim, label, hyper):
    """(12) divided by -eta: weights sqrt(N/m) delta_i x_j, thresholds -sqrt(N/(mM)) delta a_hat."""
    state, inputs = sim.state, sim.inputs
    th = state.thresholds.astype(np.float64)
    _, _, _, takes, delta = expected_output(state.counts, th, label, hyper.all_outputs)
    x = activity(inputs.counts, inputs.trace, hyper.use_counts)
    active = inputs.counts > 0
    m, n, fan_in = active.sum(), th.size, inputs.counts.size
    used = np.outer(active, takes & (delta != 0))
    grad_w = np.where(used, math.sqrt(n / m) * np.outer(x, delta), 0.0)
    a = activity(state.counts, state.trace, hyper.use_counts)
    grad_th = np.where(takes, -math.sqrt(n / (m * fan_in)) * delta * hyper.gamma * a, 0.0)
    return grad_w, grad_th, used, takes


def adam_direction(m, v, grad, t, hyper):
    m = hyper.beta1 * m + (1 - hyper.beta1) * grad
    v = hyper.beta2 * v + (1 - hyper.beta2) * grad ** 2
    m_hat, v_hat = m / (1 - hyper.beta1 ** t), v / (1 - hyper.beta2 ** t)
    return m, v, m_hat / (np.sqrt(v_hat) + hyper.eps)


def snapshot(state, adam):
    """Real weights, thresholds and ADAM moments as float64 copies."""
    return dict(
        w=real_weights(state, 0), th=state.thresholds.astype(np.float64),
        m_w=adam.m_w.astype(np.float64).reshape(8, 10),
        v_w=adam.v_w.astype(np.float64).reshape(8, 10),
        m_th=adam.m_th.astype(np.float64), v_th=adam.v_th.astype(np.float64),
    )


def two_steps(dense):
    """Two ADAM steps; in the second one the output neurons 0..4 are silent (take no part)."""
    rng, network, sim, adam, scratch, hyper = adam_setup(71, dense)
    state = sim.state
    errors = zero_errors(state)
    record = []
    for counts in ([1, 2, 0, 3, 1, 0, 2, 1, 0, 1], [0, 0, 0, 0, 0, 2, 1, 3, 0, 1]):
        set_spikes(sim, rng, {0: counts})
        label = 3
        grad_w, grad_th, used, takes = reference_gradients(sim, label, hyper)
        before = snapshot(state, adam)
        backprop.train_step(state, errors, sim.inputs, label, np.zeros(1),
                            np.zeros(1, np.float32), hyper, adam, scratch)
        record.append((grad_w, grad_th, used, takes, before))
    assert adam.step[0] == 2
    return sim, adam, hyper, record


def test_lazy_adam_moves_used_weights_by_the_adam_direction_and_leaves_the_rest_alone():
    sim, adam, hyper, record = two_steps(dense=False)
    state = sim.state
    afters = [record[1][4], snapshot(state, adam)]
    for t, ((grad_w, grad_th, used, takes, before), after) in enumerate(zip(record, afters), 1):
        assert used.sum() > 5 and (~used).sum() > 5
        m, v, direction = adam_direction(before["m_w"], before["v_w"], grad_w, t, hyper)
        change = after["w"] - before["w"]
        np.testing.assert_allclose(change[used], -hyper.eta_w * direction[used], rtol=1e-5,
                                   atol=1e-7)
        np.testing.assert_allclose(after["m_w"][used], m[used], rtol=1e-5)
        np.testing.assert_allclose(after["v_w"][used], v[used], rtol=1e-5)
        np.testing.assert_array_equal(change[~used], 0.0)  # lazy: unused weights stay
        np.testing.assert_array_equal(after["m_w"][~used], before["m_w"][~used])
        np.testing.assert_array_equal(after["v_w"][~used], before["v_w"][~used])
        m, v, direction = adam_direction(before["m_th"], before["v_th"], grad_th, t, hyper)
        change = after["th"] - before["th"]
        np.testing.assert_allclose(change[takes], -hyper.eta_th * direction[takes], rtol=1e-5,
                                   atol=1e-7)
        np.testing.assert_array_equal(change[~takes], 0.0)
    # the second step's silent neurons had moments from the first one, and kept them
    assert np.any(record[0][2] & ~record[1][2])


def test_dense_adam_updates_the_moments_of_every_weight():
    sim, adam, hyper, record = two_steps(dense=True)
    state = sim.state
    grad_w, grad_th, used, takes, before = record[1]
    used_first = record[0][2]
    m, v, direction = adam_direction(before["m_w"], before["v_w"], grad_w, 2, hyper)
    np.testing.assert_allclose(adam.m_w.reshape(8, 10), m, rtol=1e-5, atol=1e-12)
    np.testing.assert_allclose(adam.v_w.reshape(8, 10), v, rtol=1e-5, atol=1e-15)
    change = real_weights(state, 0) - before["w"]
    np.testing.assert_allclose(change, -hyper.eta_w * direction, rtol=1e-5, atol=1e-7)
    stale = used_first & ~used  # took part in step 1 only: momentum keeps moving them
    assert stale.sum() > 5
    assert np.all(adam.m_w.reshape(8, 10)[stale] != before["m_w"][stale])
    assert np.all(change[stale] != 0.0)
    never = ~used_first & ~used
    np.testing.assert_array_equal(change[never], 0.0)
    m, v, direction = adam_direction(before["m_th"], before["v_th"], grad_th, 2, hyper)
    np.testing.assert_allclose(adam.m_th, m, rtol=1e-5, atol=1e-12)
    np.testing.assert_allclose(state.thresholds - before["th"], -hyper.eta_th * direction,
                               rtol=1e-5, atol=1e-7)
