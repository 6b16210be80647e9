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
from spikeviz.train import backprop
from spikeviz.train.trainer import Trainer

from watch_layers import parse_settings


def exact_thresholds(trainer):
    state = trainer.sim.state
    return state.thresholds.astype(np.float64) + state.threshold_error


def train_sample_in_two_steps(trainer):
    """``Trainer.train_sample`` with the thresholds read between its forward and backward pass;
    returns (thresholds before, after the forward pass, after the backward pass, correct)."""
    if trainer._stale:
        trainer._compile_settings()
    index = trainer.order[trainer.position]
    label = int(trainer.task.train_labels[index])
    events, end_ms = trainer.task.train_sample(index, trainer.duration_ms, trainer.event_rng)
    before = exact_thresholds(trainer)
    trainer.sim.run_checked(events.times_ms, events.channels, end_ms, trainer.kappas,
                            trainer.dynamics)
    forward = exact_thresholds(trainer)
    _, predicted = backprop.train_step(
        trainer.sim.state, trainer.sim.inputs, label, trainer.kappas,
        trainer.network.threshold_floors, trainer.hyper, trainer.adam, trainer.scratch,
    )
    trainer.position += 1
    return before, forward, exact_thresholds(trainer), predicted == label


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
    starts = trainer.network.neuron_start
    layers = [slice(a, b) for a, b in zip(starts[:-1], starts[1:])]
    forward_sum, backward_sum = np.zeros(len(layers)), np.zeros(len(layers))
    correct = 0
    print("samples, running accuracy; per layer: mean threshold, its total change in the forward "
          "pass and in the backward pass since the start")
    for sample in range(1, n_samples + 1):
        before, forward, after, right = train_sample_in_two_steps(trainer)
        correct += right
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
