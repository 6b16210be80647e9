"""Timing and memory helpers shared by every worker (standard library only)."""

import resource
import time


def timed_rate(step, samples_per_step, seconds, min_steps=2):
    """Run ``step()`` until ``seconds`` have passed (at least ``min_steps`` times).

    Returns samples/s, the steps taken and the seconds measured.
    """
    steps, start = 0, time.perf_counter()
    while True:
        step()
        steps += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds and steps >= min_steps:
            break
    return {"samples_per_s": steps * samples_per_step / elapsed, "steps": steps,
            "seconds": round(elapsed, 3)}


def calibrated_count(run, probe_n, seconds):
    """How many samples ``run(n)`` handles in about ``seconds``, from a run of ``probe_n``."""
    start = time.perf_counter()
    run(probe_n)
    per_sample = (time.perf_counter() - start) / probe_n
    return max(probe_n, int(seconds / max(per_sample, 1e-9)))


def timed_count(run, n):
    """samples/s of ``run(n)`` (a batch job that is not easily cut into a time window)."""
    start = time.perf_counter()
    run(n)
    elapsed = time.perf_counter() - start
    return {"samples_per_s": n / elapsed, "samples": n, "seconds": round(elapsed, 3)}


def peak_rss_mb():
    """Highest resident set size of this process so far (Linux reports kB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def slope_rate(run, per_sample_s, seconds, available):
    """samples/s of ``run(n)`` with its fixed cost per call taken out: a short and a long run
    (about ``seconds`` together), rate = extra samples / extra seconds.  ``per_sample_s`` is a
    first estimate; ``available``: how many samples the two runs may use in all.

    Returns samples/s, the per-call overhead in seconds, the samples and seconds of both runs.
    """
    long_n = max(2, int(0.8 * seconds / max(per_sample_s, 1e-9)))
    short_n = max(1, long_n // 4)
    if short_n + long_n > available:
        long_n = available * 4 // 5
        short_n = available - long_n
    if short_n < 1 or long_n <= short_n:
        raise ValueError(f"slope_rate: {available} samples left, need at least 3 (a short and "
                         "a longer run); give the worker a larger pool")
    short_s = timed_count(run, short_n)["seconds"]
    long_s = timed_count(run, long_n)["seconds"]
    per_sample = (long_s - short_s) / (long_n - short_n)
    if per_sample <= 0:
        raise ValueError(f"slope_rate: {long_n} samples took {long_s} s, no longer than "
                         f"{short_n} samples ({short_s} s); lengthen the window (--seconds)")
    return {"samples_per_s": 1 / per_sample, "overhead_s": round(short_s - short_n * per_sample, 4),
            "samples": [short_n, long_n], "seconds": [short_s, long_s]}
