"""Hyperparameter sweeps: a grid or a random search over Config settings, one Dask task per trial.

Each trial trains one run into ``OUT/trials/<id>/`` (``config.json``, ``metrics.jsonl``,
``last.npz``, epoch checkpoints) with the same code as ``spikeviz train``, and returns its final
metrics; the sweep writes ``OUT/results.csv`` (one row per trial, rewritten as trials finish) and
``OUT/<metric>.png`` (the metric against the first swept setting, one line per value of the
second). A trial whose run directory already holds every epoch is read back instead of trained,
so an interrupted sweep restarts where it stopped; a half-trained one continues from its last
epoch checkpoint. A trial that raises is recorded as ``failed`` with its error; the others go on.

Trials run on a ``distributed.LocalCluster`` with one single-threaded worker process per core,
or on an existing cluster (``scheduler="tcp://HOST:PORT"``). The data is loaded inside each
worker from a small data spec (directory, bundled flag), never shipped with the task.

Grid values (``--grid NAME=VALUES``)::

    kappa_hidden=-0.2,-0.4,-0.6        explicit values
    kappa_hidden=-0.1,-0.2,...,-1.0    arithmetic range: step from the first two, up to the last
    kappa_hidden=-1.0:-0.1:0.1         start:stop:step, the stop included
    hidden=100,200,300                 one hidden layer each; 300+300 is two layers
    optimizer=adam,sgd                 choices and booleans (true/false) by name
"""

import csv
import itertools
import json
import logging
import math
import os
import time
from argparse import Namespace
from pathlib import Path
from typing import NamedTuple

import numpy as np

from spikeviz.config import Config, ConfigError
from spikeviz.errors import DataError

#: Metrics a sweep can plot and tabulate (final epoch, except ``best_test_accuracy``).
METRICS = ("test_accuracy", "best_test_accuracy", "train_accuracy", "loss", "no_output_fraction",
           "train_samples_per_s", "test_samples_per_s", "seconds")

_RESULT_COLUMNS = ("status", "reused", "epochs_done", "test_accuracy", "best_test_accuracy",
                   "best_epoch", "train_accuracy", "loss", "seconds", "run_dir", "error")


# --- grid specs -----------------------------------------------------------------------------

def _settings():
    return {name: spec for name, spec in Config.param.objects("existing").items() if name != "name"}


def _kind(name):
    settings = _settings()
    if name not in settings:
        raise ConfigError(f"unknown setting {name!r} in the sweep; known settings are "
                          f"{sorted(settings)}")
    return type(settings[name]).__name__


def _clean(value):
    """Round away float noise from ranges (-0.30000000000000004 -> -0.3)."""
    return float(round(value, 10)) + 0.0  # + 0.0 turns -0.0 into 0.0


def _arithmetic(start, step, stop, spec):
    if step == 0 or (stop - start) * step < 0:
        raise ConfigError(f"{spec}: the range from {start} to {stop} with step {step} is empty")
    count = int(math.floor((stop - start) / step + 1e-9)) + 1
    if count > 10_000:
        raise ConfigError(f"{spec}: {count} values; a sweep of that size is surely a typo")
    return [start + i * step for i in range(count)]


def _parse_scalar(kind, text, spec, name):
    text = text.strip()
    try:
        if kind == "Integer":
            value = float(text)
            if value != int(value):
                raise ValueError(text)
            return int(value)
        if kind == "Number":
            return float(text)
        if kind == "Boolean":
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if kind == "List":  # hidden=300+300, kappa_deeper=0+-0.2
            convert = int if name == "hidden" else float
            return [convert(part) for part in text.split("+")]
        if kind == "Selector":
            return None if text.lower() == "none" else text
    except ValueError:
        raise ConfigError(f"{spec}: {text!r} is not a valid {kind.lower()} for {name}") from None
    return text


