"""``spikeviz sweep``: grid parsing, a sweep on a LocalCluster, restarts, failures, a scheduler."""

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from spikeviz.cli import main
from spikeviz.config import ConfigError
from spikeviz.sweep import (grid_trials, parse_grid, parse_range, random_trials, read_csv,
                            run_sweep, trial_id)

TINY = {"train_samples": 200, "test_samples": 50, "test_duration_ms": 100.0}
TINY_ARGS = ["--bundled", "--train-samples", "200", "--test-samples", "50",
             "--test-duration-ms", "100"]
BUNDLED = {"bundled": True}


pytestmark = pytest.mark.usefixtures("no_user_data")


# --- grid specs ---------------------------------------------------------------------------------

def test_grid_values_lists_ranges_and_layer_sizes():
    grid = parse_grid(["kappa_hidden=-0.1,-0.2,...,-1.0", "hidden=100,200,300+300",
                       "tau-mp-ms=10:30:10", "optimizer=adam,sgd", "permute_pixels=true"])
    assert grid["kappa_hidden"] == [-0.1, -0.2, -0.3, -0.4, -0.5, -0.6, -0.7, -0.8, -0.9, -1.0]
    assert grid["hidden"] == [[100], [200], [300, 300]]
    assert grid["tau_mp_ms"] == [10.0, 20.0, 30.0]
    assert grid["optimizer"] == ["adam", "sgd"] and grid["permute_pixels"] == [True]
    assert parse_grid(["epochs=1,2"])["epochs"] == [1, 2]
    trials = grid_trials({"kappa_hidden": [-0.2, -0.4], "hidden": [[100], [200]]})
    assert len(trials) == 4 and trials[1] == {"kappa_hidden": -0.2, "hidden": [200]}
    assert trial_id(trials[1]) == "kappa_hidden=-0.2_hidden=200"
    assert trial_id({"hidden": [300, 300]}) == "hidden=300+300"


@pytest.mark.parametrize("spec, message", [
    ("kappa_hiden=-0.2", "unknown setting"),
    ("kappa_hidden", "NAME=VALUES"),
    ("kappa_hidden=-0.2,,-0.4", "empty value"),
    ("kappa_hidden=-0.2,abc", "not a valid number"),
    ("hidden=100,2.5", "not a valid list"),
    ("optimizer=adam,...,sgd", "numbers only"),
    ("kappa_hidden=-0.1,-0.2,...,0.5", "empty"),
])
def test_bad_grid_specs_are_errors(spec, message):
    with pytest.raises(ConfigError, match=message):
        parse_grid([spec])


def test_random_search_is_seeded_and_within_range():
    ranges = [parse_range("kappa_hidden=-1:-0.1"), parse_range("epochs=1:3")]
    trials = random_trials(ranges, 20, seed=3)
    assert trials == random_trials(ranges, 20, seed=3)
    assert all(-1 <= t["kappa_hidden"] <= -0.1 and t["epochs"] in (1, 2, 3) for t in trials)
    with pytest.raises(ConfigError, match="not a number"):
        parse_range("optimizer=0:1")


def test_out_of_range_values_are_rejected_before_any_work(tmp_path, capsys):
    out = tmp_path / "sweep"
    assert main(["sweep", "--grid", "kappa_hidden=-0.2,0.5", "--out", str(out), *TINY_ARGS]) == 2
    assert "kappa_hidden" in capsys.readouterr().err
    assert not out.exists()  # no cluster, no directory, no data read
    assert main(["sweep", "--grid", "hidden=0", "--out", str(out), *TINY_ARGS]) == 2
    assert main(["sweep", "--out", str(out), *TINY_ARGS]) == 2
    assert "--grid" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="unknown metric"):
        run_sweep({"kappa_hidden": [-0.2]}, TINY, BUNDLED, out, metric="accuracy")


# --- sweeps on Dask -------------------------------------------------------------------------------

