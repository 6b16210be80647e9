"""Where a training run's threshold changes come from: the forward pass or the backward pass.

    python scripts/threshold_drift.py --from runs/adam-800-k02/epoch-095.npz --samples 30000

Trains on, sample by sample, and adds up per layer how much the mean threshold moved in the
forward pass (threshold regularization, Sec. 5.2: its rises and falls cancel over a layer except
where a fall is blocked at the floor) and in the backward pass (the updates (12)). One line per K
samples. Made to find a drift of the thresholds that the learning signal does not explain.
"""

import argparse

import numpy as np

from spikeviz.config import Config
from spikeviz.data import load_mnist
from spikeviz.train.trainer import Trainer

from watch_layers import parse_settings


def exact_thresholds(trainer):
    state = trainer.sim.state
    return state.thresholds.astype(np.float64) + state.threshold_error


def read_around_the_forward_pass(trainer):
    """Make the trainer's forward pass record the thresholds before and after it, in a dict."""
    seen, forward_pass = {}, trainer.sim.run_checked

    def recorded(*args):
        seen["before"] = exact_thresholds(trainer)
        forward_pass(*args)
        seen["forward"] = exact_thresholds(trainer)

    trainer.sim.run_checked = recorded
    return seen


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data/mnist")
    parser.add_argument("--from", dest="start_from", metavar="CHECKPOINT",
                        help="continue this checkpoint (default: a new network)")
    parser.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE",
                        help="config settings, e.g. optimizer=sgd kappa_hidden=-0.4")
    parser.add_argument("--samples", type=int, default=30000)
    parser.add_argument("--every", type=int, default=10000)
    args = parser.parse_args()
    data, settings = load_mnist(args.data_dir), parse_settings(args.set)
    if args.start_from:
        trainer = Trainer.resume(args.start_from, data)
        trainer.config.update_from(settings, source="--set")
    else:
        trainer = Trainer(Config(**settings), data)
    n_samples = min(args.samples, trainer.n_train - trainer.position)  # to the epoch's end
    seen = read_around_the_forward_pass(trainer)
    starts = trainer.network.neuron_start
    layers = [slice(a, b) for a, b in zip(starts[:-1], starts[1:])]
    forward_sum, backward_sum = np.zeros(len(layers)), np.zeros(len(layers))
    correct = 0
    print("samples, running accuracy; per layer: mean threshold, its total change in the forward "
          "pass and in the backward pass since the start")
    for sample in range(1, n_samples + 1):
        label, predicted, _ = trainer.train_sample()
        correct += predicted == label
        before, forward, after = seen["before"], seen["forward"], exact_thresholds(trainer)
        for k, layer in enumerate(layers):
            forward_sum[k] += (forward[layer] - before[layer]).mean()
            backward_sum[k] += (after[layer] - forward[layer]).mean()
        if sample % args.every == 0:
            cells = [f"{after[layer].mean():.4f} {forward_sum[k]:+.4f} {backward_sum[k]:+.4f}"
                     for k, layer in enumerate(layers)]
            print(f"{sample} {correct / args.every:.3f} | " + " | ".join(cells), flush=True)
            correct = 0


if __name__ == "__main__":
    main()