def parse_values(name, text):
    """The values of one grid setting, from ``"v1,v2,..."``, ``"a,b,...,z"`` or ``"a:b:step"``."""
    spec = f"{name}={text}"
    kind = _kind(name)
    items = [item.strip() for item in text.split(",")]
    if not text.strip() or any(not item for item in items):
        raise ConfigError(f"{spec}: empty value in the list")
    numeric = kind in ("Number", "Integer")
    if numeric and len(items) == 1 and items[0].count(":") == 2:
        start, stop, step = (_parse_scalar("Number", part, spec, name) for part in items[0].split(":"))
        values = _arithmetic(start, step, stop, spec)
    elif "..." in items:
        if not numeric or items.index("...") != 2 or len(items) != 4:
            raise ConfigError(f"{spec}: a range is written a,b,...,z (numbers only): the step "
                              "is b - a and z is the last value")
        start, second, _, stop = items
        start, second, stop = (_parse_scalar("Number", v, spec, name) for v in (start, second, stop))
        values = _arithmetic(start, second - start, stop, spec)
    else:
        values = [_parse_scalar(kind, item, spec, name) for item in items]
    if numeric:
        values = [_clean(v) for v in values]
        if kind == "Integer":
            values = [int(round(v)) for v in values]
    if name == "hidden":
        values = [v if isinstance(v, list) else [int(v)] for v in values]
    return values


def parse_grid(specs):
    """``["kappa_hidden=-0.2,-0.4", "hidden=100,200"]`` -> ``{name: [values]}`` in that order."""
    grid = {}
    for spec in specs:
        name, sep, text = spec.partition("=")
        name = name.strip().lstrip("-").replace("-", "_")
        if not sep:
            raise ConfigError(f"{spec!r}: a grid is NAME=VALUES, e.g. kappa_hidden=-0.2,-0.4")
        if name in grid:
            raise ConfigError(f"{name} is swept twice")
        grid[name] = parse_values(name, text)
    return grid


def parse_range(spec):
    """``"eta_w=1e-4:1e-2"`` -> ``("eta_w", 1e-4, 1e-2)`` for uniform random search."""
    name, sep, text = spec.partition("=")
    name = name.strip().replace("-", "_")
    parts = text.split(":")
    if not sep or len(parts) != 2:
        raise ConfigError(f"{spec!r}: a random range is NAME=LOW:HIGH, e.g. kappa_hidden=-1:0")
    if _kind(name) not in ("Number", "Integer"):
        raise ConfigError(f"{spec}: random search draws numbers; {name} is not a number")
    low, high = (_parse_scalar("Number", part, spec, name) for part in parts)
    if not low <= high:
        raise ConfigError(f"{spec}: LOW must not exceed HIGH")
    return name, low, high


def grid_trials(grid):
    """The cartesian product of a ``{name: [values]}`` grid, as a list of ``{name: value}``."""
    names = list(grid)
    return [dict(zip(names, combo)) for combo in itertools.product(*(grid[n] for n in names))]


def random_trials(ranges, n_trials, seed=0):
    """``n_trials`` settings drawn uniformly from ``[(name, low, high), ...]`` (seeded)."""
    rng = np.random.default_rng(seed)
    trials = []
    for _ in range(n_trials):
        trial = {}
        for name, low, high in ranges:
            if _kind(name) == "Integer":
                trial[name] = int(rng.integers(int(low), int(high) + 1))
            else:
                trial[name] = float(f"{rng.uniform(low, high):.4g}")
        trials.append(trial)
    return trials


