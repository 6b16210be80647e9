"""The training app driven without a server: steps, view updates, mid-run settings, checkpoints,
faults, and its worker thread."""

import runpy
import threading
import time
from pathlib import Path

import numpy as np
import param
import pytest

from spikeviz.config import Config
from spikeviz.data import load_mnist
from spikeviz.errors import ConfigError
from spikeviz.train.trainer import DivergenceError
from spikeviz.viz import app as app_module
from spikeviz.viz.app import ACCURACY_POINTS, NMNIST_DIR, TrainingApp, live_workers

APP_SCRIPT = Path(__file__).parents[2] / "apps" / "train.py"


@pytest.fixture(scope="module")
def digits():
    return load_mnist(bundled=True)


@pytest.fixture
def app(digits):
    app = TrainingApp(config=Config(hidden=[100], test_duration_ms=100.0), data=digits,
                      eval_samples=50)
    yield app
    app.close(timeout=5)


def wait_for(condition, timeout_s=10.0):
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_steps_fill_the_raster_and_the_accuracy_curve(app):
    app.step(20)
    app.drain()
    raster = app.sources["raster"].data
    assert len(raster["t"]) > 0
    layers = set(np.asarray(raster["layer"]).tolist())
    assert 0 in layers and 1 in layers  # input events and hidden spikes of the last sample
    assert np.all((np.asarray(raster["t"]) >= 0) & (np.asarray(raster["t"]) <= 50.0))
    accuracy = app.sources["accuracy"].data
    assert list(accuracy["sample"]) == list(range(1, 21))  # under its cap: every sample
    assert 0.0 <= accuracy["train_accuracy"][-1] <= 1.0
    assert len(app.sources["potentials"].data["xs"]) == 4 + 10  # 4 hidden, 10 outputs
    assert len(app.sources["thresholds"].data["top"]) > 0
    assert len(app.sources["receptive_fields"].data["image"]) == 1
    assert app.sources["firing"].data["layer"] == ["hidden", "output"]
    assert "sample 20 / 5,000" in app._status.object
    assert app._figures["raster"].title.text.startswith("sample 20: label ")
    app.drain()  # nothing new: the curve does not grow
    assert len(app.sources["accuracy"].data["sample"]) == len(accuracy["sample"])


def test_kappa_changed_mid_run_applies_at_the_next_sample_and_is_marked(app):
    app.step(5)
    before = app.config.kappa_hidden
    assert app.trainer.kappas[0] == pytest.approx(before) and before != -0.8
    app.config.kappa_hidden = -0.8
    app.step(1)
    assert app.trainer.kappas[0] == pytest.approx(-0.8)
    app.drain()
    markers = app.sources["markers"].data
    assert list(markers["text"]) == [f"kappa_hidden {before:g} -> -0.8"]
    assert list(markers["sample"]) == [5]


def test_alpha_rescales_the_running_thresholds_and_their_floors(app):
    app.step(3)
    thresholds = [t.copy() for t in app.trainer.network.thresholds]
    floors = app.trainer.network.threshold_floors.copy()
    app.config.alpha = 4.5  # from 3: nobody is training, so it applies at once
    for now, before in zip(app.trainer.network.thresholds, thresholds):
        np.testing.assert_allclose(now, before * 1.5, rtol=1e-6)
    np.testing.assert_allclose(app.trainer.network.threshold_floors, floors * 1.5, rtol=1e-6)
    app.drain()
    assert list(app.sources["markers"].data["text"]) == ["alpha 3 -> 4.5"]


def test_alpha_changed_during_a_sample_waits_for_the_sample_boundary(app):
    app.step(1)
    before = app.trainer.network.thresholds[0].copy()
    app._lock.acquire()  # as the worker does while it trains a sample
    try:
        changer = threading.Thread(target=lambda: setattr(app.config, "alpha", 6.0))
        changer.start()
        changer.join()
        np.testing.assert_array_equal(app.trainer.network.thresholds[0], before)
    finally:
        app._lock.release()
    app.step(1)  # the boundary: rescaled by 2, then one sample of small updates
    np.testing.assert_allclose(app.trainer.network.thresholds[0], before * 2, rtol=0.05)


def test_evaluate_now_updates_the_test_curve_and_the_confusion_matrix(app):
    app.step(10)
    app.evaluate_now()
    app.drain()
    tests = app.sources["test_accuracy"].data
    assert list(tests["sample"]) == [10]
    assert 0.0 <= tests["test_accuracy"][0] <= 1.0
    confusion = app.sources["confusion"].data
    assert len(confusion["count"]) == 110 and sum(confusion["count"]) == 50
    assert "of 50 test digits" in app._figures["confusion"].title.text


