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
