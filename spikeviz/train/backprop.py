"""Backpropagation on spike events (Sec. 4 and 5 of the paper), one sample at a time.

After the forward pass (``spikeviz.engine.kernels.run_sample``) has left spike counts and
end-of-presentation traces in the state, :func:`train_step` computes the output error, propagates
it down with error normalization (11) and the WTA correction (8), and applies the updates (12)
with SGD or ADAM, then the exponential weight regularization (13).  Decisions from METHOD.md:

- output a_i = n_i / max_j n_j (all zeros when no output neuron fired); all output neurons take
  part in the error (``all_outputs``), silent ones with a = 0;
- x and a in the gradients are the traces (3) at the end of the presentation, or the spike
  counts (``use_counts``);
- through a WTA layer l+1 with n participating neurons (all with an error, or those that fired),
  the effective weights are
  gamma/(gamma + kappa sigma) * (w_ji + kappa sigma Vth_j / (gamma - kappa sigma (n-1)) * S_i),
  S_i = sum_j' w_j'i / Vth_j';
- ADAM receives the (12) increments divided by the learning rate as its gradients;
- the weight regularization multiplies a hidden neuron's weights by exp(-r_i),
  r_i = eta_w lambda beta exp(beta (S_i - 1)), S_i = sum_j w_ij^2 (the output layer's too with
  ``decay_output``).  It is applied to every such neuron every sample through a per-neuron
  ``scale`` (real weight = stored weight * scale), so it costs O(N) instead of O(M N); the sums
  of squares are tracked incrementally in float64.
"""

import math
from typing import NamedTuple

import numpy as np

from spikeviz._jit import jit
from spikeviz.engine.kernels import hold_exact, move_threshold


#: Below this, a neuron's weight scale is folded into its weights (see _fold_neuron).
MIN_SCALE = 1e-4
#: exp() of the regularizer is capped here: past it the weights shrink to 0 all the same.
MAX_EXPONENT = 700.0


class Hyper(NamedTuple):
    """Scalar settings of one training step, read from the config at the sample boundary."""

    eta_w: float
    eta_th: float
    sigma: float
    gamma: float
    lam: float
    beta: float
    use_counts: bool  # gradients from spike counts instead of decayed traces
    all_outputs: bool  # every output neuron takes part in the error
    output_normalized: bool  # output errors times g_i/g_bar (else times g_i = 1/Vth_i alone)
    adam: bool
    adam_dense: bool  # ADAM moments of every parameter decay each sample (else only used ones)
    wta_effective: bool  # errors through a WTA layer use the effective weights of (8)
    wta_factor: bool  # ... with their leading gamma / (gamma + kappa sigma) (else the bracket only)
    wta_fired: bool  # ... over the neurons that fired (else over every neuron with an error)
    decay_exponential: bool  # weight regularization by exp(-r) (else by 1 - r)
    decay_output: bool  # the output layer's weights are regularized too (else hidden only)
    max_step: float  # largest norm of one neuron's SGD weight step per sample; 0: unbounded
    max_step_thresholds: bool  # a cut step shortens the neuron's threshold step by as much
    beta1: float
    beta2: float
    eps: float


class Adam(NamedTuple):
    """ADAM moments of every weight and threshold (empty arrays for SGD)."""

    m_w: np.ndarray  # (W,) float32, like State.weights
    v_w: np.ndarray
    m_th: np.ndarray  # (sum N,) float32, like State.thresholds
    v_th: np.ndarray
    step: np.ndarray  # (1,) int64, samples seen by ADAM


class Scratch(NamedTuple):
    delta: np.ndarray  # (sum N,) float64, error of each neuron; 0 for those not taking part
    takes_part: np.ndarray  # (sum N,) bool
    active: np.ndarray  # (max(M_0, N),) int64, indices of the active inputs of a layer
    part: np.ndarray  # (max N,) int64, layer-local indices of the neurons with an error
    grad_w: np.ndarray  # (W,) float64 for dense ADAM, else empty
    grad_th: np.ndarray  # (sum N,) float64 for dense ADAM, else empty
    step_cuts: np.ndarray  # (layers, 2) int64: neuron weight steps max_step cut, and all taken


