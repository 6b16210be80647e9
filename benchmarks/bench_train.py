"""Training speed of 784-800-10 on PI-MNIST, 50 ms presentations, batch size 1, full method.

Measured in one run, one core each (issue 3): training with SGD and with ADAM (encoding, forward
pass with threshold regularization, backward pass, updates and weight regularization included),
the forward pass alone on the same presentations, and the straightforward Numba loop of
``reference.py`` (forward only) as the machine's reference.  Samples/s after a warm-up of 3,000
samples (compilation and the first, busiest phase of learning excluded); ratios to the reference.

    python -m benchmarks.bench_train [--samples 5000] [--data-dir ../shared/data/mnist]
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np

from benchmarks.reference import reference_sample
from spikeviz.config import Config
from spikeviz.data import load_mnist
from spikeviz.train.trainer import Trainer

DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "mnist"


def rate(run, n):
    start = time.perf_counter()
    run(n)
    return n / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=5000)
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA))
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    data = load_mnist(args.data_dir, download=False)

    trainers = {
        "spikeviz training, SGD": Trainer(Config(optimizer="sgd", eta_w=0.002), data),
        "spikeviz training, ADAM": Trainer(Config(optimizer="adam", eta_w=0.001), data),
    }
    for trainer in trainers.values():
        for _ in range(3000):
            trainer.train_sample()
    sgd = trainers["spikeviz training, SGD"]
    events = [sgd.task.encoder.encode(data.train_images[i], 50.0, np.random.default_rng(i))
              for i in range(args.samples)]

    def train(trainer):
        return lambda n: [trainer.train_sample() for _ in range(n)]

    def forward(n):
        for ev in events[:n]:
            sgd.sim.run_checked(ev.times_ms, ev.channels, 50.0, sgd.kappas, sgd.dynamics)

    w_h = sgd.network.weights[0].T.astype(np.float64).copy()
    w_o = sgd.network.weights[1].T.astype(np.float64).copy()
    th_h = sgd.network.thresholds[0].astype(np.float64)
    th_o = sgd.network.thresholds[1].astype(np.float64)

    def reference(n):
        for ev in events[:n]:
            reference_sample(ev.times_ms, ev.channels, w_h, th_h, w_o, th_o, -0.4, -1.0, 20.0, 1.0)

    reference(2)
    forward(2)
    measured = {"reference Numba loop, forward only": rate(reference, args.samples)}
    measured["spikeviz forward only (threshold regularization on)"] = rate(forward, args.samples)
    for name, trainer in trainers.items():
        measured[name] = rate(train(trainer), args.samples)
    ref = measured["reference Numba loop, forward only"]
    report = {
        "date": time.strftime("%Y-%m-%d"),
        "network": "784-800-10, 50 ms presentations at 5,000 events/s, batch size 1",
        "results": [{"what": k, "samples_per_s": round(v), "ratio_to_reference": round(v / ref, 2)}
                    for k, v in measured.items()],
    }
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
