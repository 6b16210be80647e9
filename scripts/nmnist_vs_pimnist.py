"""The same digits as N-MNIST recordings and as PI-MNIST images, same network, same protocol.

The 1,000 shared N-MNIST recordings are MNIST training images 1..1000 seen by the event camera.
This trains 2312-500-10 on the recordings (300-event windows, tau_mp 200 ms) and 784-500-10 on the
very same images as Poisson streams (50 ms, tau_mp 20 ms), on the same train / validation split,
and prints the test accuracy of each after every epoch.

    python scripts/nmnist_vs_pimnist.py --epochs 30 [--nmnist ../shared/data/nmnist]
"""

import argparse
import dataclasses
from pathlib import Path

import numpy as np

from spikeviz.config import NMNIST_DEFAULTS, Config
from spikeviz.data import load_mnist, load_nmnist
from spikeviz.train.trainer import Trainer

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def images_of(mnist, nmnist):
    """An MNIST object holding the images behind the recordings, split the same way."""
    # Recording ids are 1-based indices into the MNIST training set.
    return dataclasses.replace(
        mnist,
        train_images=mnist.train_images[nmnist.train_ids - 1],
        train_labels=mnist.train_labels[nmnist.train_ids - 1],
        test_images=mnist.train_images[nmnist.test_ids - 1],
        test_labels=mnist.train_labels[nmnist.test_ids - 1],
        origin=f"MNIST training images behind {nmnist.origin}",
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--nmnist", default=str(SHARED / "nmnist"))
    parser.add_argument("--mnist", default=str(SHARED / "mnist"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    recordings = load_nmnist(args.nmnist, seed=args.seed)
    images = images_of(load_mnist(args.mnist, download=False), recordings)
    assert np.array_equal(images.train_labels, recordings.train_labels)
    runs = {
        "N-MNIST 2312-500-10": Trainer(Config(dataset="nmnist", seed=args.seed, **NMNIST_DEFAULTS),
                                       recordings),
        "PI-MNIST 784-500-10": Trainer(Config(hidden=[500], seed=args.seed), images),
    }
    print(f"{len(recordings.train_labels)} training, {len(recordings.test_labels)} test digits")
    for epoch in range(1, args.epochs + 1):
        line = [f"epoch {epoch:3d}"]
        for name, trainer in runs.items():
            trainer.train_epoch()
            metrics = trainer.finish_epoch()
            line.append(f"{name}: {100 * metrics['test_accuracy']:.1f}%")
        print("  ".join(line), flush=True)


if __name__ == "__main__":
    main()