@jit
def output_error(state, label, all_outputs, delta, takes_part, normalized=True):
    """Output a = n / max n, loss 1/2 ||a - y||^2, normalized error (11) of the output layer
    (``normalized`` False: e_i / Vth_i, the slope of (5) without (11)'s 1/g_bar).

    Returns (loss, predicted label or -1 when no output fired or the maximum is tied).
    """
    lo, hi = state.neuron_start[-2], state.neuron_start[-1]
    counts = state.counts[lo:hi]
    most = counts.max()
    predicted = np.argmax(counts) if most > 0 and np.sum(counts == most) == 1 else -1
    loss = 0.0
    g_sq_sum, n_part = 0.0, 0
    for i in range(hi - lo):
        a = counts[i] / most if most > 0 else 0.0
        e = a - (1.0 if i == label else 0.0)
        loss += 0.5 * e * e
        takes_part[lo + i] = all_outputs or counts[i] > 0
        delta[lo + i] = e if takes_part[lo + i] else 0.0
        if takes_part[lo + i]:
            g_sq_sum += 1.0 / np.float64(state.thresholds[lo + i]) ** 2
            n_part += 1
    if n_part > 0:
        g_bar = math.sqrt(g_sq_sum / n_part) if normalized else 1.0
        for i in range(lo, hi):
            delta[i] *= (1.0 / np.float64(state.thresholds[i])) / g_bar
    return loss, predicted


@jit
def backpropagate(state, layer, kappa, hyper, delta, takes_part):
    """Errors of layer ``layer`` from those of layer + 1, by (11) with the WTA correction (8).

    (8) is the closed form over the n members of the layer's linear system (7): every neuron of
    layer + 1 with an error, or with ``hyper.wta_fired`` only those that fired; a silent neuron
    with an error is then outside the system, a_j = s_j/(gamma Vth_j) + sigma kappa/gamma
    sum_members a_l, so its effective weights are w_ji + c_outside Vth_j S_i.
    """
    lo, hi = state.neuron_start[layer], state.neuron_start[layer + 1]
    up_lo, up_hi = hi, state.neuron_start[layer + 2]
    n_up = up_hi - up_lo
    w = state.weights[state.weight_start[layer + 1]:state.weight_start[layer + 2]]
    w = w.reshape((hi - lo, n_up))  # row i: fan-out of neuron i of this layer
    th_up, scale_up = state.thresholds[up_lo:up_hi], state.scale[up_lo:up_hi]
    part_up = takes_part[up_lo:up_hi]
    member = part_up & (state.counts[up_lo:up_hi] > 0) if hyper.wta_fired else part_up.copy()
    delta_up = delta[up_lo:up_hi]
    n_members = np.sum(member)
    wta = hyper.wta_effective and kappa != 0.0 and n_members > 0
    if wta:
        ks = kappa * hyper.sigma
        leading = hyper.gamma / (hyper.gamma + ks)
        # 2 at kappa -1: every error of the layer below doubles (the bracket alone keeps 1)
        c1 = leading if hyper.wta_factor else 1.0
        c2 = ks / (hyper.gamma - ks * (n_members - 1))
        # sigma kappa/gamma * sum over the members of d a_l/dx_i, per S_i; / leading for the bracket
        c_outside = c2 * c1 / leading
        th_delta_in, th_delta_out = 0.0, 0.0  # sums of Vth_j delta_j over members / the others
        for j in range(n_up):
            if member[j]:
                th_delta_in += np.float64(th_up[j]) * delta_up[j]
            elif part_up[j]:
                th_delta_out += np.float64(th_up[j]) * delta_up[j]
    n_active = 0
    g_sq_sum = 0.0
    for i in range(hi - lo):
        takes_part[lo + i] = state.counts[lo + i] > 0
        if takes_part[lo + i]:
            n_active += 1
            g_sq_sum += 1.0 / np.float64(state.thresholds[lo + i]) ** 2
    if n_active == 0:
        return
    g_bar = math.sqrt(g_sq_sum / n_active)
    fan_ratio = math.sqrt((hi - lo) / n_active)  # sqrt(M^(l+1) / m^(l+1)) in (11)
    for i in range(hi - lo):
        if not takes_part[lo + i]:
            delta[lo + i] = 0.0
            continue
        back_in, back_out, s_i = 0.0, 0.0, 0.0
        for j in range(n_up):
            if part_up[j]:
                w_ij = np.float64(w[i, j]) * np.float64(scale_up[j])
                if member[j]:
                    back_in += w_ij * delta_up[j]
                    s_i += w_ij / np.float64(th_up[j])
                else:
                    back_out += w_ij * delta_up[j]
        if wta:
            back = (c1 * (back_in + c2 * s_i * th_delta_in)
                    + back_out + c_outside * s_i * th_delta_out)
        else:
            back = back_in + back_out
        g_i = 1.0 / np.float64(state.thresholds[lo + i])
        delta[lo + i] = (g_i / g_bar) * fan_ratio * back


