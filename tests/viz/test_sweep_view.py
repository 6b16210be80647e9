"""Reading finished sweeps back (spikeviz.sweep) and the sweep view driven without a server."""

import json
import math
import shutil

import holoviews as hv
import panel as pn
import pytest
from dask.distributed import Client

from spikeviz.config import Config
from spikeviz.data import load_mnist
from spikeviz.errors import DataError
from spikeviz.sweep import (aggregate, best_by, find_sweeps, load_sweep, plot_results,
                            read_metrics, results_figure, run_sweep, trial_checkpoint,
                            trial_dir)
from spikeviz.viz.app import TrainingApp
from spikeviz.viz.sweep_view import SweepView, table_columns

TINY = {"hidden": [20], "train_samples": 200, "test_samples": 50, "test_duration_ms": 100.0}
GRID = {"kappa_hidden": [-0.2, -0.4], "seed": [0, 1]}


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """Two real sweeps under one folder, run on an in-process Dask client: ``good`` (kappa x
    seed, 4 trials) and ``failing`` (one trial whose hidden layer stays silent)."""
    root = tmp_path_factory.mktemp("sweeps")
    with Client(processes=False, n_workers=1, threads_per_worker=1,
                dashboard_address=None) as client:
        for name, grid in (("good", GRID), ("failing", {"rate_hz": [1]})):
            run_sweep(grid, TINY, {"bundled": True}, root / name, scheduler=client,
                      progress=lambda text: None)
    return root


@pytest.fixture
def root(made, tmp_path):
    """A copy of the made sweeps that a test may damage."""
    shutil.copytree(made, tmp_path / "sweeps")
    return tmp_path / "sweeps"


# --- reading (no Panel) -------------------------------------------------------------------------

def test_a_sweep_reads_back_with_its_swept_settings_and_trials(made):
    assert find_sweeps(made) == [made / "failing", made / "good"]
    assert find_sweeps(made / "good") == [made / "good"]  # a sweep directory itself
    sweep = load_sweep(made / "good")
    assert sweep.names == ["kappa_hidden", "seed"]
    assert [(r["kappa_hidden"], r["seed"], r["status"]) for r in sweep.rows] == [
        ("-0.2", "0", "ok"), ("-0.2", "1", "ok"), ("-0.4", "0", "ok"), ("-0.4", "1", "ok")]
    for row in sweep.rows:
        history = read_metrics(trial_dir(sweep, row["trial"]))
        assert [entry["epoch"] for entry in history] == [1]
        assert history[-1]["test_accuracy"] == pytest.approx(float(row["test_accuracy"]))
        assert trial_checkpoint(sweep, row["trial"]).name == "last.npz"
    failed = load_sweep(made / "failing").rows[0]
    assert failed["status"] == "failed" and "DivergenceError" in failed["error"]
    with pytest.raises(DataError, match="no checkpoint"):
        trial_checkpoint(load_sweep(made / "failing"), failed["trial"])


@pytest.mark.parametrize("damage, message", [
    (lambda d: shutil.rmtree(d), "no such directory"),
    (lambda d: (d / "results.csv").unlink(), "no results.csv"),
    (lambda d: (d / "results.csv").write_text(""), "no column trial, status"),
    (lambda d: (d / "results.csv").write_text("a,b\n1,2\n"), "no column trial, status"),
    (lambda d: (d / "results.csv").write_bytes(b"trial,status\n\xff\xfe,ok\n"),
     "not a readable CSV"),
    (lambda d: (d / "results.csv").write_text(
        (d / "results.csv").read_text().replace(",ok,", ",ok,extra,", 1)),
     "line 2: 15 fields where the header has 14"),
])
def test_a_bad_sweep_directory_is_a_data_error_naming_the_file_and_the_fix(root, damage, message):
    damage(root / "good")
    with pytest.raises(DataError, match=message) as error:
        load_sweep(root / "good")
    assert str(root / "good") in str(error.value)
    assert "spikeviz sweep" in str(error.value)  # how to make or repair one


