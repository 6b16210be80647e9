"""Watch each layer of a network while it trains: activity, thresholds, weights, every K samples.

    python scripts/watch_layers.py --set hidden=500+500 optimizer=sgd weight_boost=0.01 \\
        --samples 6000 --every 500

One line per K training samples: running accuracy; per layer the spikes per neuron per sample,
the mean threshold, the mean weight and the largest sum of squared weights of a neuron; the
largest per-sample loss (the weight regularizer (13) makes it huge when one step pushes a neuron's
sum of squares far above 1). Made to find where a deep network's activity runs away, faster than
full epochs of `spikeviz train` show it.
"""

import argparse
import time

import numpy as np

from spikeviz.config import Config
from spikeviz.data import load_mnist
from spikeviz.sweep import parse_grid
from spikeviz.train.trainer import Trainer


def parse_settings(specs):
    """``NAME=VALUE`` settings as Config keywords, written as one point of a sweep grid."""
    settings = {}
    for name, values in parse_grid(specs).items():
        if len(values) != 1:
            raise SystemExit(f"{name}: one value, not {len(values)} (hidden layers: hidden=500+500)")
        settings[name] = values[0]
    return settings


def layer_summary(trainer, spikes, n_samples):
    """Per layer: spikes per neuron per sample, mean threshold, mean weight, max sum of squares."""
    net, scale = trainer.network, trainer.sim.state.scale
    rows = []
    for layer, (lo, hi) in enumerate(zip(net.neuron_start[:-1], net.neuron_start[1:])):
        weights = net.weights[layer] * scale[lo:hi][None, :]
        rows.append((spikes[lo:hi].mean() / n_samples, net.thresholds[layer].mean(),
                     weights.mean(), (weights ** 2).sum(axis=0).max()))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data/mnist")
    parser.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE",
                        help="config settings, e.g. hidden=300+300 kappa_hidden=-0.2")
    parser.add_argument("--samples", type=int, default=6000)
    parser.add_argument("--every", type=int, default=500)
    args = parser.parse_args()
    trainer = Trainer(Config(**parse_settings(args.set)), load_mnist(args.data_dir))
    seen = np.zeros_like(trainer.tally["spikes"])
    correct, worst_loss, start = 0, 0.0, time.perf_counter()
    for sample in range(1, args.samples + 1):
        label, predicted, loss = trainer.train_sample()
        correct += predicted == label
        worst_loss = max(worst_loss, loss)
        if sample % args.every:
            continue
        spikes = trainer.tally["spikes"] - seen
        seen = trainer.tally["spikes"].copy()
        rows = layer_summary(trainer, spikes, args.every)
        columns = [" ".join(f"{row[k]:{fmt}}" for row in rows)
                   for k, fmt in enumerate((".3f", ".3f", "+.4f", ".2f"))]
        rate = args.every / (time.perf_counter() - start)
        print(f"{sample:6d} acc {correct / args.every:.3f} | spikes/neuron {columns[0]} | "
              f"threshold {columns[1]} | mean w {columns[2]} | max sum w^2 {columns[3]} | "
              f"max loss {worst_loss:.3g} | {rate:.0f} samples/s", flush=True)
        correct, worst_loss, start = 0, 0.0, time.perf_counter()


if __name__ == "__main__":
    main()