@jit(inline="always")  # called per weight: no call overhead
def _activity(trace, counts, use_counts, i):
    """x or a in the gradients: the decayed trace (3) or the spike count."""
    return np.float64(counts[i]) if use_counts else np.float64(trace[i])


@jit(inline="always")  # called per weight: no call overhead
def _adam_direction(m, v, k, grad, beta1, beta2, eps, correction1, correction2):
    """Update the moments of parameter k with ``grad``; the ADAM direction m_hat/(sqrt(v_hat)+eps).

    ``correction1`` and ``correction2`` are the bias corrections 1 - beta^t of this step.
    """
    m[k] = beta1 * m[k] + (1.0 - beta1) * grad
    v[k] = beta2 * v[k] + (1.0 - beta2) * grad * grad
    return (m[k] / correction1) / (math.sqrt(v[k] / correction2) + eps)


@jit(inline="always")  # called per weight: no call overhead
def _add_to_weight(weights, scale, sum_sq, col_sum, k, neuron, step):
    """Add ``step`` to the real weight k of ``neuron``, tracking its sums of stored weights."""
    old = weights[k]
    new = np.float32(old + step / scale[neuron])
    weights[k] = new
    sum_sq[neuron] += np.float64(new) * np.float64(new) - np.float64(old) * np.float64(old)
    col_sum[neuron] += np.float64(new) - np.float64(old)


@jit
def _participants(takes_part, delta, lo, hi, out):
    """Layer-local indices of the neurons with a non-zero error; returns how many."""
    n = 0
    for i in range(hi - lo):
        if takes_part[lo + i] and delta[lo + i] != 0.0:
            out[n] = i
            n += 1
    return n


@jit
def _active_inputs(counts, out):
    """Indices of the inputs that received at least one event; returns how many."""
    m = 0
    for j in range(counts.size):
        if counts[j] > 0:
            out[m] = j
            m += 1
    return m


@jit
def _weight_coefficients(x_trace, x_counts, use_counts, active, m, part, n_part, delta, w_factor,
                         max_grad, cuts):
    """sqrt(N/m) delta_i for each neuron taking part, so that its weight gradient is this times x,
    and the fraction of it each neuron keeps (1 where the bound did not cut).

    With ``max_grad`` > 0 a neuron whose gradient vector is longer than ``max_grad`` is shortened
    to it, its direction kept: in a layer with few active inputs (m small) the factors sqrt(N/m)
    of (11) and (12) multiply, and one SGD step of a deep network's first 200 ms epoch could push
    a neuron's sum of squared weights from 1 to 20 (docs/results.md, "A bound on SGD's steps").
    ``cuts`` counts the steps cut and the steps taken.
    """
    coeff = np.empty(n_part)
    kept = np.ones(n_part)
    x_norm = 0.0
    if max_grad > 0.0:
        for a in range(m):
            x_norm += _activity(x_trace, x_counts, use_counts, active[a]) ** 2
        x_norm = math.sqrt(x_norm)
    for p in range(n_part):
        coeff[p] = w_factor * delta[part[p]]
        length = abs(coeff[p]) * x_norm
        if max_grad > 0.0 and length > max_grad:
            kept[p] = max_grad / length
            coeff[p] *= kept[p]
            cuts[0] += 1
    cuts[1] += n_part
    return coeff, kept


