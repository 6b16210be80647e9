"""spikeviz side by side with snnTorch, SpikingJelly, Norse and Brian2 (issue 6), in one run.

    python -m benchmarks.peers [--quick] [--peers spikeviz,snntorch,...] [--json FILE]

Every tool runs 784-800-10 on the same PI-MNIST Poisson events (5,000 events/s, 50 ms training
and 1 s test presentations, tau_mp 20 ms, T_ref 1 ms), drawn once by spikeviz's encoder and
handed to each tool's own process (peak memory and start-up are then each tool's own).  The
peers are time-stepped at dt = 1 ms and get the events as counts per 1 ms bin.  Then: spikeviz's
training cost against the hidden size and the input rate, the machine's memory bandwidth and
vector peak, and one epoch of MNIST by spikeviz and by snnTorch for accuracy and wall time.
Each torch peer's neuron is first checked against the reference leaky integrator (a constant
current, ``workload.reference_neuron``); the result is recorded as ``neuron_check``.

Peers missing from the environment (``pip install -e ".[bench]"``, see docs/benchmarks.md) are
reported as not run.  Brian2 2.9.0 needs NumPy < 2.4: ``--brian2-python`` names an interpreter
that has it.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.peers import report as tables
from benchmarks.peers.workload import WORKLOAD, pack_events

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA = ROOT / ".." / "shared" / "data" / "mnist"
PEERS = ("spikeviz", "snntorch", "spikingjelly", "norse", "brian2")
FULL = {"seconds": 6.0, "train_pool": 2000, "infer_pool": 200, "accuracy_train": 60000,
        "accuracy_test": 1000, "timeout_s": 900}
QUICK = {"seconds": 1.0, "train_pool": 64, "infer_pool": 8, "accuracy_train": 500,
         "accuracy_test": 50, "timeout_s": 900}


def make_workload_file(path, data, sizes, seed=0):
    """Images of the pools and their events, drawn once for every tool (``worker.load_pool``)."""
    from spikeviz.encode import PoissonEncoder

    encoder = PoissonEncoder(WORKLOAD.sizes[0], rate_hz=WORKLOAD.rate_hz)
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, images, labels, duration in (
            ("train", data.train_images, data.train_labels, WORKLOAD.train_ms),
            ("infer", data.test_images, data.test_labels, WORKLOAD.infer_ms)):
        n = sizes[f"{split}_pool"]
        events = [tuple(encoder.encode(image, duration, rng)) for image in images[:n]]
        arrays[f"{split}_times"], arrays[f"{split}_channels"], arrays[f"{split}_offsets"] = (
            pack_events(events))
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = images[:n], labels[:n]
    np.savez(path, **arrays)


def run_worker(python, task, peer, workload_path, options, env=None, timeout_s=900):
    """Run one worker; its JSON result, or ``{"error": ...}`` saying why it did not run."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        command = [python, "-m", "benchmarks.peers.worker", task, peer, str(workload_path),
                   out.name, *options]
        environment = dict(os.environ, **(env or {}), BENCH_PROCESS_START=repr(time.time()))
        log(f"{task} {peer}")
        load_before = os.getloadavg()[0]
        try:
            done = subprocess.run(command, cwd=ROOT, env=environment, capture_output=True,
                                  text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return {"error": f"did not finish within {timeout_s} s"}
        if done.returncode != 0:
            return {"error": why_failed(done.stderr)}
        result = json.loads(Path(out.name).read_text())
        # the machine is shared: how busy it was (1-minute load average) before and after
        result["load_average"] = [round(load_before, 1), round(os.getloadavg()[0], 1)]
        return result


def why_failed(stderr):
    """The last line of a traceback (e.g. ``ModuleNotFoundError: No module named 'torch'``)."""
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "failed without a message"


def log(text):
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 1 s windows, tiny pools, 500-sample accuracy epoch")
    parser.add_argument("--peers", default=",".join(PEERS),
                        help=f"comma-separated, from {','.join(PEERS)} (spikeviz always runs)")
    parser.add_argument("--seconds", type=float, help="length of each timed window")
    parser.add_argument("--cold", action="store_true",
                        help="spikeviz and Brian2 start with empty compilation caches")
    parser.add_argument("--no-scaling", action="store_true", help="skip the cost growth")
    parser.add_argument("--no-accuracy", action="store_true", help="skip the MNIST epochs")
    parser.add_argument("--accuracy-train-samples", type=int)
    parser.add_argument("--accuracy-test-samples", type=int)
    parser.add_argument("--torch-threads", type=int, default=1,
                        help="intra-op threads of the torch peers (see docs/benchmarks.md)")
    parser.add_argument("--brian2-python", default=sys.executable,
                        help="interpreter with Brian2 (and NumPy < 2.4) for the Brian2 worker")
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA),
                        help="MNIST (default ../shared/data/mnist); the accuracy runs need it")
    parser.add_argument("--json", help="write the results to this file")
    parser.add_argument("--figures", help="write peers-*.png into this directory")
    return parser.parse_args(argv)


def sizes_for(args):
    sizes = dict(QUICK if args.quick else FULL)
    for key, value in (("seconds", args.seconds), ("accuracy_train", args.accuracy_train_samples),
                       ("accuracy_test", args.accuracy_test_samples)):
        if value is not None:
            sizes[key] = value
    return sizes


