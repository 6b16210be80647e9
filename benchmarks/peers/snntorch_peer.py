"""snnTorch: ``snntorch.Leaky`` neurons stepped over time, surrogate-gradient BPTT.

Time-stepped at dt = 1 ms: Leaky's ``mem = beta * mem + input - reset * threshold`` with
beta = exp(-dt / tau_mp), threshold 1 and reset by subtraction, as spikeviz (gamma = 1).
``reset_delay=False``: the threshold is subtracted in the step of the spike, as in spikeviz
(Leaky's default subtracts it one step later, after the over-threshold V has decayed once).
"""

from benchmarks.peers.workload import decay_per_step, n_steps

NAME = "snnTorch"
LIMITS = {
    "refractory": "none in Leaky; at dt = T_ref = 1 ms a neuron fires at most once per step, "
                  "and spikeviz's dynamic weight is back to 1 one step after a spike",
    "wta": "not modelled (Leaky's inhibition=True silences all but the strongest neuron, not "
           "the paper's kappa); its cost in a dense step would be one O(N) vector operation",
    "event_driven": "no: every step multiplies the whole 784x800 matrix, input or not",
    "membrane_clip": "none (spikeviz clips V to [-Vth, Vth])",
}


def import_library():
    import snntorch  # noqa: F401


def version():
    import snntorch

    return snntorch.__version__


def settings(workload):
    return {"dt_ms": workload.dt_ms, "steps_train": n_steps(workload.train_ms, workload.dt_ms),
            "steps_infer": n_steps(workload.infer_ms, workload.dt_ms),
            "beta": decay_per_step(workload), "threshold": 1.0, "reset": "subtract",
            "reset_delay": False,
            "input_scale": 1.0, "surrogate": "snntorch default (ATan)"}


def make_neurons(workload):
    import snntorch
    import torch

    class LeakyOverTime(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lif = snntorch.Leaky(beta=decay_per_step(workload), threshold=1.0,
                                      reset_mechanism="subtract", reset_delay=False)

        def forward(self, currents):
            mem = torch.zeros_like(currents[0])
            spikes, membrane = [], []
            for current in currents:
                spike, mem = self.lif(current, mem)
                spikes.append(spike)
                membrane.append(mem)
            self.membrane = torch.stack(membrane)  # (T, B, N), for the loss
            return torch.stack(spikes)

    return [LeakyOverTime() for _ in workload.sizes[1:]]


def accuracy(workload, data_dir, train_samples, test_samples, batch=128):
    """One epoch of MNIST with snnTorch (see ``torch_common.accuracy``)."""
    import sys

    from benchmarks.peers.torch_common import accuracy as train_and_test

    return train_and_test(sys.modules[__name__], workload, data_dir, train_samples, test_samples,
                          batch)
