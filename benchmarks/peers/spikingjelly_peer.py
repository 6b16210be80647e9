"""SpikingJelly: ``LIFNode`` in multi-step mode (its torch backend on a CPU), surrogate BPTT.

``decay_input=False`` and soft reset (``v_reset=None``): H = V - V / tau + X, V -= threshold on
a spike.  Its tau is in steps: tau = 1 / (1 - exp(-dt / tau_mp)) gives the same decay per step
as spikeviz's exact exponential.
"""

from benchmarks.peers.workload import decay_per_step, n_steps

NAME = "SpikingJelly"
LIMITS = {
    "refractory": "none in LIFNode; at dt = T_ref = 1 ms a neuron fires at most once per step",
    "wta": "not modelled (no lateral-inhibition layer); an O(N) vector operation per step",
    "event_driven": "no: every step multiplies the whole 784x800 matrix, input or not",
    "membrane_clip": "none (spikeviz clips V to [-Vth, Vth])",
}


def import_library():
    import spikingjelly.activation_based.neuron  # noqa: F401


def version():
    from importlib.metadata import version as dist_version

    return dist_version("spikingjelly")


def tau_steps(workload):
    return 1.0 / (1.0 - decay_per_step(workload))


def settings(workload):
    return {"dt_ms": workload.dt_ms, "steps_train": n_steps(workload.train_ms, workload.dt_ms),
            "steps_infer": n_steps(workload.infer_ms, workload.dt_ms),
            "beta": 1.0 - 1.0 / tau_steps(workload), "threshold": 1.0, "reset": "subtract",
            "input_scale": 1.0, "surrogate": "spikingjelly default (Sigmoid)"}


def make_neurons(workload):
    import torch
    from spikingjelly.activation_based import neuron

    class LIFFromRest(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lif = neuron.LIFNode(tau=tau_steps(workload), decay_input=False,
                                      v_threshold=1.0, v_reset=None, step_mode="m",
                                      store_v_seq=True)

        def forward(self, currents):
            self.lif.reset()  # its state outlives a call: each presentation starts from rest
            spikes = self.lif(currents)
            self.membrane = self.lif.v_seq  # (T, B, N), for the loss
            return spikes

    return [LIFFromRest() for _ in workload.sizes[1:]]
