"""From the workers' results to ratios, Markdown tables and figures (no measurement here)."""

from pathlib import Path

from benchmarks.peers.workload import lateral_updates

# (result key, label): each row of the ratio table compares one workload of spikeviz and a peer
WORKLOADS = (
    ("train", "training, 50 ms"),
    ("forward", "forward pass alone, 50 ms"),
    ("infer", "inference, 1 s"),
)


def best(rows):
    """The row with the most samples/s (the best batch size, or the most cores)."""
    return max(rows, key=lambda row: row["samples_per_s"])


def batch_one(rows):
    """The batch-1 row on one core (spikeviz's inference also has an all-cores row)."""
    return next(row for row in rows if row["batch"] == 1 and row.get("cores", 1) == 1)


def ratio(a, b, digits=3):
    """a / b to ``digits`` significant digits (a ratio of 0.012 stays 0.012)."""
    return float(f"{a / b:.{digits}g}") if b else None


def ratios(results):
    """spikeviz samples/s divided by each peer's, per workload: batch 1 against batch 1, and
    spikeviz's best against the peer's best batch size."""
    ours = results["spikeviz"]
    table = {}
    for name, peer in results.items():
        if name == "spikeviz" or "error" in peer:
            continue
        table[name] = {}
        for key, _ in WORKLOADS:
            if key not in peer:
                continue
            table[name][key] = {
                "batch_1": ratio(batch_one(ours[key])["samples_per_s"],
                                 batch_one(peer[key])["samples_per_s"]),
                "best": ratio(best(ours[key])["samples_per_s"], best(peer[key])["samples_per_s"]),
                "peer_best_batch": best(peer[key])["batch"],
            }
    return table


