"""Build the MNIST subset bundled in the package (spikeviz/data/bundled/) from the full MNIST.

Balanced and real: the first 500 training images of each class (5,000) and the first 100 test
images of each class (1,000), shuffled with a fixed seed so classes are interleaved, written
as the four standard gzipped IDX files (level 9, time stamp 0: the output is reproducible).

    python scripts/make_bundled_subset.py [--source DIR] [--out DIR]
"""

import argparse
from pathlib import Path

import numpy as np

from spikeviz.data import read_idx, write_idx
from spikeviz.data.mnist import MNIST_FILES

REPO_ROOT = Path(__file__).resolve().parents[1]
PER_CLASS = {"train": 500, "test": 100}
MAX_TOTAL_BYTES = 2_000_000
SEED = 0


def balanced_subset(images, labels, per_class, rng):
    """Take the first ``per_class`` examples of each class 0..9, in shuffled order.

    Parameters
    ----------
    images : numpy.ndarray
        Shape ``(n, height, width)``, uint8.
    labels : numpy.ndarray
        Shape ``(n,)``, uint8 classes 0..9.
    per_class : int
        Examples kept per class.
    rng : numpy.random.Generator
        Shuffles the kept examples.

    Returns
    -------
    images, labels : numpy.ndarray
        Shapes ``(10 * per_class, height, width)`` and ``(10 * per_class,)``.
    """
    chosen = [np.flatnonzero(labels == digit)[:per_class] for digit in range(10)]
    if any(len(indices) < per_class for indices in chosen):
        raise SystemExit(f"the source has fewer than {per_class} examples of some class")
    order = rng.permutation(np.concatenate(chosen))
    return images[order], labels[order]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=REPO_ROOT / ".." / "shared/data/mnist",
                        help="directory with the four full MNIST files")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "spikeviz/data/bundled",
                        help="output directory (created if missing)")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(SEED)
    args.out.mkdir(parents=True, exist_ok=True)
    total_bytes = 0
    for split, per_class in PER_CLASS.items():
        images_file, labels_file = MNIST_FILES[f"{split}_images"], MNIST_FILES[f"{split}_labels"]
        images, labels = balanced_subset(read_idx(args.source / images_file),
                                         read_idx(args.source / labels_file), per_class, rng)
        for fname, array in ((images_file, images), (labels_file, labels)):
            write_idx(args.out / fname, array, compresslevel=9)
            size = (args.out / fname).stat().st_size
            total_bytes += size
            print(f"{args.out / fname}: {array.shape} {array.dtype}, {size:,} bytes")
    print(f"total: {total_bytes:,} bytes (limit {MAX_TOTAL_BYTES:,})")
    if total_bytes > MAX_TOTAL_BYTES:
        raise SystemExit(f"the bundled subset is {total_bytes:,} bytes, over the limit")


if __name__ == "__main__":
    main()
