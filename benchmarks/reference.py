"""A straightforward Numba event loop: the reference the engine's speed is measured against.

What one would write first: float64, the weight matrix indexed (neuron, input), one exp per
layer per event (the paper's shared tau), a decay-and-add loop then a separate threshold loop.  Same model as the engine for 784-800-10 with WTA (refractoriness included), so that the
two do the same work; it is measured in the same run as the engine and only the ratio is kept.
"""

import math

import numba
import numpy as np


@numba.njit(cache=True)
def reference_sample(times, channels, w_hidden, th_hidden, w_out, th_out, kappa_h, kappa_o,
                     tau, t_ref):
    """Output spike counts of one sample (weights are (neurons, inputs), float64)."""
    layers_w = (w_hidden, w_out)
    layers_th = (th_hidden, th_out)
    kappas = (kappa_h, kappa_o)
    v = [np.zeros(th_hidden.size), np.zeros(th_out.size)]
    last_update = [0.0, 0.0]
    last_spike = [np.full(th_hidden.size, -1e9), np.full(th_out.size, -1e9)]
    counts = np.zeros(th_out.size, np.int64)
    for e in range(times.size):
        t = times[e]
        sources = [np.int64(channels[e])]
        for layer in range(2):
            w, th, kappa = layers_w[layer], layers_th[layer], kappas[layer]
            vl, ls = v[layer], last_spike[layer]
            fired = []
            for s in sources:
                decay = math.exp(-(t - last_update[layer]) / tau)
                last_update[layer] = t
                for i in range(th.size):
                    vl[i] *= decay
                    dt = t - ls[i]
                    gain = min(1.0, (dt / t_ref) ** 2) if dt < t_ref else 1.0
                    vl[i] = max(vl[i] + w[i, s] * gain, -th[i])
                for i in range(th.size):
                    if vl[i] >= th[i]:
                        vl[i] = min(vl[i] - th[i], th[i])
                        ls[i] = t
                        fired.append(i)
                        if kappa != 0.0:
                            for j in range(th.size):
                                if j != i:
                                    vl[j] = max(vl[j] + kappa * th[j], -th[j])
            if layer == 1:
                for i in fired:
                    counts[i] += 1
            if len(fired) == 0:
                break
            sources = fired
    return counts