def test_a_2x2_sweep_on_a_local_cluster_then_a_restart_skips_finished_trials(tmp_path):
    out = tmp_path / "sweep"
    base = {**TINY, "hidden": [20]}
    rows = run_sweep({"kappa_hidden": "-0.2,-0.4", "hidden": [20, 30]}, base, BUNDLED, out,
                     n_workers=2, progress=lambda text: None)
    assert [(r["kappa_hidden"], r["hidden"], r["status"]) for r in rows] == [
        ("-0.2", "20", "ok"), ("-0.2", "30", "ok"), ("-0.4", "20", "ok"), ("-0.4", "30", "ok")]
    table = read_csv(out / "results.csv")
    assert len(table) == 4 and {r["status"] for r in table} == {"ok"}
    for column in ("kappa_hidden", "hidden", "test_accuracy", "best_test_accuracy",
                   "train_accuracy", "seconds", "error"):
        assert column in table[0]
    assert all(0 <= float(r["test_accuracy"]) <= 1 for r in table)
    assert (out / "test_accuracy.png").stat().st_size > 1000
    run = out / "trials" / "kappa_hidden=-0.4_hidden=30"
    assert json.loads((run / "config.json").read_text())["hidden"] == [30]
    assert (run / "last.npz").is_file()
    assert [m["epoch"] for m in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())] \
        == [1]

    # a restart: nothing is trained again (no cluster is even started), the table is the same
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("trials/*/metrics.jsonl")}
    start = time.perf_counter()
    again = run_sweep({"kappa_hidden": [-0.2, -0.4], "hidden": [20, 30]}, base, BUNDLED, out,
                      n_workers=2, progress=lambda text: None)
    assert time.perf_counter() - start < 5
    assert all(r["reused"] for r in again)
    assert [r["test_accuracy"] for r in again] == [r["test_accuracy"] for r in rows]
    assert stamps == {p: p.stat().st_mtime_ns for p in out.glob("trials/*/metrics.jsonl")}

    # an interrupted sweep: one trial's run is gone, only that one is trained
    for path in run.iterdir():
        path.unlink()
    third = run_sweep({"kappa_hidden": [-0.2, -0.4], "hidden": [20, 30]}, base, BUNDLED, out,
                      n_workers=2, progress=lambda text: None)
    assert [r["reused"] for r in third] == [True, True, True, False]
    assert {r["status"] for r in third} == {"ok"}

    # a damaged metrics file: that trial is reported with the file and the fix, the sweep goes on
    (run / "metrics.jsonl").write_text("{not json\n")
    fourth = run_sweep({"kappa_hidden": [-0.2, -0.4], "hidden": [20, 30]}, base, BUNDLED, out,
                       n_workers=2, progress=lambda text: None)
    assert [r["status"] for r in fourth] == ["ok", "ok", "ok", "failed"]
    assert "metrics.jsonl" in fourth[-1]["error"] and "damaged" in fourth[-1]["error"]


def test_a_failing_trial_is_recorded_and_the_others_finish(tmp_path, capsys):
    out = tmp_path / "sweep"
    # rate_hz=1 passes the Config bounds, but one event per second leaves the hidden layer silent
    # for the whole epoch: the Trainer stops it with a DivergenceError
    code = main(["sweep", "--grid", "rate_hz=1,5000", "--grid", "kappa_hidden=-0.4",
                 "--hidden", "20", "--workers", "2", "--out", str(out), *TINY_ARGS])
    assert code == 1
    assert "1 of 2 trials failed" in capsys.readouterr().err
    failed, ok = read_csv(out / "results.csv")
    assert failed["status"] == "failed" and "DivergenceError" in failed["error"]
    assert "silent" in failed["error"]
    assert ok["status"] == "ok" and ok["error"] == "" and float(ok["test_accuracy"]) >= 0
    assert (out / "trials" / failed["trial"] / "error.txt").is_file()


@pytest.fixture
def dask_cluster(tmp_path):
    """A ``dask scheduler`` and one ``dask worker``, separate processes on localhost."""
    dask = Path(sys.executable).parent / "dask"
    assert dask.is_file(), "the dask CLI comes with dask[distributed]"
    scheduler_file = tmp_path / "scheduler.json"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    logs = [open(tmp_path / f"{name}.log", "w") for name in ("scheduler", "worker")]
    processes = [subprocess.Popen(
        [str(dask), "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
         "--scheduler-file", str(scheduler_file)], stdout=logs[0], stderr=subprocess.STDOUT,
        env=env)]
    try:
        deadline = time.monotonic() + 60
        while not scheduler_file.is_file() or not scheduler_file.read_text().strip():
            assert time.monotonic() < deadline, (tmp_path / "scheduler.log").read_text()
            assert processes[0].poll() is None, (tmp_path / "scheduler.log").read_text()
            time.sleep(0.2)
        address = json.loads(scheduler_file.read_text())["address"]
        processes.append(subprocess.Popen(
            [str(dask), "worker", address, "--nworkers", "1", "--nthreads", "1",
             "--no-dashboard"], stdout=logs[1], stderr=subprocess.STDOUT, env=env))
        yield address, tmp_path / "worker.log"
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in reversed(processes):
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for log in logs:
            log.close()


def test_a_sweep_on_a_separately_started_scheduler(tmp_path, dask_cluster, capsys):
    address, worker_log = dask_cluster
    out = tmp_path / "sweep"
    code = main(["sweep", "--grid", "kappa_hidden=-0.2,-0.4", "--hidden", "20",
                 "--scheduler", address, "--out", str(out), *TINY_ARGS])
    assert code == 0, capsys.readouterr().err
    assert f"dask scheduler {address}" in capsys.readouterr().out
    with (out / "results.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert [(r["kappa_hidden"], r["status"]) for r in rows] == [("-0.2", "ok"), ("-0.4", "ok")]
    # the trials ran in the worker process: the training progress went to its log
    assert "epoch 1/1" in worker_log.read_text()
