"""What the three PyTorch peers share: the 784-800-10 network, its training step (surrogate-
gradient BPTT, ADAM, snnTorch's tutorial loss: cross-entropy of the output membrane potentials
at every step) and the timed measurements.

A peer module supplies only its neuron layers: ``make_neurons(workload)`` returns one module per
layer mapping input currents (T, B, N) to spikes (T, B, N), starting from rest at every call, and
keeping the membrane potentials of the call in ``.membrane`` (T, B, N).
The layers run one after the other over the whole presentation (the input current of a layer
for all T steps is one matrix product), the fastest order for a feed-forward net and SpikingJelly's
"multi-step" mode; snnTorch and Norse step their neurons in a Python loop over T, as their
tutorials do.  torch is imported inside the functions, so that this module (and the tests) load
without it.
"""

import time

import numpy as np

from benchmarks.peers.measure import peak_rss_mb, timed_rate
from benchmarks.peers.workload import (
    dense_bins, init_peer_weights, mean_events, neuron_agreement, synaptic_events,
)

LEARNING_RATE = 5e-4  # snnTorch's tutorials' ADAM rate
TRAIN_BATCHES = (1, 16, 64, 256)
INFER_BATCHES = (1, 8, 32)


def make_network(peer, workload, seed=0):
    """Linear (no bias) -> neurons -> Linear -> neurons, weights of eq. (9) for threshold 1."""
    import torch

    weights = init_peer_weights(workload, np.random.default_rng(seed))
    layers = []
    for w, neurons in zip(weights, peer.make_neurons(workload)):
        linear = torch.nn.Linear(w.shape[1], w.shape[0], bias=False)
        with torch.no_grad():  # the peer's input scale (Norse: tau / dt) folded into the weights
            linear.weight.copy_(torch.from_numpy(w * peer.settings(workload)["input_scale"]))
        layers += [linear, neurons]
    return torch.nn.Sequential(*layers)


def run_network(network, inputs):
    """Output spike counts (B, 10) and hidden spikes in the batch, from (T, B, 784) inputs."""
    hidden = network[1](network[0](inputs))
    out = network[3](network[2](hidden))
    return out.sum(0), hidden.sum()


class Pool:
    """Pre-drawn input events (times, channels) of some images and their labels, cycled."""

    def __init__(self, events, labels, duration_ms, workload, seed=0):
        self.events, self.labels = events, np.asarray(labels, np.int64)
        self.duration_ms, self.workload = duration_ms, workload
        self.rng = np.random.default_rng(seed)

    def batch(self, size):
        import torch

        rows = self.rng.integers(len(self.events), size=size)
        dense = dense_bins([self.events[i] for i in rows], self.duration_ms,
                           self.workload.dt_ms, self.workload.sizes[0])
        return torch.from_numpy(dense), torch.from_numpy(self.labels[rows])


def train_step(network, optimizer, inputs, labels):
    """One BPTT update; returns the hidden spike count of the batch.

    The loss is the mean over steps of the cross-entropy of the output potentials (snnTorch's
    tutorial 5): on these sparse inputs, cross-entropy of spike counts (``ce_count_loss``)
    reached 41% after 6,000 samples, the potentials 82-84% (tried once each, batch 64-128).
    """
    import torch

    _, hidden = run_network(network, inputs)
    membrane = network[3].membrane
    loss = sum(torch.nn.functional.cross_entropy(step, labels) for step in membrane)
    loss = loss / len(membrane)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return float(hidden)


def rate_row(result, batch, events_per_sample, hidden_spikes_per_sample, sizes):
    """One table row: samples/s and synaptic events/s (input events x hidden size + hidden
    spikes x output size, each tool's own activity)."""
    synaptic = synaptic_events(events_per_sample, hidden_spikes_per_sample, sizes)
    return {"batch": batch, "samples_per_s": round(result["samples_per_s"], 2),
            "synaptic_events_per_s": round(result["samples_per_s"] * synaptic),
            "hidden_spikes_per_sample": round(hidden_spikes_per_sample, 1),
            "seconds": result["seconds"]}


def train_rates(peer, workload, pool, seconds, batches):
    rows = []
    for batch in batches:
        import torch

        network = make_network(peer, workload)
        optimizer = torch.optim.Adam(network.parameters(), lr=LEARNING_RATE)
        spikes = []

        def step():
            inputs, labels = pool.batch(batch)
            spikes.append(train_step(network, optimizer, inputs, labels) / batch)

        step()  # warm-up (first allocations)
        spikes.clear()
        result = timed_rate(step, batch, seconds)
        rows.append(rate_row(result, batch, mean_events(pool.events), float(np.mean(spikes)),
                             workload.sizes))
    return rows


