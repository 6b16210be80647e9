"""The ``spikeviz`` command line.

    spikeviz data [--data-dir DIR] [--bundled] [--no-download]   where the data comes from
    spikeviz infer [--samples N] [--duration-ms MS] ...          forward pass of a fresh network
"""

import argparse
import logging
import sys
import time

import numpy as np
from tqdm import tqdm

from spikeviz import __version__
from spikeviz.errors import SpikevizError


def _add_data_options(parser):
    parser.add_argument("--data-dir", help="directory with the four MNIST IDX files "
                        "(default: $SPIKEVIZ_DATA, the user cache, a download, the bundled subset)")
    parser.add_argument("--bundled", action="store_true",
                        help="use the small subset shipped with spikeviz")
    parser.add_argument("--no-download", action="store_true", help="never go online")


def _load(args):
    from spikeviz.data import load_mnist

    return load_mnist(args.data_dir, download=not args.no_download, bundled=args.bundled)


def cmd_data(args):
    data = _load(args)
    print(f"origin: {data.origin}")
    for split in ("train", "test"):
        images, labels = getattr(data, f"{split}_images"), getattr(data, f"{split}_labels")
        per_class = np.bincount(labels, minlength=10).tolist()
        print(f"{split}: {len(images):,} images {images.shape[1]}x{images.shape[2]}, per class {per_class}")


def cmd_infer(args):
    from spikeviz.encode import PoissonEncoder
    from spikeviz.engine import init_network, make_dynamics
    from spikeviz.engine import check_kappas
    from spikeviz.engine.batch import infer_counts

    # Every setting is checked before the data is read.
    hidden = [int(n) for n in args.hidden.split(",")]
    kappas = check_kappas(
        [args.kappa_hidden] + [0.0] * (len(hidden) - 1) + [args.kappa_output], len(hidden) + 1
    )
    dynamics = make_dynamics(tau_mp_ms=args.tau_mp_ms, t_ref_ms=args.t_ref_ms)
    data = _load(args)
    images = data.test_images[: args.samples]
    network = init_network((images[0].size, *hidden, 10), np.random.default_rng(args.seed),
                           alpha=args.alpha)
    encoder = PoissonEncoder(images[0].size, rate_hz=args.rate_hz)
    start = time.perf_counter()
    with tqdm(total=len(images), unit="sample", desc="forward") as bar:
        counts = infer_counts(network, images, encoder, duration_ms=args.duration_ms,
                              kappas=kappas, dynamics=dynamics, seed=args.seed,
                              workers=args.workers, on_chunk=bar.update)
    seconds = time.perf_counter() - start
    print(f"{len(images)} samples in {seconds:.2f} s: {len(images) / seconds:.0f} samples/s; "
          f"{counts.sum(1).mean():.1f} output spikes per sample (untrained network)")


def build_parser():
    parser = argparse.ArgumentParser(
        prog="spikeviz", description="Train spiking neural networks on spikes, and watch them learn.")
    parser.add_argument("--version", action="version", version=f"spikeviz {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    data = commands.add_parser("data", help="show where the MNIST data comes from")
    _add_data_options(data)
    data.set_defaults(run=cmd_data)

    infer = commands.add_parser("infer", help="forward pass of a freshly initialized network "
                                "over the test images, on every core")
    _add_data_options(infer)
    infer.add_argument("--samples", type=int, default=1000)
    infer.add_argument("--hidden", default="800", help="hidden sizes, e.g. 800 or 500,500")
    infer.add_argument("--alpha", type=float, default=3.0, help="threshold scale of (9)")
    infer.add_argument("--kappa-hidden", type=float, default=-0.4)
    infer.add_argument("--kappa-output", type=float, default=-1.0)
    infer.add_argument("--tau-mp-ms", type=float, default=20.0)
    infer.add_argument("--t-ref-ms", type=float, default=1.0)
    infer.add_argument("--rate-hz", type=float, default=5000.0)
    infer.add_argument("--duration-ms", type=float, default=1000.0)
    infer.add_argument("--workers", type=int, default=None, help="threads (default: all cores)")
    infer.add_argument("--seed", type=int, default=0)
    infer.set_defaults(run=cmd_infer)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    try:
        args.run(args)
    except SpikevizError as error:
        print(f"spikeviz {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