@jit
def update_layer(state, inputs, layer, kappa, hyper, adam, scratch, floor):
    """Updates (12) of one layer's weights and thresholds from its errors.

    The state's arrays are taken out of their tuples once, before the loops: extracting them
    per weight costs a reference-count round trip each time.
    """
    lo, hi = state.neuron_start[layer], state.neuron_start[layer + 1]
    n = hi - lo
    if layer == 0:
        x_trace, x_counts = inputs.trace, inputs.counts
    else:
        x_trace = state.trace[state.neuron_start[layer - 1]:lo]
        x_counts = state.counts[state.neuron_start[layer - 1]:lo]
    fan_in = x_counts.size
    active, part = scratch.active, scratch.part
    m = _active_inputs(x_counts, active)
    n_part = _participants(scratch.takes_part, scratch.delta, lo, hi, part)
    if m == 0 or n_part == 0:
        return
    delta = scratch.delta[lo:hi]
    weights, scale = state.weights, state.scale
    sum_sq, col_sum = state.sum_sq, state.col_sum
    m_w, v_w, grad_w = adam.m_w, adam.v_w, scratch.grad_w
    b1, b2, eps = hyper.beta1, hyper.beta2, hyper.eps
    c1, c2 = 1.0 - b1 ** adam.step[0], 1.0 - b2 ** adam.step[0]
    eta_w, use_counts = hyper.eta_w, hyper.use_counts
    lazy_adam = hyper.adam and not hyper.adam_dense
    # Weights: dW_ij = -eta_w sqrt(N/m) delta_i x_j over the active inputs j; ``grad`` is the
    # increment divided by -eta_w (what ADAM receives).
    coeff, kept = _weight_coefficients(
        x_trace, x_counts, use_counts, active, m, part, n_part, delta, math.sqrt(n / m),
        0.0 if hyper.adam else hyper.max_step / eta_w, scratch.step_cuts[layer])
    for a in range(m):
        j = active[a]
        x_j = _activity(x_trace, x_counts, use_counts, j)
        row = state.weight_start[layer] + j * n
        for p in range(n_part):
            i = part[p]
            grad = coeff[p] * x_j
            if hyper.adam_dense and hyper.adam:
                grad_w[row + i] += grad  # applied to every weight in dense_adam()
                continue
            direction = grad
            if lazy_adam:
                direction = _adam_direction(m_w, v_w, row + i, grad, b1, b2, eps, c1, c2)
            _add_to_weight(weights, scale, sum_sq, col_sum, row + i, lo + i, -eta_w * direction)
    # Thresholds: dVth_i = +eta_th sqrt(N/(m M)) delta_i a_hat_i,
    # a_hat_i = gamma a_i - sigma sum_{j != i} kappa a_j.
    a_trace, a_counts = state.trace[lo:hi], state.counts[lo:hi]
    total_a = 0.0
    for i in range(n):
        total_a += _activity(a_trace, a_counts, use_counts, i)
    th_factor = math.sqrt(n / (m * fan_in))
    thresholds = state.thresholds
    for p in range(n_part):
        i = part[p]
        a_i = _activity(a_trace, a_counts, use_counts, i)
        a_hat = hyper.gamma * a_i - hyper.sigma * kappa * (total_a - a_i)
        grad = -th_factor * delta[i] * a_hat
        if hyper.max_step_thresholds:
            # the neuron's whole step shortened alike: with only its weight step cut, the
            # thresholds of a sparse layer take the steps its weights may not (deep nets, SGD)
            grad *= kept[p]
        if hyper.adam and hyper.adam_dense:
            scratch.grad_th[lo + i] += grad
            continue
        if lazy_adam:
            grad = _adam_direction(adam.m_th, adam.v_th, lo + i, grad, b1, b2, eps, c1, c2)
        move_threshold(thresholds, state.threshold_error, lo + i, -hyper.eta_th * grad, floor)


@jit
def regularize_weights(state, scale_error, layer, eta_w, lam, beta, exponential=True):
    """Weight regularization (13) of a layer; returns its loss term.

    Each neuron's weights shrink by exp(-r_i), or by the first-order 1 - r_i, which changes
    their sign once r_i > 1 (METHOD.md measured that diverge). Late in a run r_i is below half
    a float32 unit of a scale near 1 (3e-8): ``scale_error`` (float64, one per neuron) keeps
    what the float32 scale cannot hold, or every one of those shrinks would round away. It is
    the trainer's, not a field of the engine's State: one more State field halved the forward
    pass (docs/benchmarks.md).
    """
    loss = 0.0
    for i in range(state.neuron_start[layer], state.neuron_start[layer + 1]):
        exact = np.float64(state.scale[i]) + scale_error[i]
        s = exact * exact * state.sum_sq[i]
        growth = math.exp(min(beta * (s - 1.0), MAX_EXPONENT))
        loss += 0.5 * lam * growth
        r = eta_w * lam * beta * growth
        shrink = math.exp(-r) if exponential else 1.0 - r
        hold_exact(state.scale, scale_error, i, exact * shrink)
        if abs(state.scale[i]) < MIN_SCALE:
            _fold_neuron(state, scale_error, layer, i)
    return loss