def forward_rates(peer, workload, pool, seconds, batches):
    import torch

    network = make_network(peer, workload)
    rows = []
    for batch in batches:
        spikes = []

        def step():
            inputs, _ = pool.batch(batch)
            with torch.no_grad():
                spikes.append(float(run_network(network, inputs)[1]) / batch)

        step()
        spikes.clear()
        result = timed_rate(step, batch, seconds)
        rows.append(rate_row(result, batch, mean_events(pool.events), float(np.mean(spikes)),
                             workload.sizes))
    return rows


def check_neuron(peer, workload, current=0.12, steps=60):
    """One neuron of the peer's hidden layer driven by a constant input current, against the
    leaky integrator it should be (``workload.reference_neuron``); recorded with every run."""
    import torch

    neurons = peer.make_neurons(workload)[0]
    settings = peer.settings(workload)
    currents = np.full(steps, current)
    drive = torch.full((steps, 1, 1), current * settings["input_scale"])
    with torch.no_grad():
        spikes = neurons(drive)
    return neuron_agreement(neurons.membrane[:, 0, 0].numpy(), spikes[:, 0, 0].numpy(),
                            currents, settings["beta"], settings["threshold"])


def startup(peer, workload, pool, process_start):
    """Seconds from process start to the first trained sample: imports, network, first step."""
    import torch

    import_s = time.time() - process_start
    network = make_network(peer, workload)
    optimizer = torch.optim.Adam(network.parameters(), lr=LEARNING_RATE)
    train_step(network, optimizer, *pool.batch(1))
    return {"import_s": round(import_s, 2), "to_first_sample_s": round(time.time() - process_start, 2)}


def speed(peer, workload, train_pool, infer_pool, seconds, process_start):
    """Everything measured for one torch peer (batch sizes: ``TRAIN_BATCHES``, ``INFER_BATCHES``)."""
    import torch

    peer.import_library()
    report = {"startup": startup(peer, workload, train_pool, process_start),
              "version": peer.version(), "torch": torch.__version__,
              "threads": torch.get_num_threads(), "settings": peer.settings(workload),
              "neuron_check": check_neuron(peer, workload)}
    report["train"] = train_rates(peer, workload, train_pool, seconds, TRAIN_BATCHES)
    best = max(report["train"], key=lambda row: row["samples_per_s"])["batch"]
    report["forward"] = forward_rates(peer, workload, train_pool, seconds, sorted({1, best}))
    report["infer"] = forward_rates(peer, workload, infer_pool, seconds, INFER_BATCHES)
    report["peak_rss_mb"] = round(peak_rss_mb(), 1)
    return report


def accuracy(peer, workload, data_dir, train_samples, test_samples, batch,
             learning_rate=LEARNING_RATE):
    """One epoch of MNIST by surrogate-gradient BPTT, then test accuracy with ``infer_ms``
    presentations.  Events come from spikeviz's encoder (same rate, same presentation); a test
    sample without output spikes or with a tie counts as wrong, as in spikeviz."""
    import torch

    from spikeviz.data import load_mnist
    from spikeviz.encode import PoissonEncoder
    from spikeviz.train.trainer import predictions

    data = load_mnist(data_dir, download=False)
    encoder = PoissonEncoder(workload.sizes[0], rate_hz=workload.rate_hz)
    network = make_network(peer, workload)
    optimizer = torch.optim.Adam(network.parameters(), lr=learning_rate)
    order = np.random.default_rng(0).permutation(len(data.train_labels))[:train_samples]
    rng = np.random.default_rng(1)

    def inputs(images, rows, duration_ms):
        events = [encoder.encode(images[i], duration_ms, rng) for i in rows]
        return torch.from_numpy(dense_bins(events, duration_ms, workload.dt_ms,
                                           workload.sizes[0]))

    start = time.perf_counter()
    for first in range(0, len(order), batch):
        rows = order[first:first + batch]
        labels = torch.from_numpy(data.train_labels[rows].astype(np.int64))
        train_step(network, optimizer, inputs(data.train_images, rows, workload.train_ms), labels)
    train_s = time.perf_counter() - start
    start, counts = time.perf_counter(), []
    with torch.no_grad():
        for first in range(0, test_samples, INFER_BATCHES[-1]):
            rows = np.arange(first, min(first + INFER_BATCHES[-1], test_samples))
            counts.append(run_network(network, inputs(data.test_images, rows,
                                                      workload.infer_ms))[0].numpy())
    predicted = predictions(np.concatenate(counts))
    return {"train_samples": len(order), "train_s": round(train_s, 1), "batch": batch,
            "learning_rate": learning_rate, "test_samples": test_samples,
            "test_s": round(time.perf_counter() - start, 1),
            "test_accuracy": round(float(np.mean(predicted == data.test_labels[:test_samples])), 4),
            "test_presentation_ms": workload.infer_ms, "threads": torch.get_num_threads(),
            "peak_rss_mb": round(peak_rss_mb(), 1)}
