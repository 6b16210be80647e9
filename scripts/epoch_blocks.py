"""Test accuracy [min, mean, max] over blocks of epochs, as Table 2 reports it (181-200).

    python scripts/epoch_blocks.py runs/sgd-800-eth20 docs/runs/adam-800-exact.metrics.jsonl \
        --blocks 61-90,91-120,181-200

Each run is a run directory (``spikeviz train --out``) or a copy of its ``metrics.jsonl``.
Epochs a run did not test (``--test-every``) are left out; the count says how many were averaged.
"""

import argparse
import json
from pathlib import Path


def read_metrics(run):
    """The epochs of a run directory, or of a copied ``<run>.metrics.jsonl`` file."""
    path = Path(run) if Path(run).is_file() else Path(run) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def block_summary(metrics, first, last):
    """(count, min, mean, max) of the test accuracies (%) of epochs first..last, or None."""
    tested = [100 * m["test_accuracy"] for m in metrics
              if first <= m["epoch"] <= last and "test_accuracy" in m]
    if not tested:
        return None
    return len(tested), min(tested), sum(tested) / len(tested), max(tested)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run directories or metrics.jsonl files")
    parser.add_argument("--blocks", default="181-200", help="epoch ranges, e.g. 61-90,181-200")
    args = parser.parse_args()
    blocks = [tuple(int(v) for v in block.split("-")) for block in args.blocks.split(",")]
    for run in args.runs:
        metrics = read_metrics(run)
        print(f"{run}: {len(metrics)} epochs")
        for first, last in blocks:
            summary = block_summary(metrics, first, last)
            if summary is None:
                print(f"  {first}-{last}: no tested epoch")
                continue
            count, low, mean, high = summary
            print(f"  {first}-{last}: [{low:.2f}, {mean:.2f}, {high:.2f}]% ({count} tested)")


if __name__ == "__main__":
    main()
