"""Norse: ``LIFBoxCell`` (a leaky integrator without synaptic current) stepped over time.

Norse integrates dv = dt / tau_mem (v_leak - v + i) by Euler: beta = 1 - dt / tau_mem (0.95
against spikeviz's exp(-1/20) = 0.951) and an input i moves v by i dt / tau_mem, so the weights
carry a factor tau_mem / dt = 20 for an input event to add w to v, as in spikeviz.  Reset by
subtraction (``reset_subtract``), threshold 1.
"""

from benchmarks.peers.workload import n_steps

NAME = "Norse"
LIMITS = {
    "refractory": "none in LIFBox; at dt = T_ref = 1 ms a neuron fires at most once per step",
    "wta": "not modelled (no lateral-inhibition layer); an O(N) vector operation per step",
    "event_driven": "no: every step multiplies the whole 784x800 matrix, input or not",
    "membrane_clip": "none (spikeviz clips V to [-Vth, Vth])",
    "integration": "forward Euler (decay 0.95 per step, spikeviz 0.951)",
}


def import_library():
    import norse.torch  # noqa: F401


def version():
    import norse

    return getattr(norse, "__version__", None) or _dist_version()


def _dist_version():
    from importlib.metadata import version as dist_version

    return dist_version("norse")


def settings(workload):
    return {"dt_ms": workload.dt_ms, "steps_train": n_steps(workload.train_ms, workload.dt_ms),
            "steps_infer": n_steps(workload.infer_ms, workload.dt_ms),
            "beta": 1.0 - workload.dt_ms / workload.tau_mp_ms, "threshold": 1.0,
            "reset": "subtract", "input_scale": workload.tau_mp_ms / workload.dt_ms,
            "surrogate": "norse default (SuperSpike, alpha 100)"}


def make_neurons(workload):
    import torch
    from norse.torch import LIFBoxCell, LIFBoxParameters
    from norse.torch.functional.reset import reset_subtract

    parameters = LIFBoxParameters(tau_mem_inv=torch.as_tensor(1000.0 / workload.tau_mp_ms),
                                  v_th=torch.as_tensor(1.0), reset_method=reset_subtract)

    class LIFBoxOverTime(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.cell = LIFBoxCell(parameters, dt=workload.dt_ms / 1000.0)

        def forward(self, currents):
            state, spikes, membrane = None, [], []
            for current in currents:
                spike, state = self.cell(current, state)
                spikes.append(spike)
                membrane.append(state.v)
            self.membrane = torch.stack(membrane)  # (T, B, N), for the loss
            return torch.stack(spikes)

    return [LIFBoxOverTime() for _ in workload.sizes[1:]]
