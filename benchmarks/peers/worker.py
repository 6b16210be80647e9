"""One measurement in a process of its own, so that its peak memory and start-up are its own.

    python -m benchmarks.peers.worker TASK PEER WORKLOAD.npz OUT.json [options]

TASK is ``speed``, ``scaling`` (spikeviz), ``accuracy`` (spikeviz, snntorch) or ``machine``.
The parent sets ``BENCH_PROCESS_START`` (``time.time()`` just before it started this process).
Imports stay inside the functions: the Brian2 interpreter has neither spikeviz nor torch.
"""

import argparse
import importlib
import json
import os
import time

import numpy as np

from benchmarks.peers.workload import WORKLOAD, mean_events, unpack_events

MODULES = {"spikeviz": "spikeviz_peer", "snntorch": "snntorch_peer",
           "spikingjelly": "spikingjelly_peer", "norse": "norse_peer", "brian2": "brian2_peer"}


def load_pool(path):
    """The workload file: images, labels and pre-drawn events of the training and test pools."""
    with np.load(path) as npz:
        pool = {key: npz[key] for key in npz.files}
    for split in ("train", "infer"):
        pool[f"{split}_events"] = unpack_events(pool.pop(f"{split}_times"),
                                                pool.pop(f"{split}_channels"),
                                                pool.pop(f"{split}_offsets"))
        pool[f"{split}_events_per_sample"] = mean_events(pool[f"{split}_events"])
    return pool


def run(args, process_start):
    if args.task == "machine":
        from benchmarks.peers.machine import limits
        return limits()
    peer = importlib.import_module(f"benchmarks.peers.{MODULES[args.peer]}")
    if args.task == "accuracy":
        return peer.accuracy(WORKLOAD, args.data_dir, args.train_samples, args.test_samples,
                             **({} if args.batch is None else {"batch": args.batch}))
    pool = load_pool(args.workload)
    if args.task == "scaling":
        return peer.scaling(WORKLOAD, pool, args.seconds)
    if args.peer in ("spikeviz", "brian2"):
        return peer.speed(WORKLOAD, pool, args.seconds, process_start, cold=args.cold)
    from benchmarks.peers import torch_common
    from benchmarks.peers.torch_common import Pool

    import torch
    torch.set_num_threads(args.torch_threads)
    train = Pool(pool["train_events"], pool["train_labels"], WORKLOAD.train_ms, WORKLOAD)
    infer = Pool(pool["infer_events"], pool["infer_labels"], WORKLOAD.infer_ms, WORKLOAD)
    return torch_common.speed(peer, WORKLOAD, train, infer, args.seconds, process_start)


def main():
    process_start = float(os.environ.get("BENCH_PROCESS_START", time.time()))
    parser = argparse.ArgumentParser()
    parser.add_argument("task", choices=["speed", "scaling", "accuracy", "machine"])
    parser.add_argument("peer", choices=sorted(MODULES))
    parser.add_argument("workload")
    parser.add_argument("out")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--torch-threads", type=int, default=1)
    parser.add_argument("--data-dir")
    parser.add_argument("--train-samples", type=int)
    parser.add_argument("--test-samples", type=int)
    parser.add_argument("--batch", type=int)
    parser.add_argument("--cold", action="store_true", help="empty compilation caches (the parent sets spikeviz's NUMBA_CACHE_DIR)")
    args = parser.parse_args()
    result = run(args, process_start)
    with open(args.out, "w") as out:
        json.dump(result, out, indent=2)


if __name__ == "__main__":
    main()
