"""One network from the last epochs of a run: the mean of its checkpoints' weights and thresholds.

Late in a run the learning rate has decayed and the network moves little from epoch to epoch, but
its test accuracy still wobbles by a tenth of a point.  Averaging the networks of those epochs
(Polyak averaging, done afterwards on the checkpoints every run keeps) gives one network to keep
instead of a choice among twenty; on nine full runs it tests as well as their mean epoch
(docs/results.md, thirty-sixth session).  The mean is taken over the real weights (stored weight
times the neuron's scale) and the thresholds.
The result is a checkpoint for ``spikeviz evaluate`` and the lab, not for training: it has no
optimizer state, and ``--resume`` or ``--from`` refuse it.
"""

import re
from pathlib import Path

import numpy as np

from spikeviz.errors import ConfigError
from spikeviz.train.checkpoint import load_checkpoint, save_checkpoint

EPOCH_FILE = re.compile(r"^epoch-(\d+)\.npz$")


def epoch_checkpoints(run_dir):
    """{epoch: path} of the per-epoch checkpoints in ``run_dir``."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"run directory {run_dir} does not exist; pass the --out DIR of a "
                          "`spikeviz train` run")
    found = {int(m.group(1)): path for path in run_dir.iterdir()
             if (m := EPOCH_FILE.match(path.name))}
    if not found:
        raise ConfigError(f"{run_dir} holds no epoch-NNN.npz checkpoints; pass the --out DIR of "
                          "a `spikeviz train` run that finished at least one epoch")
    return found


def choose_epochs(run_dir, span=None, last=20):
    """(first, last) epoch: ``span`` "A-B" as given, else the last ``last`` epochs checkpointed."""
    found = epoch_checkpoints(run_dir)
    if last < 1:
        raise ConfigError(f"--last {last}: average at least one epoch")
    if span is None:
        newest = max(found)
        return max(min(found), newest - last + 1), newest
    match = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*", span)
    if not match or int(match.group(1)) > int(match.group(2)):
        raise ConfigError(f"--epochs {span!r}: give a span of epochs FIRST-LAST, e.g. 181-200")
    first, final = int(match.group(1)), int(match.group(2))
    missing = [e for e in range(first, final + 1) if e not in found]
    if missing:
        raise ConfigError(f"{Path(run_dir) / f'epoch-{missing[0]:03d}.npz'} does not exist "
                          f"({len(missing)} of epochs {first}-{final} are missing); the run has "
                          f"checkpoints of epochs {min(found)}-{max(found)}")
    return first, final


def average_checkpoints(paths):
    """(arrays, meta) of the network whose real weights and thresholds are the means over
    ``paths`` (checkpoints of one network shape); the settings are those of the last one."""
    sum_weights = sum_thresholds = None
    for path in paths:
        arrays, meta = load_checkpoint(path)
        if "averaged_epochs" in meta:
            raise ConfigError(f"{path} is itself an average; average the run's epoch checkpoints")
        if sum_weights is None:
            layout = arrays["weight_start"], arrays["neuron_start"]
            first_epoch = meta["epoch"]
            sum_weights = np.zeros(arrays["weights"].size)
            sum_thresholds = np.zeros(arrays["thresholds"].size)
        elif not (np.array_equal(arrays["weight_start"], layout[0])
                  and np.array_equal(arrays["neuron_start"], layout[1])):
            raise ConfigError(f"{path} holds a network of another shape than {paths[0]}; average "
                              "checkpoints of one run")
        sum_weights += real_weights(arrays)
        sum_thresholds += arrays["thresholds"]
    n = len(paths)
    averaged = {
        "weights": (sum_weights / n).astype(arrays["weights"].dtype),
        "thresholds": (sum_thresholds / n).astype(arrays["thresholds"].dtype),
        "scale": np.ones_like(arrays["scale"]),  # folded into the weights
        "threshold_floors": arrays["threshold_floors"],
        "weight_start": arrays["weight_start"], "neuron_start": arrays["neuron_start"],
    }
    return averaged, {"config": meta["config"], "epoch": meta["epoch"], "position": 0,
                      "averaged_epochs": [first_epoch, meta["epoch"]]}


def real_weights(arrays):
    """A checkpoint's flat weights with each neuron's scale applied, in float64."""
    weights = arrays["weights"].astype(np.float64)
    starts, neurons = arrays["weight_start"], arrays["neuron_start"]
    for layer in range(len(neurons) - 1):
        n_out = neurons[layer + 1] - neurons[layer]
        block = weights[starts[layer]:starts[layer + 1]].reshape(-1, n_out)
        block *= arrays["scale"][neurons[layer]:neurons[layer + 1]]
    return weights


def write_average(run_dir, first, last, out=None):
    """Average the checkpoints of epochs ``first``-``last`` of ``run_dir`` into ``out``
    (default ``run_dir/average-FIRST-LAST.npz``); returns the path written."""
    run_dir = Path(run_dir)
    paths = [run_dir / f"epoch-{epoch:03d}.npz" for epoch in range(first, last + 1)]
    arrays, meta = average_checkpoints(paths)
    out = Path(out) if out else run_dir / f"average-{first:03d}-{last:03d}.npz"
    save_checkpoint(out, arrays, meta)
    return out