def load_data(data_dir):
    from spikeviz.data import load_mnist

    full = (Path(data_dir) / "train-images-idx3-ubyte.gz").exists()
    return (load_mnist(data_dir, download=False) if full else load_mnist(bundled=True)), full


def measure(args, workdir):
    sizes = sizes_for(args)
    peers = ["spikeviz"] + [p for p in args.peers.split(",") if p and p != "spikeviz"]
    unknown = set(peers) - set(PEERS)
    if unknown:
        raise SystemExit(f"--peers: unknown {sorted(unknown)}; choose from {','.join(PEERS)}")
    data, full_mnist = load_data(args.data_dir)
    workload_path = workdir / "workload.npz"
    make_workload_file(workload_path, data, sizes)
    timeout = sizes["timeout_s"]
    report = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "machine": machine_line(), "load_average_at_start": os.getloadavg()[0],
              "workload": WORKLOAD._asdict(), "quick": args.quick, "sizes": sizes,
              "data": "MNIST" if full_mnist else "bundled digits",
              "torch_threads": args.torch_threads}
    report["machine_limits"] = run_worker(
        sys.executable, "machine", "spikeviz", workload_path, [],
        env={"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}, timeout_s=timeout)
    report["results"] = results = speed_runs(args, peers, workload_path, sizes, workdir)
    report["ratios"] = tables.ratios(results)
    if not args.no_scaling:
        report["scaling"] = run_worker(sys.executable, "scaling", "spikeviz", workload_path,
                                       ["--seconds", str(max(sizes["seconds"] / 3, 0.5))],
                                       timeout_s=timeout)
    if "error" not in report["machine_limits"] and "error" not in results["spikeviz"]:
        report["figure_of_merit"] = tables.figure_of_merit(results, report["machine_limits"],
                                                           WORKLOAD)
    if not args.no_accuracy:
        report["accuracy"] = accuracy_runs(args, peers, results, workload_path, sizes)
    report["load_average_at_end"] = os.getloadavg()[0]
    return report


def speed_runs(args, peers, workload_path, sizes, workdir):
    """Every tool on the workload, one after the other, each in its own process."""
    results = {}
    for peer in peers:
        python = args.brian2_python if peer == "brian2" else sys.executable
        # --cold: spikeviz and Brian2 compile into empty caches (start-up includes compiling)
        cold = args.cold and peer in ("spikeviz", "brian2")
        env = ({"NUMBA_CACHE_DIR": str(workdir / "numba-cache")}
               if cold and peer == "spikeviz" else None)
        options = ["--seconds", str(sizes["seconds"]), "--torch-threads", str(args.torch_threads)]
        results[peer] = run_worker(python, "speed", peer, workload_path,
                                   options + (["--cold"] if cold else []), env=env,
                                   timeout_s=sizes["timeout_s"])
        results[peer].setdefault("limits", limits_of(peer))
        log(f"{peer}: {summary_line(results[peer])}")
        if not results[peer].get("neuron_check", {}).get("ok", True):
            log(f"WARNING: {peer}'s neuron does not match the reference: "
                f"{results[peer]['neuron_check']}")
    return results


def accuracy_runs(args, peers, results, workload_path, sizes):
    """spikeviz and snnTorch (at its best training batch size), one epoch each."""
    options = ["--data-dir", args.data_dir, "--train-samples", str(sizes["accuracy_train"]),
               "--test-samples", str(sizes["accuracy_test"])]
    runs = {"spikeviz": run_worker(sys.executable, "accuracy", "spikeviz", workload_path, options,
                                   timeout_s=sizes["timeout_s"] * 2)}
    if "snntorch" in peers and "error" not in results["snntorch"]:
        batch = tables.best(results["snntorch"]["train"])["batch"]
        runs["snntorch"] = run_worker(sys.executable, "accuracy", "snntorch", workload_path,
                                      options + ["--batch", str(batch)],
                                      env={"OMP_NUM_THREADS": str(args.torch_threads)},
                                      timeout_s=sizes["timeout_s"] * 2)
    for name, run in runs.items():
        log(f"accuracy {name}: {json.dumps(run)}")
    return runs


def limits_of(peer):
    """What a peer cannot model and how it was handled (from its module, without importing
    its library)."""
    if peer == "spikeviz":
        return {}
    from importlib import import_module

    from benchmarks.peers.worker import MODULES

    return import_module(f"benchmarks.peers.{MODULES[peer]}").LIMITS


def summary_line(result):
    if "error" in result:
        return "not run: " + result["error"]
    return ", ".join(f"{key} {tables.best(result[key])['samples_per_s']:.4g}/s"
                     for key, _ in tables.WORKLOADS if key in result)


def machine_line():
    import platform

    return (f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"numpy {np.__version__}")


def main(argv=None):
    args = parse_args(argv)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-peers-") as workdir:
        report = measure(args, Path(workdir))
    report["total_minutes"] = round((time.perf_counter() - start) / 60, 2)
    print(tables.all_tables(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    if args.figures:
        tables.plot(report, args.figures)


if __name__ == "__main__":
    main()
