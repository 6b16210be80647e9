"""Compare the sensor emulator with the real N-MNIST recordings of the very same digits.

Usage::

    .venv/bin/python scripts/calibrate_emulator.py [--nmnist ../shared/data/nmnist]
        [--mnist ../shared/data/mnist] [--out docs/figures/emulator-calibration.png]

Recording id k of N-MNIST's Train/ is MNIST training image k (1-based), so each real recording
is paired with the emulation of its own digit (``default_rng(k)``). Prints a Markdown table
(events per recording, ON fraction, duration, the event centroid's path, spatial extent, the
event rate over time) and writes a figure: event rate over time, events per recording, and one
digit's real and emulated recording as ON/OFF frames of its three saccades. Needs matplotlib.
"""

import argparse
import time
from pathlib import Path

import numpy as np

from spikeviz.data import load_mnist, load_nmnist
from spikeviz.data.emulator import DEFAULT_PARAMS, emulate_nmnist, emulate_recording

ROOT = Path(__file__).resolve().parents[1]
BIN_MS = 10.0
#: Time windows (ms) of the three saccades and the frames shown in the figure.
SACCADE_WINDOWS_MS = ((0, 100), (100, 200), (200, 310))


def statistics(recordings, images):
    """Summary statistics of a list of NMNIST_DTYPE recordings of ``images`` (n, 28, 28)."""
    n_events = np.array([r.size for r in recordings])
    on_fraction = np.array([r["p"].mean() for r in recordings])
    durations_ms = np.array([(r["t"][-1] - r["t"][0]) / 1000.0 for r in recordings])
    edges_ms = np.arange(0.0, 320.0 + BIN_MS, BIN_MS)
    all_t_ms = np.concatenate([r["t"] for r in recordings]) / 1000.0
    rate = np.histogram(all_t_ms, edges_ms)[0] / len(recordings) / (BIN_MS / 1000.0)  # ev/s
    # The event centroid minus the digit's own intensity centroid, per time bin (pixels).
    weights = images.astype(np.float64)
    rows, cols = np.mgrid[0:images.shape[1], 0:images.shape[2]]
    digit_x = (weights * cols).sum((1, 2)) / weights.sum((1, 2))
    digit_y = (weights * rows).sum((1, 2)) / weights.sum((1, 2))
    n_bins = edges_ms.size - 1
    sums = np.zeros((3, n_bins))
    for r, cx, cy in zip(recordings, digit_x, digit_y):
        k = np.minimum(r["t"] // int(BIN_MS * 1000), n_bins - 1)
        np.add.at(sums[0], k, r["x"] - cx)
        np.add.at(sums[1], k, r["y"] - cy)
        np.add.at(sums[2], k, 1)
    centroid = sums[:2] / np.maximum(sums[2], 1)
    all_x = np.concatenate([r["x"] for r in recordings])
    all_y = np.concatenate([r["y"] for r in recordings])
    return dict(n_events=n_events, on_fraction=on_fraction, durations_ms=durations_ms,
                edges_ms=edges_ms, rate=rate, centroid=centroid, active=sums[2],
                x_range=np.percentile(all_x, [1, 99]), y_range=np.percentile(all_y, [1, 99]))


def table(real, emulated):
    """Markdown rows comparing the two."""
    def spread(values, fmt):
        return (f"{fmt.format(np.median(values))} ({fmt.format(values.min())} .. "
                f"{fmt.format(values.max())})")

    ratio = emulated["n_events"] / real["n_events"]
    busy = real["rate"] > 0.3 * real["rate"].max()  # bins inside the bursts
    path_error = np.hypot(*(emulated["centroid"] - real["centroid"]))[busy]
    rate_error = np.abs(emulated["rate"] - real["rate"]).sum() / real["rate"].sum()
    rows = [
        ("events per recording, median (min .. max)", spread(real["n_events"], "{:,.0f}"),
         spread(emulated["n_events"], "{:,.0f}")),
        ("events per recording, same digit, emulated / real", "1",
         f"median {np.median(ratio):.2f}, quartiles {np.percentile(ratio, 25):.2f} .. "
         f"{np.percentile(ratio, 75):.2f}; correlation "
         f"{np.corrcoef(real['n_events'], emulated['n_events'])[0, 1]:.2f}"),
        ("ON fraction, mean", f"{real['on_fraction'].mean():.3f}",
         f"{emulated['on_fraction'].mean():.3f}"),
        ("duration ms (first to last event), median (min .. max)",
         spread(real["durations_ms"], "{:.0f}"), spread(emulated["durations_ms"], "{:.0f}")),
        ("x, y of 98% of events (1st .. 99th percentile)",
         f"x {real['x_range'][0]:.0f} .. {real['x_range'][1]:.0f}, "
         f"y {real['y_range'][0]:.0f} .. {real['y_range'][1]:.0f}",
         f"x {emulated['x_range'][0]:.0f} .. {emulated['x_range'][1]:.0f}, "
         f"y {emulated['y_range'][0]:.0f} .. {emulated['y_range'][1]:.0f}"),
        ("peak event rate of the 3 bursts, events/s per recording",
         " / ".join(f"{real['rate'][lo // 10:hi // 10].max():,.0f}"
                    for lo, hi in SACCADE_WINDOWS_MS),
         " / ".join(f"{emulated['rate'][lo // 10:hi // 10].max():,.0f}"
                    for lo, hi in SACCADE_WINDOWS_MS)),
        ("rate between bursts (80-110, 190-220 ms), events/s",
         f"{real['rate'][8:11].mean():,.0f} / {real['rate'][19:22].mean():,.0f}",
         f"{emulated['rate'][8:11].mean():,.0f} / {emulated['rate'][19:22].mean():,.0f}"),
        ("rate over time: sum abs difference / total (10 ms bins)", "0",
         f"{rate_error:.2f}"),
        ("event centroid path (minus digit centroid), mean distance in the bursts", "0",
         f"{path_error.mean():.2f} px (max {path_error.max():.2f})"),
    ]
    lines = ["| statistic | real | emulated |", "| --- | --- | --- |"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines)


def frames(events, window_ms):
    """ON minus OFF counts per pixel in a time window, shape (34, 34)."""
    t_ms = events["t"] / 1000.0
    chosen = events[(t_ms >= window_ms[0]) & (t_ms < window_ms[1])]
    image = np.zeros((34, 34))
    np.add.at(image, (chosen["y"], chosen["x"]), 2 * chosen["p"] - 1.0)
    return image


def figure(real, emulated, example_real, example_emulated, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(13, 7.5), layout="constrained")
    grid = fig.add_gridspec(3, 6)
    ax = fig.add_subplot(grid[0, :3])
    centers = (real["edges_ms"][:-1] + real["edges_ms"][1:]) / 2
    ax.plot(centers, real["rate"], "k-", label="real (1,000 recordings)")
    ax.plot(centers, emulated["rate"], "C1--", label="emulated (same digits)")
    ax.set(xlabel="time (ms)", ylabel="events/s per recording", title="event rate over time")
    ax.legend()
    ax = fig.add_subplot(grid[0, 3:])
    bins = np.linspace(0, max(real["n_events"].max(), emulated["n_events"].max()) + 1, 40)
    ax.hist(real["n_events"], bins, histtype="step", color="k", label="real")
    ax.hist(emulated["n_events"], bins, histtype="step", color="C1", linestyle="--",
            label="emulated")
    ax.set(xlabel="events per recording", ylabel="recordings", title="events per recording")
    ax.legend()
    for row, (events, name) in enumerate(((example_real, "real"),
                                          (example_emulated, "emulated")), start=1):
        for k, window_ms in enumerate(SACCADE_WINDOWS_MS):
            ax = fig.add_subplot(grid[row, 2 * k:2 * k + 2])
            image = frames(events, window_ms)
            limit = max(1.0, np.abs(image).max())
            ax.imshow(image, cmap="RdBu_r", vmin=-limit, vmax=limit)
            ax.set_title(f"{name}, saccade {k + 1} ({window_ms[0]}-{window_ms[1]} ms): "
                         f"ON red, OFF blue", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nmnist", default=ROOT / ".." / "shared" / "data" / "nmnist")
    parser.add_argument("--mnist", default=ROOT / ".." / "shared" / "data" / "mnist")
    parser.add_argument("--out", default=ROOT / "docs" / "figures" / "emulator-calibration.png")
    parser.add_argument("--example-id", type=int, default=1, help="recording shown as frames")
    args = parser.parse_args()

    data = load_nmnist(args.nmnist, validation_fraction=0.5)
    by_id = {int(i): data.train_events[k] for k, i in enumerate(data.train_ids)}
    by_id.update({int(i): data.test_events[k] for k, i in enumerate(data.test_ids)})
    ids = np.array(sorted(by_id))
    images = load_mnist(args.mnist).train_images[ids - 1]
    real_recordings = [by_id[i] for i in ids]
    emulate_recording(images[0], np.random.default_rng(0))  # compile (or load) the kernel
    start = time.perf_counter()
    emulated_recordings = [emulate_recording(image, np.random.default_rng(int(i)))
                           for i, image in zip(ids, images)]
    elapsed_s = time.perf_counter() - start
    real, emulated = statistics(real_recordings, images), statistics(emulated_recordings, images)
    print(f"{len(ids):,} real recordings from {args.nmnist}; the same digits emulated with "
          f"DEFAULT_PARAMS in {elapsed_s:.1f} s (one thread)\n")
    print(table(real, emulated))
    bundled = load_mnist(bundled=True)
    start = time.perf_counter()
    emulate_nmnist(bundled)
    print(f"\nemulate_nmnist(load_mnist(bundled=True)): 5,000 + 1,000 recordings in "
          f"{time.perf_counter() - start:.1f} s")
    print(f"\nparameters: {DEFAULT_PARAMS}")
    example = int(np.flatnonzero(ids == args.example_id)[0])
    figure(real, emulated, real_recordings[example], emulated_recordings[example], args.out)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