def _format(value):
    if isinstance(value, list):
        return "+".join(_format(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def trial_id(params):
    """A short readable directory name: ``kappa_hidden=-0.4_hidden=100``."""
    name = "_".join(f"{key}={_format(value)}" for key, value in params.items())
    return "".join(c if c.isalnum() or c in "=-+._" else "-" for c in name) or "base"


def check_trials(trials, base_values):
    """Every trial's full Config, checked before any work (ranges and cross-setting checks)."""
    for params in trials:
        Config.from_dict({**base_values, **params}, source=f"sweep trial {trial_id(params)}")


# --- one trial (runs in a Dask worker) --------------------------------------------------------

def read_metrics(run_dir):
    """The per-epoch metrics of a run directory (``metrics.jsonl``); [] if it has none yet."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    text = path.read_text(errors="replace")
    lines = text.splitlines()
    history = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as error:
            if number == len(lines) and not text.endswith("\n"):
                break  # the trainer is writing this line right now: the epoch is not done
            raise DataError(f"{path}, line {number}: not JSON ({error.msg}); the file is damaged:"
                            " delete the run directory to train the trial again") from None
        if not isinstance(entry, dict) or not isinstance(entry.get("epoch"), int):
            raise DataError(f"{path}, line {number}: not an epoch's metrics (no integer "
                            "'epoch'); delete the run directory to train the trial again")
        history.append(entry)
    return history


def _finished(run_dir, epochs):
    history = read_metrics(run_dir)
    return len(history) >= epochs and history[epochs - 1].get("epoch") == epochs


def _summary(history, epochs):
    history = history[:epochs]
    if not history:
        return {"epochs_done": 0}
    last = history[-1]
    best = max(history, key=lambda m: m.get("test_accuracy", -1.0))
    return {
        "epochs_done": last["epoch"],
        "test_accuracy": last.get("test_accuracy"),
        "best_test_accuracy": best.get("test_accuracy"),
        "best_epoch": best["epoch"],
        "train_accuracy": last.get("train_accuracy"),
        "loss": last.get("loss"),
        "final": {k: v for k, v in last.items() if isinstance(v, (int, float))},
    }


def _data_args(data_spec):
    spec = {"data_dir": None, "bundled": False, "no_download": False, "skip_bad": False}
    spec.update(data_spec or {})
    if spec["data_dir"] is not None:
        spec["data_dir"] = str(spec["data_dir"])
    return Namespace(**spec)


def run_trial(params, base_values, data_spec, run_dir):
    """Train one trial into ``run_dir`` (or read it back if finished); a result dict, never raises.

    Runs in a Dask worker: everything it needs is in its (small, picklable) arguments, and the
    data is loaded here from ``data_spec``.
    """
    from spikeviz.cli import _load, _train_epochs
    from spikeviz.train.trainer import Trainer

    run_dir = Path(run_dir)
    result = {"params": params, "run_dir": str(run_dir), "status": "failed", "reused": False,
              "error": ""}
    start = time.perf_counter()
    try:
        config = Config.from_dict({**base_values, **params}, source=f"trial {run_dir.name}")
        saved_path = run_dir / "config.json"
        if saved_path.is_file():
            saved = json.loads(saved_path.read_text())
            differ = sorted(k for k in set(saved) | set(config.to_dict())
                            if k != "epochs" and saved.get(k) != config.to_dict().get(k))
            if differ:
                raise ConfigError(f"{run_dir} holds a run with other settings ({', '.join(differ)}"
                                  "): use another --out, or delete that directory")
        if _finished(run_dir, config.epochs):
            result.update(status="ok", reused=True)
        else:
            data = _load(_data_args(data_spec), config.dataset, config)
            last = run_dir / "last.npz"
            trainer = Trainer.resume(last, data, config) if last.is_file() else Trainer(config, data)
            run_dir.mkdir(parents=True, exist_ok=True)
            config.save(saved_path)
            (run_dir / "error.txt").unlink(missing_ok=True)
            _train_epochs(trainer, config, run_dir, lambda: False)
            result["status"] = "ok"
        result.update(_summary(read_metrics(run_dir), config.epochs))
    except Exception as error:  # noqa: BLE001 - a failing trial is a result, not a crash
        result["error"] = f"{type(error).__name__}: {error}"
        try:
            history = read_metrics(run_dir)
        except DataError:  # the error above may be this very file's
            history = []
        result.update(_summary(history, 10**9))
        if run_dir.is_dir():
            (run_dir / "error.txt").write_text(result["error"] + "\n")
    result["seconds"] = time.perf_counter() - start
    return result


# --- the sweep ----------------------------------------------------------------------------------

def _client(scheduler, n_workers):
    from dask.distributed import Client, LocalCluster

    if scheduler is not None:
        if not isinstance(scheduler, str):  # an existing Client or cluster object
            return scheduler if isinstance(scheduler, Client) else Client(scheduler), None
        return Client(scheduler), None
    logging.getLogger("distributed").setLevel(logging.WARNING)  # no per-worker INFO chatter
    cluster = LocalCluster(n_workers=n_workers or os.cpu_count() or 1, threads_per_worker=1,
                           processes=True, host="127.0.0.1", silence_logs=logging.ERROR,
                           # no dashboard; its small HTTP server on a free port, not on 8787
                           dashboard_address=None,
                           scheduler_kwargs={"dashboard_address": "127.0.0.1:0"})
    return Client(cluster), cluster


def _row(result, names, metric):
    params = result["params"]
    row = {"trial": Path(result["run_dir"]).name}
    row.update({name: _format(params.get(name)) for name in names})
    for column in _RESULT_COLUMNS:
        value = result.get(column)
        row[column] = "" if value is None else value
    if metric not in row:
        row[metric] = result.get("final", {}).get(metric, "")
    for column in ("test_accuracy", "best_test_accuracy", "train_accuracy", "loss"):
        if isinstance(row[column], float):
            row[column] = round(row[column], 6)
    row["seconds"] = round(row["seconds"], 2) if row["seconds"] != "" else ""
    return row


def write_csv(rows, path):
    """``rows`` (a list of dicts with the same keys) as a CSV table."""
    path = Path(path)
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)


def read_csv(path):
    """The rows of a sweep's ``results.csv`` as dicts of strings."""
    with Path(path).open(newline="") as file:
        return list(csv.DictReader(file))


def _number(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def best_by(rows, x, group, metric="test_accuracy", over="seed"):
    """``{group value: (best x value, its metric)}`` over the ok rows: e.g. the best kappa per N.
    The metric of an x value is its mean over the values of ``over`` (the seeds) if swept."""
    best = {}
    for point in aggregate(rows, x, metric, (group,) if group else (), over):
        key = point["group"][0] if group else ""
        if key not in best or point["mean"] > best[key][1]:
            best[key] = (point["x"], point["mean"])
    return best


def value_key(text):
    """Sort key of a table's setting values: numbers by value, then other text."""
    number = _number(text)
    return (number is None, number or 0.0, str(text))


def aggregate(rows, x, metric, groups=(), over="seed"):
    """``metric`` of the ok rows summarised per ``(groups..., x)``: mean, min and max over the
    values of the setting ``over`` (e.g. seeds).

    Returns
    -------
    list of dict
        ``{"group": tuple of the ``groups`` values, "x": text, "mean", "min", "max", "n"}``,
        sorted by group then x.  Rows that differ only in ``over`` fall into one point; any other
        setting that is neither ``x`` nor in ``groups`` is averaged over as well.
    """
    values = {}
    for row in rows:
        value = _number(row.get(metric))
        if row.get("status") != "ok" or value is None:
            continue
        key = (tuple(row.get(name, "") for name in groups), row.get(x, ""))
        values.setdefault(key, []).append(value)
    points = [{"group": group, "x": x_value, "mean": sum(v) / len(v), "min": min(v),
               "max": max(v), "n": len(v)} for (group, x_value), v in values.items()]
    points.sort(key=lambda p: ([value_key(g) for g in p["group"]], value_key(p["x"])))
    return points


def plot_groups(names, over="seed"):
    """The x setting and the line settings of a plot of a sweep over ``names``: x is the first
    swept setting, one line per combination of the others except ``over`` (averaged over)."""
    x_name = names[0]
    return x_name, [name for name in names[1:] if name != over]


def plot_results(rows, names, metric, path, random=False, over="seed"):
    """Save :func:`results_figure` to ``path``; False if no matplotlib (the sweep still writes
    its table)."""
    try:
        figure = results_figure(rows, names, metric, random, over)
    except ImportError:
        print("matplotlib is not installed: no plot (the table is in results.csv)", flush=True)
        return False
    figure.savefig(path, dpi=120)
    return True


def results_figure(rows, names, metric, random=False, over="seed"):
    """A matplotlib figure of ``metric`` against ``names[0]``, one line per combination of the
    others; a swept ``over`` setting (the seed) is averaged: the mean, with bars from the lowest
    to the highest value.  Raises ImportError without matplotlib."""
    from matplotlib.figure import Figure

    x_name, others = plot_groups(names, over)
    points = aggregate(rows, x_name, metric, others, over)
    xs = sorted({p["x"] for p in points}, key=value_key)
    numeric = all(_number(v) is not None for v in xs)
    position = (lambda v: float(v)) if numeric else (lambda v: float(xs.index(v)))
    figure = Figure(figsize=(6, 4), layout="constrained")
    axes = figure.add_subplot()
    lines = {}
    for point in points:
        lines.setdefault(point["group"], []).append(point)
    for group, members in lines.items():
        label = ", ".join(f"{n}={v}" for n, v in zip(others, group)) or None
        means = [p["mean"] for p in members]
        spread = [[m - p["min"] for m, p in zip(means, members)],
                  [p["max"] - m for m, p in zip(means, members)]]
        axes.errorbar([position(p["x"]) for p in members], means, yerr=spread, capsize=3,
                      fmt="o" if random else "o-", label=label)
    if not numeric:
        axes.set_xticks(range(len(xs)), xs)
    axes.set_xlabel(x_name)
    repeats = max((p["n"] for p in points), default=1)
    averaged = over in names and x_name != over and repeats > 1
    axes.set_ylabel(f"{metric} (mean of {repeats} {over}s, min to max)" if averaged else metric)
    axes.grid(alpha=0.3)
    if len(lines) > 1 or (lines and next(iter(lines)) != ()):
        axes.legend(fontsize="small")
    return figure


def run_sweep(grid, base_config=None, data_spec=None, out="sweep", scheduler=None,
              n_workers=None, metric="test_accuracy", plot=True, progress=print):
    """Train every trial of ``grid`` as a Dask task; the rows of ``OUT/results.csv``.

    Parameters
    ----------
    grid : dict or list
        ``{name: [values]}`` (a cartesian product; string values such as ``"-0.1,-0.2"`` are
        parsed like ``--grid``), or a list of ``{name: value}`` trials (e.g. a random search).
    base_config : Config or dict, optional
        Settings shared by every trial (default: the built-in defaults).
    data_spec : dict, optional
        How each worker loads the data: ``data_dir``, ``bundled``, ``no_download``.
    out : str or os.PathLike
        Sweep directory: ``trials/<id>/`` per trial, ``results.csv``, ``<metric>.png``.
    scheduler : str or distributed.Client, optional
        ``"tcp://HOST:PORT"`` of a running scheduler; default: a LocalCluster of ``n_workers``
        single-threaded worker processes (default: one per core).
    metric : str
        One of ``METRICS``: the column plotted.

    Returns
    -------
    list of dict
        One row per trial, in trial order: the swept settings (as text), ``status`` ("ok" or
        "failed"), ``reused`` (read back from an earlier run), final and best test accuracy,
        train accuracy, loss, seconds, run directory and error.
    """
    if metric not in METRICS:
        raise ConfigError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    if isinstance(base_config, Config):
        base_values = base_config.to_dict()
    else:
        base_values = Config.from_dict(dict(base_config or {}), source="base config").to_dict()
    random = isinstance(grid, (list, tuple))
    if random:
        trials = [dict(t) for t in grid]
    else:
        grid = {name: parse_values(name, values) if isinstance(values, str) else
                [[v] if name == "hidden" and isinstance(v, int) else v for v in values]
                for name, values in grid.items()}
        trials = grid_trials(grid)
    if not trials:
        raise ConfigError("the sweep has no trials")
    check_trials(trials, base_values)
    names = list(dict.fromkeys(name for trial in trials for name in trial))
    ids = _unique_ids(trials)

    out = Path(out)
    (out / "trials").mkdir(parents=True, exist_ok=True)
    epochs = base_values["epochs"]
    results = {}
    pending = []
    for index, (params, name) in enumerate(zip(trials, ids)):
        run_dir = out / "trials" / name
        trial_epochs = params.get("epochs", epochs)
        try:
            finished = _finished(run_dir, trial_epochs)
        except DataError:  # a damaged metrics file: the trial runs again and reports it
            finished = False
        if finished:
            results[index] = run_trial(params, base_values, data_spec, run_dir)  # reads it back
        else:
            pending.append((index, params, run_dir))
    progress(f"sweep of {len(trials)} trials into {out}: {len(results)} finished earlier, "
             f"{len(pending)} to run")

    def table():
        return [_row(results[i], names, metric) for i in sorted(results)]

    if pending:
        from dask.distributed import as_completed

        client, cluster = _client(scheduler, n_workers)
        try:
            progress(f"dask scheduler {client.scheduler.address}, "
                     f"{len(client.scheduler_info()['workers'])} workers")
            futures = {client.submit(run_trial, params, base_values, data_spec, str(run_dir),
                                     pure=False, key=f"spikeviz-trial-{run_dir.name}-"
                                                     f"{time.time_ns()}"): index
                       for index, params, run_dir in pending}
            for future in as_completed(futures):
                index = futures[future]
                try:
                    results[index] = future.result()
                except Exception as error:  # noqa: BLE001 - e.g. a worker that died
                    params, run_dir = trials[index], out / "trials" / ids[index]
                    results[index] = {"params": params, "run_dir": str(run_dir),
                                      "status": "failed", "reused": False, "seconds": None,
                                      "error": f"{type(error).__name__}: {error}"}
                result = results[index]
                progress(f"  {ids[index]}: {result['status']} "
                         + (f"test {result.get('test_accuracy', float('nan')):.4f} "
                            f"in {result['seconds']:.1f} s" if result["status"] == "ok"
                            else result["error"]))
                write_csv(table(), out / "results.csv")
        finally:
            if cluster is not None or isinstance(scheduler, str):
                client.close()
            if cluster is not None:
                cluster.close()
    rows = table()
    write_csv(rows, out / "results.csv")
    if plot:
        plot_path = out / f"{metric}.png"
        if plot_results(rows, names, metric, plot_path, random=random):
            progress(f"plot: {plot_path}")
    return rows


def _unique_ids(trials):
    ids, seen = [], {}
    for index, params in enumerate(trials):
        name = trial_id(params)
        if name in seen:
            name = f"{name}_{index:03d}"
        seen[name] = index
        ids.append(name)
    return ids


def format_table(rows, columns=None):
    """The rows as an aligned text table (for the terminal and notebooks)."""
    if not rows:
        return "(no trials)"
    columns = columns or [c for c in rows[0] if c not in ("run_dir", "reused")]
    cells = [[str(row.get(c, "")) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in cells]
    return "\n".join(line.rstrip() for line in lines)


# --- reading a finished sweep (the app's sweep view, notebooks) ---------------------------------

RESULTS_FILE = "results.csv"
_REQUIRED_COLUMNS = ("trial", "status")
_REPAIR = "run the same `spikeviz sweep` (same --out) again: it reads the finished trials back " \
          "and rewrites the table"


class Sweep(NamedTuple):
    """A sweep read back from its directory."""

    directory: Path
    names: list  #: the swept settings, in the table's column order
    rows: list  #: one dict of strings per trial, as in results.csv


def find_sweeps(folder, depth=2):
    """Sweep directories (those holding ``results.csv``): ``folder`` itself and the folders up
    to ``depth`` levels below it, sorted by path."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder; enter a sweep directory (the --out of "
                        "`spikeviz sweep`) or a folder that holds some")
    found, level = [], [folder]
    for _ in range(depth + 1):
        found += [d for d in level if (d / RESULTS_FILE).is_file()]
        level = sorted(child for d in level for child in d.iterdir()
                       if child.is_dir() and child.name != "trials")
    return sorted(found)


def load_sweep(directory):
    """The table of the sweep in ``directory``; a :class:`DataError` saying what is wrong with
    it and how to fix it if it has no readable ``results.csv``."""
    directory = Path(directory).expanduser()
    path = directory / RESULTS_FILE
    if not path.is_file():
        where = "no such directory" if not directory.is_dir() else f"no {RESULTS_FILE}"
        raise DataError(f"{directory}: {where}; it is not a sweep directory (`spikeviz sweep "
                        f"--out DIR` writes DIR/{RESULTS_FILE} as its trials finish)")
    try:
        with path.open(newline="", encoding="utf-8") as file:
            reader = csv.reader(file)
            header = next(reader, None)
            records = list(reader)
    except (csv.Error, UnicodeDecodeError) as error:
        raise DataError(f"{path}: not a readable CSV table ({error}); {_REPAIR}") from None
    missing = [c for c in _REQUIRED_COLUMNS if c not in (header or [])]
    if missing:
        raise DataError(f"{path}: no column {', '.join(missing)} in the header "
                        f"{header or '(empty file)'}; not a spikeviz sweep table, or damaged: "
                        f"{_REPAIR}")
    for number, record in enumerate(records, start=2):
        if len(record) != len(header):
            raise DataError(f"{path}, line {number}: {len(record)} fields where the header has "
                            f"{len(header)}; the table is damaged: {_REPAIR}")
    names = header[header.index("trial") + 1:header.index("status")]
    return Sweep(directory, names, [dict(zip(header, record)) for record in records])


def trial_dir(sweep, trial):
    """The run directory of a trial (found under the sweep directory wherever it was run)."""
    return sweep.directory / "trials" / trial


def trial_checkpoint(sweep, trial):
    """The checkpoint of a trial's last epoch (``last.npz``); a :class:`DataError` if missing."""
    path = trial_dir(sweep, trial) / "last.npz"
    if not path.is_file():
        raise DataError(f"{path}: no checkpoint; the trial did not finish an epoch (see its "
                        "error in the table), or its run directory was moved or deleted: "
                        f"{_REPAIR}")
    return path