def markdown_table(headers, rows):
    lines = ["| " + " | ".join(headers) + " |", "|" + " --- |" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def number(value, digits=3):
    """A figure for a table: 3 significant digits, thousands separated, G/M for large ones."""
    if value is None:
        return "-"
    for scale, suffix in ((1e9, " G"), (1e6, " M")):
        if abs(value) >= scale:
            return f"{value / scale:.{digits}g}{suffix}"
    return f"{float(f'{value:.{digits}g}'):,g}"


def speed_table(results):
    rows = []
    for name, peer in results.items():
        if "error" in peer:
            rows.append([name, "not run: " + peer["error"], "", "", "", "", ""])
            continue
        for key, label in WORKLOADS:
            for row in peer.get(key, []):
                cores = row.get("cores", peer.get("threads", 1))
                rows.append([name, label, f"{row['batch']} / {cores}",
                             number(row["samples_per_s"]), number(row["synaptic_events_per_s"]),
                             number(row["hidden_spikes_per_sample"]), ""])
        rows[-1][-1] = (f"{number(peer['peak_rss_mb'])} MB, start-up "
                        f"{peer['startup']['to_first_sample_s']} s")
    return markdown_table(["tool", "workload", "batch / cores", "samples/s",
                           "synaptic events/s", "hidden spikes per sample",
                           "peak memory, start-up"], rows)


def ratio_table(results):
    rows = []
    for name, per_workload in ratios(results).items():
        for key, label in WORKLOADS:
            if key in per_workload:
                r = per_workload[key]
                rows.append([name, label, number(r["batch_1"]),
                             f"{number(r['best'])} (peer batch {r['peer_best_batch']})"])
    return markdown_table(["peer", "workload", "spikeviz / peer, batch 1",
                           "spikeviz best / peer best"], rows)


def scaling_tables(scaling):
    """Markdown tables of the cost growth (a point that failed shows its error)."""
    def cells(row):
        if "error" in row:
            return ["not measured: " + row["error"], "", ""]
        return [number(row["samples_per_s"]), number(row["synaptic_events_per_s"]),
                number(row["hidden_spikes_per_sample"])]

    hidden = markdown_table(["hidden neurons", "samples/s", "synaptic events/s",
                             "hidden spikes per sample"],
                            [[row["hidden"][0], *cells(row)] for row in scaling["hidden"]])
    rate = markdown_table(["input events/s", "samples/s", "synaptic events/s",
                           "hidden spikes per sample"],
                          [[number(row["rate_hz"]), *cells(row)] for row in scaling["rate_hz"]])
    return hidden, rate


def figure_of_merit(results, machine, workload):
    """spikeviz's synaptic updates per second on one core against what the machine allows.

    Updates: the feed-forward events of the tables plus the hidden layer's WTA updates (each
    hidden spike changes the other 799 potentials).  Bounds: the row-gather loop of
    ``machine.py`` (random 3.2 kB weight rows from L3 added into one vector, nothing else),
    every update streaming its 4-byte weight from DRAM, and about 4 vector operations per
    update (decay, weighted add, clip, threshold compare) at the float32 matrix-product peak.
    """
    row = batch_one(results["spikeviz"]["infer"])
    lateral = row["samples_per_s"] * lateral_updates(row["hidden_spikes_per_sample"],
                                                     workload.sizes)
    updates = row["synaptic_events_per_s"] + lateral
    bounds = {"row_gather": machine["row_gather_updates_per_s"],
              "bandwidth": machine["memory_bandwidth_gb_s"] * 1e9 / 4,
              "vector": machine["float32_gflops_one_core"] * 1e9 / 4}
    merit = {"synaptic_updates_per_s_one_core": round(updates),
             "of_which_wta_updates_per_s": round(lateral)}
    for name, bound in bounds.items():
        merit[f"{name}_bound_updates_per_s"] = round(bound)
        merit[f"fraction_of_{name}_bound"] = round(updates / bound, 3)
    merit["weight_matrix_mb"] = round(workload.sizes[0] * workload.sizes[1] * 4 / 2**20, 2)
    return merit


def plot(report, directory):
    """docs/figures/peers-*.png: throughput per tool and workload; spikeviz's cost growth."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    results = {k: v for k, v in report["results"].items() if "error" not in v}
    figure, axes = plt.subplots(figsize=(8, 4))
    width = 0.8 / max(len(results), 1)
    for n, (name, peer) in enumerate(results.items()):
        values = [best(peer[key])["samples_per_s"] if key in peer else 0 for key, _ in WORKLOADS]
        axes.bar([i + n * width for i in range(len(WORKLOADS))], values, width, label=name)
    axes.set_xticks([i + width * (len(results) - 1) / 2 for i in range(len(WORKLOADS))],
                    [label for _, label in WORKLOADS])
    axes.set_yscale("log")
    axes.set_ylabel("samples/s (best batch size / cores)")
    axes.set_title(f"784-800-10, PI-MNIST at 5,000 events/s ({report['date']})")
    axes.legend()
    figure.tight_layout()
    figure.savefig(directory / "peers-throughput.png", dpi=110)
    plt.close(figure)
    paths = [directory / "peers-throughput.png"]
    if "scaling" in report:
        figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6))
        for axes, key, label in ((left, "hidden", "hidden neurons"),
                                 (right, "rate_hz", "input events/s")):
            rows = [row for row in report["scaling"][key] if "error" not in row]
            x = [row[key][0] if key == "hidden" else row[key] for row in rows]
            axes.loglog(x, [row["samples_per_s"] for row in rows], "o-")
            axes.set_xlabel(label)
            axes.set_ylabel("training samples/s (spikeviz, 1 core)")
            axes.grid(True, which="both", alpha=0.3)
        figure.suptitle("spikeviz training cost growth, 50 ms presentations")
        figure.tight_layout()
        figure.savefig(directory / "peers-scaling.png", dpi=110)
        plt.close(figure)
        paths.append(directory / "peers-scaling.png")
    return paths


def accuracy_table(accuracy):
    rows = []
    for name, run in accuracy.items():
        if "error" in run:
            rows.append([name, "not run: " + run["error"], "", "", "", ""])
            continue
        rows.append([name, f"{run['train_samples']:,} / batch {run['batch']}",
                     f"{run['train_s']:,} s", f"{run['test_accuracy']:.2%}",
                     f"{run['test_samples']:,} x {run['test_presentation_ms']:g} ms",
                     f"{run['test_s']:,} s"])
    return markdown_table(["tool", "training samples / batch", "training wall time",
                           "test accuracy", "test samples", "test wall time"], rows)


def check_table(results):
    """Each torch peer's neuron against the reference leaky integrator (``torch_common``)."""
    rows = [[name, peer["neuron_check"]["steps"], peer["neuron_check"]["spikes"],
             f"{peer['neuron_check']['max_potential_error']:.1e}",
             "yes" if peer["neuron_check"]["same_spikes"] else "**no**",
             "ok" if peer["neuron_check"]["ok"] else "**FAILED**"]
            for name, peer in results.items() if "neuron_check" in peer]
    return markdown_table(["peer", "steps", "spikes", "largest error in V", "same spikes",
                           "check"], rows)


def all_tables(report):
    """Every table of a report, in Markdown, as docs/benchmarks.md shows them."""
    parts = [ratio_table(report["results"]), speed_table(report["results"]),
             check_table(report["results"])]
    if "scaling" in report and "error" not in report["scaling"]:
        parts += scaling_tables(report["scaling"])
    if "accuracy" in report:
        parts.append(accuracy_table(report["accuracy"]))
    if "figure_of_merit" in report:
        merit = report["figure_of_merit"]
        parts.append(markdown_table(["figure", "value"], [
            [key.replace("_", " "), number(value)] for key, value in merit.items()]))
    return "\n\n".join(parts)
