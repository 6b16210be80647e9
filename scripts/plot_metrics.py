"""Learning curves of training runs, from their metrics.jsonl, as one PNG.

    python scripts/plot_metrics.py runs/adam-800 runs/sgd-800 --out docs/figures/curves.png
    python scripts/plot_metrics.py docs/runs/adam-800.metrics.jsonl --out curves.png  # copies

Needs matplotlib (``pip install -e .[docs]``).
"""

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the file backend)

from epoch_blocks import read_metrics  # noqa: E402  (scripts/ is on the path when a script runs)


def run_name(run):
    return Path(run).name.removesuffix(".metrics.jsonl")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+",
                        help="run directories (spikeviz train --out) or their metrics.jsonl copies")
    parser.add_argument("--out", required=True, help="PNG file to write")
    parser.add_argument("--band", default="98.56,98.71",
                        help="the paper's accuracy band to shade, in percent ('' for none)")
    args = parser.parse_args()

    fig, (test_ax, train_ax) = plt.subplots(1, 2, figsize=(11, 4))
    for run in args.runs:
        metrics = read_metrics(run)
        epochs = [m["epoch"] for m in metrics]
        label = run_name(run)
        tested = [m for m in metrics if "test_accuracy" in m]  # runs with --test-every skip some
        test_ax.plot([m["epoch"] for m in tested], [100 * m["test_accuracy"] for m in tested],
                     marker=".", label=label)
        train_ax.plot(epochs, [100 * m["train_accuracy"] for m in metrics], marker=".", label=label)
    if args.band:
        low, high = (float(v) for v in args.band.split(","))
        test_ax.axhspan(low, high, color="0.85", label="paper, Table 2")
    test_ax.set(xlabel="epoch", ylabel="test accuracy (%), 1 s presentations",
                title="Test accuracy (10,000 digits)")
    train_ax.set(xlabel="epoch", ylabel="running train accuracy (%), 50 ms presentations",
                 title="Training accuracy")
    for ax in (test_ax, train_ax):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