@jit
def _fold_neuron(state, scale_error, layer, neuron):
    """Fold one neuron's scale into its stored weights and recompute its tracked sums exactly.

    Done for every neuron at an epoch's end, and at once for a collapsing scale: one SGD step
    can push a neuron's sum of squares far above 1 (few active inputs, large errors); exp(-r)
    then shrinks its weights to about 0, and a float32 scale of 0 would make every later weight
    step divide by zero.
    """
    lo, hi = state.neuron_start[layer], state.neuron_start[layer + 1]
    n, i = hi - lo, neuron - lo
    w = state.weights[state.weight_start[layer]:state.weight_start[layer + 1]]
    w = w.reshape((w.size // n, n))
    state.sum_sq[neuron] = 0.0
    state.col_sum[neuron] = 0.0
    for k in range(w.shape[0]):
        value = w[k, i] * state.scale[neuron]
        w[k, i] = value
        state.sum_sq[neuron] += np.float64(value) * np.float64(value)
        state.col_sum[neuron] += np.float64(value)
    # what the float32 scale could not hold stays, relative to the folded weights (a scale of
    # 0 leaves zero weights, which no factor changes)
    if state.scale[neuron] != 0.0:
        scale_error[neuron] /= state.scale[neuron]
    else:
        scale_error[neuron] = 0.0
    state.scale[neuron] = 1.0


@jit
def dense_adam(state, adam, hyper, scratch, floors):
    """Dense ADAM: every parameter's moments see this sample's gradient (0 if it took no part)."""
    c1, c2 = 1.0 - hyper.beta1 ** adam.step[0], 1.0 - hyper.beta2 ** adam.step[0]
    for layer in range(state.neuron_start.size - 1):
        lo, hi = state.neuron_start[layer], state.neuron_start[layer + 1]
        for k in range(state.weight_start[layer], state.weight_start[layer + 1]):
            neuron = lo + (k - state.weight_start[layer]) % (hi - lo)
            direction = _adam_direction(adam.m_w, adam.v_w, k, scratch.grad_w[k], hyper.beta1,
                                        hyper.beta2, hyper.eps, c1, c2)
            _add_to_weight(state.weights, state.scale, state.sum_sq, state.col_sum, k, neuron,
                           -hyper.eta_w * direction)
            scratch.grad_w[k] = 0.0
        for i in range(lo, hi):
            direction = _adam_direction(adam.m_th, adam.v_th, i, scratch.grad_th[i], hyper.beta1,
                                        hyper.beta2, hyper.eps, c1, c2)
            move_threshold(state.thresholds, state.threshold_error, i, -hyper.eta_th * direction,
                           floors[layer])
            scratch.grad_th[i] = 0.0


@jit
def train_step(state, scale_error, inputs, label, kappas, floors, hyper, adam, scratch):
    """Backward pass and updates for one sample whose forward pass has just run.

    Returns (loss, predicted label or -1).
    """
    n_layers = state.neuron_start.size - 1
    loss, predicted = output_error(state, label, hyper.all_outputs, scratch.delta,
                                   scratch.takes_part, hyper.output_normalized)
    for layer in range(n_layers - 2, -1, -1):
        backpropagate(state, layer, kappas[layer + 1], hyper, scratch.delta, scratch.takes_part)
    if hyper.adam:
        adam.step[0] += 1
    for layer in range(n_layers):
        update_layer(state, inputs, layer, kappas[layer], hyper, adam, scratch, floors[layer])
    if hyper.adam and hyper.adam_dense:
        dense_adam(state, adam, hyper, scratch, floors)
    for layer in range(n_layers if hyper.decay_output else n_layers - 1):
        loss += regularize_weights(state, scale_error, layer, hyper.eta_w, hyper.lam, hyper.beta,
                                   hyper.decay_exponential)
    return loss, predicted


@jit
def fold_scale(state, scale_error):
    """Fold every neuron's scale into its stored weights and recompute the tracked sums exactly."""
    for layer in range(state.neuron_start.size - 1):
        for neuron in range(state.neuron_start[layer], state.neuron_start[layer + 1]):
            _fold_neuron(state, scale_error, layer, neuron)
