"""The machine's limits, measured in the same run: memory bandwidth (a NumPy copy of an array far
larger than the caches), the vector units' peak (single-precision matrix product on one core),
and the bound that fits spikeviz's work best: adding randomly chosen 3.2 kB rows of the
784 x 800 float32 weight matrix (2.4 MB, in L3 but not L2) into one vector, as every input
event does, in a compiled loop with nothing else.

Run in a process of its own with one BLAS thread (the parent sets ``OPENBLAS_NUM_THREADS=1``
before NumPy loads), so the matrix product measures one core.
"""

import time

import numpy as np

COPY_MB = 256
MATRIX = 1024
GATHER_SHAPE = (784, 800)  # the hidden layer's weights


def best_seconds(run, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def memory_bandwidth_gb_s(megabytes=COPY_MB, repeats=5):
    """Bytes read plus bytes written per second by ``np.copyto`` (best of ``repeats``)."""
    source = np.ones(megabytes * 2**20 // 8)
    target = np.empty_like(source)
    seconds = best_seconds(lambda: np.copyto(target, source), repeats)
    return 2 * source.nbytes / seconds / 1e9


def float32_gflops(n=MATRIX, repeats=5):
    """Single-precision multiply-adds of an n x n matrix product, as GFLOP/s (2 per FMA)."""
    rng = np.random.default_rng(0)
    a, b = rng.random((n, n), np.float32), rng.random((n, n), np.float32)
    a @ b  # warm-up
    return 2 * n**3 / best_seconds(lambda: a @ b, repeats) / 1e9


def row_gather_updates_per_s(shape=GATHER_SHAPE, rows=200_000, repeats=5):
    """Synaptic updates per second of ``out += W[row]`` over random rows (best of ``repeats``)."""
    from numba import njit

    @njit(cache=False)
    def add_rows(matrix, indices, out):
        for row in indices:
            for j in range(matrix.shape[1]):
                out[j] += matrix[row, j]

    rng = np.random.default_rng(0)
    matrix = rng.random(shape, np.float32)
    indices = rng.integers(shape[0], size=rows)
    out = np.zeros(shape[1], np.float32)
    add_rows(matrix, indices[:10], out)  # compiles
    return rows * shape[1] / best_seconds(lambda: add_rows(matrix, indices, out), repeats)


def limits():
    return {"memory_bandwidth_gb_s": round(memory_bandwidth_gb_s(), 2),
            "float32_gflops_one_core": round(float32_gflops(), 1),
            "row_gather_updates_per_s": round(row_gather_updates_per_s()),
            "copy_mb": COPY_MB, "matrix": MATRIX, "gather_shape": list(GATHER_SHAPE)}