def test_save_then_load_restores_the_network(app, tmp_path):
    app.step(10)
    path = tmp_path / "run.npz"
    app.save(path)
    saved = app.trainer.sim.state.weights.copy(), app.trainer.sim.state.thresholds.copy()
    app.config.kappa_output = -0.5  # changed after saving: Load brings the saved value back
    app.step(10)
    assert not np.array_equal(app.trainer.sim.state.weights, saved[0])
    app.load(path)
    np.testing.assert_array_equal(app.trainer.sim.state.weights, saved[0])
    np.testing.assert_array_equal(app.trainer.sim.state.thresholds, saved[1])
    assert app.trainer.position == 10 and app.config.kappa_output == -1.0
    assert app.trainer.config is app.config  # the widgets still drive the running trainer
    app.config.kappa_hidden = -0.6
    app.step(1)
    assert app.trainer.kappas[0] == pytest.approx(-0.6)
    assert "loaded" in app.message


def test_a_bad_checkpoint_is_refused_and_the_app_stays_usable(app, tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a checkpoint")
    app.step(2)
    with pytest.raises(ConfigError, match="unreadable"):
        app.load(bad)
    app._do(lambda: app._load(bad), guarded=True)  # what the Load button does
    app.drain()
    assert app._alert.visible and app._alert.alert_type == "danger"
    assert "unreadable" in app._alert.object
    app.step(1)
    assert app.trainer.position == 3


def test_reset_starts_a_new_run_with_the_next_run_settings(app):
    app.step(5)
    app.config.kappa_hidden = -0.6
    app.drain()
    app.param.update(hidden="30, 20", optimizer="sgd")
    app.reset()
    assert app.trainer.network.sizes == (784, 30, 20, 10)
    assert app.trainer.position == 0 and app.config.optimizer == "sgd"
    assert app.config.eta_w == pytest.approx(0.002)  # followed the optimizer's default
    assert app.config.kappa_hidden == -0.6  # live settings carry over
    app.drain()  # a new run: the curves start empty, the raster has a band per layer
    assert len(app.sources["accuracy"].data["sample"]) == 0
    assert len(app.sources["markers"].data["sample"]) == 0
    raster = app._figures["raster"]
    assert raster.y_range.end == 4 and raster.yaxis[0].major_label_overrides[2.5] == (
        "hidden 2 (20)")
    app.step(2)
    app.drain()
    assert app.sources["accuracy"].data["sample"][-1] == 2
    assert set(np.asarray(app.sources["raster"].data["layer"]).tolist()) <= {0, 1, 2, 3}
    assert app.sources["firing"].data["layer"] == ["hidden 1", "hidden 2", "output"]


def test_the_worker_trains_takes_settings_pauses_and_stops(app):
    app.start()
    wait_for(lambda: app._sample_count > 50)
    app.config.kappa_hidden = -0.7
    wait_for(lambda: app.trainer.kappas[0] == pytest.approx(-0.7))
    app.drain()
    assert "running" in app._status.object
    assert len(app.sources["raster"].data["t"]) > 0
    app.pause()
    wait_for(lambda: not app._worker.running)
    time.sleep(0.1)  # the current slice ends
    count = app._sample_count
    time.sleep(0.2)
    assert app._sample_count == count
    worker = app._worker
    assert live_workers() >= 1
    app.close(timeout=5)
    assert not worker.is_alive()


def test_a_diverging_run_pauses_itself_and_says_why(app):
    app.step(1)

    def diverge():
        raise DivergenceError("layer 0 has NaN or infinite weights: lower eta_w")

    app.trainer.train_sample = diverge
    app.start()
    wait_for(lambda: not app.running)
    app.drain()
    assert app._alert.visible and app._alert.alert_type == "danger"
    assert "lower eta_w" in app._alert.object and "paused" in app._alert.object
    assert "paused" in app._status.object


def test_the_served_app_module_imports_without_serving():
    namespace = runpy.run_path(str(APP_SCRIPT))
    assert namespace["TrainingApp"] is TrainingApp
    assert "app" not in namespace  # built only under `panel serve`


def test_the_accuracy_curve_keeps_a_bounded_number_of_points_over_a_long_run(app):
    app.step(1)
    metrics = app.record.metrics
    for start in range(2, 60_002, 20_000):  # as the metrics of an hour arrive, drained
        sample = np.arange(start, start + 20_000)
        metrics.append(sample=sample, epoch=np.zeros_like(sample), correct=sample % 2,
                       loss=np.ones(sample.size), train_accuracy=np.full(sample.size, 0.5),
                       mean_loss=np.ones(sample.size))
        app.drain()
    curve = np.asarray(app.sources["accuracy"].data["sample"])
    assert len(curve) <= ACCURACY_POINTS + 1
    assert curve[0] == 1 and curve[-1] == 60_001  # the whole run, up to the newest sample
    assert np.all(np.diff(curve) > 0)
    assert np.ptp(np.diff(curve[:-1])) == 0  # evenly spaced


def served_tab_acknowledges(app, seq):
    app._ack.tags = [seq]  # what the page does once it has drawn update ``seq``


def test_a_tab_that_has_not_drawn_the_last_update_gets_no_new_one(app):
    app.step(2)
    app._periodic_drain()
    first = app._figures["raster"].title.text
    assert first.startswith("sample 2:")
    served_tab_acknowledges(app, app._update_seq)
    app.step(2)
    app._periodic_drain()  # acknowledged: the tab gets sample 4
    assert app._figures["raster"].title.text.startswith("sample 4:")
    for _ in range(5):  # the tab is behind: the server keeps the newest state, sends nothing
        app.step(1)
        app._periodic_drain()
    assert app._figures["raster"].title.text.startswith("sample 4:")
    assert app.skipped_updates == 5
    served_tab_acknowledges(app, app._update_seq)
    app._periodic_drain()  # caught up: straight to the newest sample, not the backlog
    assert app._figures["raster"].title.text.startswith("sample 9:")
    assert app.skipped_updates == 5


def test_a_tab_that_never_drew_its_first_update_is_not_flooded(app):
    """A background tab (no animation frames) or a page still loading acknowledges nothing: it
    gets one update, then a resend only after the acknowledgement timeout."""
    app.step(2)
    app._periodic_drain()
    assert app._update_seq == 1
    for _ in range(5):
        app.step(1)
        app._periodic_drain()
    assert app._update_seq == 1 and app.skipped_updates == 5
    assert app._figures["raster"].title.text.startswith("sample 2:")


def test_nothing_is_sent_while_nothing_changes(app):
    app.step(2)
    app._periodic_drain()  # the first update is a full one
    served_tab_acknowledges(app, app._update_seq)
    sent = app._update_seq
    for _ in range(5):
        app._periodic_drain()
    assert app._update_seq == sent
    app.step(1)
    app._periodic_drain()
    assert app._update_seq == sent + 1


def test_a_silent_tab_is_retried_less_and_less_often(app, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(app_module.time, "monotonic", lambda: clock[0])
    app.step(1)
    app._periodic_drain()
    served_tab_acknowledges(app, app._update_seq)
    sent = []
    for _ in range(int(200 / 0.2)):  # 200 s of periodic callbacks, nothing acknowledged
        clock[0] += 0.2
        app.record.metrics.append(sample=0, epoch=0, correct=0, loss=1.0, train_accuracy=0.0,
                                  mean_loss=1.0)  # something new to send
        before = app._update_seq
        app._periodic_drain()
        if app._update_seq > before:
            sent.append(clock[0] - 1000.0)
    gaps = np.diff([0.0, *sent])
    assert len(sent) <= 8  # 2 + 4 + 8 + 16 + 32 + 60 + 60 ... seconds apart
    assert np.all(np.diff(gaps) >= -1e-9) and gaps.max() <= app_module.ACK_TIMEOUT_MAX_S + 0.3


def test_reset_asks_for_a_confirmation_first(app):
    app.step(3)
    app.param.update(hidden="20", seed=4)
    app.ask_reset()
    assert app._confirm_reset.visible
    assert "20 hidden" in app._confirm_reset[0].object and "seed 4" in app._confirm_reset[0].object
    app.cancel_reset()
    assert not app._confirm_reset.visible and app.trainer.position == 3
    app.ask_reset()
    app.confirm_reset()
    assert not app._confirm_reset.visible
    assert app.trainer.network.sizes == (784, 20, 10) and app.trainer.position == 0


def test_every_hidden_layer_has_a_live_wta_slider(app):
    app.param.update(hidden="30, 20, 10")
    app.reset()
    app.drain()  # the views of the new run: one slider per deeper hidden layer
    sliders = app._deeper_kappas.objects
    assert [s.label for s in sliders] == ["kappa hidden 2 (WTA)", "kappa hidden 3 (WTA)"]
    app.step(2)
    assert list(app.trainer.kappas[1:3]) == [0.0, 0.0]
    with param.edit_constant(sliders[1]):  # as the page does on release, mid-run
        sliders[1].param.update(value=-0.3, value_throttled=-0.3)  # applied at the next sample
    app.step(1)
    assert app.trainer.kappas[1:3] == pytest.approx([0.0, -0.3])
    assert app.config.kappa_deeper == pytest.approx([0.0, -0.3])
    app.drain()
    assert list(app.sources["markers"].data["text"]) == ["kappa_deeper [] -> [0, -0.3]"]


def test_eta_th_changes_mid_run(app):
    assert app.config.eta_th == pytest.approx(0.001)  # ADAM's default, shown as a number
    app.step(2)
    assert app.trainer.hyper.eta_th == pytest.approx(0.001)
    app.config.eta_th = 0.0  # thresholds stop learning from the next sample on
    app.step(1)
    assert app.trainer.hyper.eta_th == 0.0
    app.drain()
    assert list(app.sources["markers"].data["text"]) == ["eta_th 0.001 -> 0"]


def test_n_mnist_without_a_directory_is_emulated(app):
    app.config.param.update(train_samples=12, test_samples=6)
    app.param.update(dataset=NMNIST_DIR, data_dir="")
    app.reset()
    assert app.data.origin.startswith("emulated")
    assert app.trainer.n_inputs == 2 * 34 * 34 and app.trainer.n_train == 12
    assert app.config.dataset == "nmnist"
    app.step(2)
    app.evaluate_now(6)
    app.drain()
    assert app._figures["raster"].title.text.startswith("sample 2:")
    assert len(app.sources["receptive_fields"].data["image"]) == 1
    assert list(app.sources["test_accuracy"].data["sample"]) == [2]