def test_damaged_metrics_are_a_data_error_with_the_line_but_a_line_being_written_is_not(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text('{"epoch": 1, "test_accuracy": 0.5}\n{"epoch": 2, "test_acc')
    assert [entry["epoch"] for entry in read_metrics(tmp_path)] == [1]  # epoch 2 is being written
    metrics.write_text('{"epoch": 1, "test_accuracy": 0.5}\n{"epoch": 2, "test_acc\n')
    with pytest.raises(DataError, match=r"metrics.jsonl, line 2: not JSON"):
        read_metrics(tmp_path)
    metrics.write_text('[1, 2]\n')
    with pytest.raises(DataError, match="line 1: not an epoch's metrics"):
        read_metrics(tmp_path)
    with pytest.raises(DataError, match="no such folder"):
        find_sweeps(tmp_path / "nowhere")


def test_seeds_are_averaged_per_point_and_failed_trials_left_out():
    rows = [{"kappa": k, "N": n, "seed": s, "status": "ok", "acc": str(acc)}
            for k, n, s, acc in [("-0.2", "100", "0", 0.90), ("-0.2", "100", "1", 0.94),
                                 ("-0.4", "100", "0", 0.95), ("-0.4", "100", "1", 0.93),
                                 ("-0.2", "200", "0", 0.96), ("-0.4", "200", "0", 0.97)]]
    rows.append({"kappa": "-0.4", "N": "200", "seed": "1", "status": "failed", "acc": ""})
    points = aggregate(rows, "kappa", "acc", ["N"])
    assert [(p["group"], p["x"], p["n"]) for p in points] == [
        (("100",), "-0.4", 2), (("100",), "-0.2", 2), (("200",), "-0.4", 1), (("200",), "-0.2", 1)]
    assert points[0]["mean"] == pytest.approx(0.94)
    assert (points[0]["min"], points[0]["max"]) == (0.93, 0.95)
    assert best_by(rows, "kappa", "N", metric="acc") == {
        "100": ("-0.4", pytest.approx(0.94)), "200": ("-0.4", 0.97)}


def test_the_sweep_plot_averages_over_seeds(made, tmp_path):
    sweep = load_sweep(made / "good")
    axes = results_figure(sweep.rows, sweep.names, "test_accuracy").axes[0]
    (bars,) = axes.containers  # one line (kappa on x, seeds averaged), with min-max bars
    line, _, (segments,) = bars
    assert list(line.get_xdata()) == [-0.4, -0.2]
    for kappa, mean, (low, high) in zip(line.get_xdata(), line.get_ydata(),
                                        segments.get_segments()):
        values = [float(r["test_accuracy"]) for r in sweep.rows
                  if float(r["kappa_hidden"]) == kappa]
        assert mean == pytest.approx(sum(values) / len(values))
        assert (low[1], high[1]) == (pytest.approx(min(values)), pytest.approx(max(values)))
    assert axes.get_ylabel() == "test_accuracy (mean of 2 seeds, min to max)"
    # seeds on the x axis: nothing to average, one point per trial
    per_seed = results_figure(sweep.rows, ["seed", "kappa_hidden"], "test_accuracy").axes[0]
    assert len(per_seed.containers) == 2 and per_seed.get_ylabel() == "test_accuracy"
    path = tmp_path / "plot.png"
    assert plot_results(sweep.rows, sweep.names, "test_accuracy", path)
    assert path.stat().st_size > 1000
    assert (made / "good" / "test_accuracy.png").is_file()  # the sweep wrote it too


# --- the view ------------------------------------------------------------------------------------

def _elements(overlay, kind):
    return [element for element in overlay if isinstance(element, kind)]


def test_the_view_lists_the_sweeps_and_shows_table_and_plots(made):
    view = SweepView(folder=str(made))
    assert view.param.sweep.objects == [str(made / "failing"), str(made / "good")]
    view.sweep = str(made / "good")
    rows = load_sweep(made / "good").rows
    assert view.message == ""
    assert (view.x, view.lines, view.trial) == ("kappa_hidden", None, rows[0]["trial"])
    assert view.param.trial.objects == [row["trial"] for row in rows]

    table = view.table.value
    assert table["trial"].tolist() == [row["trial"] for row in rows]
    assert table["kappa_hidden"].tolist() == [-0.2, -0.2, -0.4, -0.4]  # numbers sort as numbers
    assert "run_dir" not in table and "error" in table
    assert view.table.selection == [0]

    # one line (no second setting), each point the mean over the two seeds, bars to min and max
    plot = view.metric_plot()
    (curve,), (bars,) = _elements(plot, hv.Curve), _elements(plot, hv.ErrorBars)
    for kappa, mean, below, above in zip(*(bars.dimension_values(d) for d in range(4))):
        values = [float(r["test_accuracy"]) for r in rows if float(r["kappa_hidden"]) == kappa]
        assert mean == pytest.approx(sum(values) / 2)
        assert (mean - below, mean + above) == (pytest.approx(min(values)),
                                                pytest.approx(max(values)))
    assert list(curve.dimension_values(0)) == [-0.4, -0.2]
    assert plot.opts.get().kwargs["ylabel"] == "test_accuracy: mean of 2, min to max"

    # the widgets show the choices the view made for this sweep
    selects = {select.label: select for select in view.__panel__().select(pn.widgets.Select)}
    assert (selects["x axis"].value, selects["one line per"].value) == ("kappa_hidden", None)
    assert list(selects["Trial"].values) == view.param.trial.objects
    assert selects["Trial"].value == view.trial

    view.lines = "seed"  # one line per seed: the single trials again
    assert len(_elements(view.metric_plot(), hv.Curve)) == 2
    view.param.update(x="seed", lines="kappa_hidden")  # two changes at once
    assert view.message == "" and len(_elements(view._plot_pane.object, hv.Curve)) == 2
    view.metric = "train_accuracy"
    assert "train_accuracy" in view._plot_pane.object.opts.get().kwargs["title"]

    history = read_metrics(made / "good" / "trials" / view.trial)
    test_curve = _elements(view.learning_curve(), hv.Curve)[0]
    assert list(test_curve.dimension_values(1)) == [history[0]["test_accuracy"]]
    # the whole view renders into Bokeh models without a server
    root = pn.panel(view).get_root()
    assert any(type(model).__name__ == "DataTabulator" for model in root.references())


def test_a_row_clicked_in_the_table_is_the_trial_and_open_hands_its_checkpoint_over(made):
    opened = []
    view = SweepView(folder=str(made / "good"), on_open=opened.append)
    assert not view._open_button.disabled
    view.table.selection = [2]  # what a click on the third row sends
    chosen = view.table.value["trial"][2]
    assert view.trial == chosen
    assert "learning curve: " + chosen in view._curve_pane.object.opts.get().kwargs["title"]
    view.open_trial()
    assert opened == [str(made / "good" / "trials" / chosen / "last.npz")]
    assert view.message.startswith("loading")
    view.trial = view.param.trial.objects[1]  # the list chooses the row too
    assert view.table.selection == [1]


def test_open_in_the_trainer_loads_the_trial_into_the_training_app(made):
    app = TrainingApp(config=Config(hidden=[30]), data=load_mnist(bundled=True), eval_samples=20)
    try:
        view = SweepView(folder=str(made / "good"), on_open=app.load)
        view.trial = next(t for t in view.param.trial.objects if "kappa_hidden=-0.4_seed=1" in t)
        view.open_trial()
        assert app.message.startswith("loaded") and "kappa_hidden=-0.4_seed=1" in app.message
        assert app.trainer.network.sizes == (784, 20, 10)
        assert (app.config.kappa_hidden, app.config.seed) == (-0.4, 1)
        assert app.trainer.epoch == 1  # the trial's one epoch is done: the next one is shown
    finally:
        app.close(timeout=5)


def test_failed_trials_show_their_error(made):
    view = SweepView(folder=str(made / "failing"), on_open=lambda path: None)
    assert "1 of 1 trials failed" in view.message
    assert view.table.value["status"].tolist() == ["failed"]
    assert "DivergenceError" in view.table.value["error"][0]
    assert "no finished trial" in view.metric_plot().opts.get().kwargs["title"]
    view.open_trial()  # no checkpoint: a message, no call
    assert "no checkpoint" in view.message


def test_bad_folders_and_sweeps_are_messages_and_the_view_stays_usable(root):
    opened = []
    view = SweepView(folder=str(root / "nowhere"), on_open=opened.append)
    assert "no such folder" in view.message and view.data is None
    assert view._open_button.disabled and view.table.value.empty
    view.open_trial()
    assert "choose a trial first" in view.message and not opened

    (root / "empty").mkdir()
    view.folder = str(root / "empty")
    assert "no sweep here" in view.message

    (root / "good" / "results.csv").write_text("a,b\n1,2\n")  # damaged
    view.folder = str(root)
    view.sweep = str(root / "good")
    assert "results.csv: no column trial, status" in view.message
    assert view.table.value.empty and view.trial is None

    view.sweep = str(root / "failing")  # another sweep still opens
    assert view.data is not None and "failed" in view.message

    (root / "good" / "results.csv").write_text(
        (root / "failing" / "results.csv").read_text())  # repaired (a restart rewrites it)
    shutil.copytree(root / "failing" / "trials", root / "good" / "trials", dirs_exist_ok=True)
    view.refresh()
    assert view.data.directory == root / "failing"  # refresh keeps the sweep shown


def test_a_good_folder_after_a_bad_one_shows_its_sweep_again(made):
    view = SweepView(folder=str(made / "good"))
    view.folder = str(made / "nowhere")
    assert "no such folder" in view.message and view.table.value.empty
    view.folder = str(made / "good")
    assert view.message == "" and len(view.table.value) == 4
    assert view.trial == view.param.trial.objects[0] and view.table.selection == [0]


def test_a_missing_checkpoint_or_damaged_metrics_is_a_message(root):
    opened = []
    view = SweepView(folder=str(root / "good"), on_open=opened.append)
    trial = view.trial
    (root / "good" / "trials" / trial / "last.npz").unlink()
    view.open_trial()
    assert "no checkpoint" in view.message and str(root / "good") in view.message
    assert not opened

    (root / "good" / "trials" / trial / "metrics.jsonl").write_text("{oops\n")
    view.trial = view.param.trial.objects[1]
    view.trial = trial
    assert "metrics.jsonl, line 1: not JSON" in view.message
    assert view._curve_pane.object.opts.get().kwargs["title"] == "no trial chosen"


def test_table_columns_are_numbers_where_every_cell_is_one():
    rows = [{"trial": "a", "hidden": "300+300", "kappa": "-0.2", "acc": "0.9", "error": "",
             "run_dir": "x"},
            {"trial": "b", "hidden": "100", "kappa": "-0.4", "acc": "", "error": "E: boom",
             "run_dir": "y"}]
    columns = table_columns(rows)
    assert columns["hidden"] == ["300+300", "100"] and columns["kappa"] == [-0.2, -0.4]
    assert columns["acc"][0] == 0.9 and math.isnan(columns["acc"][1])
    assert columns["error"] == ["", "E: boom"] and "run_dir" not in columns
    assert json.dumps(table_columns([])) == "{}"
