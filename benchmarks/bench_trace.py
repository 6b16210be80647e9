"""What the neuron lab's recording costs the engine (issue 8), measured in one run.

784-800-10 on 1 s PI-MNIST presentations of bundled test digits (5,000 events/s), one core: the
forward pass without any recording (how training and evaluation run), with the potentials of 14
watched neurons (4 hidden, 10 output: the lab's default), and with the lab's detailed recording
of the same neurons (``Simulator(detail=True)``).  Each figure is the sum over the digits of the
fastest of ``--repeats`` runs of that digit, robust on a shared machine; ratios to the first.
Whether the detail costs anything when *off* needs the engine before and after the change
(``git worktree``), see docs/lab.md.

    python -m benchmarks.bench_trace [--digits 20] [--repeats 15]
"""

import argparse
import json
import time

import numpy as np

from spikeviz.data import load_mnist
from spikeviz.encode import PoissonEncoder
from spikeviz.engine import Simulator, init_network, make_dynamics

KAPPAS = (-0.4, -1.0)
WATCH = [(0, n) for n in range(4)] + [(1, n) for n in range(10)]


def fastest_total_ms(sim, events, repeats):
    dynamics = make_dynamics()
    sim.run(events[0], 1000.0, kappas=KAPPAS, dynamics=dynamics)  # compile, warm up
    total = 0.0
    for sample in events:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            sim.run(sample, 1000.0, kappas=KAPPAS, dynamics=dynamics)
            times.append(time.perf_counter() - start)
        total += min(times)
    return 1000.0 * total


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--digits", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    images = load_mnist(bundled=True).test_images[: args.digits]
    network = init_network((784, 800, 10), np.random.default_rng(0), alpha=3.0)
    encoder = PoissonEncoder(784)
    events = [encoder.encode(image, 1000.0, np.random.default_rng(i))
              for i, image in enumerate(images)]
    room = dict(spike_capacity=100_000, potential_capacity=200_000)
    setups = {
        "no recording": Simulator(network),
        "potentials of 14 neurons": Simulator(network, watch=WATCH, **room),
        "detailed recording of 14 neurons": Simulator(network, watch=WATCH, detail=True, **room),
    }
    results = [{"what": what, "ms": round(fastest_total_ms(sim, events, args.repeats), 2)}
               for what, sim in setups.items()]
    for row in results:
        row["ratio_to_no_recording"] = round(row["ms"] / results[0]["ms"], 2)
    print(json.dumps({"date": time.strftime("%Y-%m-%d"), "digits": args.digits,
                      "repeats": args.repeats, "results": results}, indent=2))


if __name__ == "__main__":
    main()
