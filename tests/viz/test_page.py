"""The served page: training, neuron lab and sweeps tabs on one run."""

import numpy as np
import pytest

from spikeviz.config import Config
from spikeviz.data import load_mnist
from spikeviz.train.trainer import Trainer
from spikeviz.viz.app import TrainingApp
from spikeviz.viz.lab import NeuronLab
from spikeviz.viz.page import LAB, SWEEPS, TRAIN, app_page, open_in_trainer


@pytest.fixture(scope="module")
def digits():
    return load_mnist(bundled=True)


def test_the_page_has_the_three_tabs_on_one_run(digits, tmp_path):
    app = TrainingApp(config=Config(hidden=[30]), data=digits)
    neuron_lab = NeuronLab(training_app=app)
    page = app_page(app, neuron_lab, sweep_folder=tmp_path)
    assert list(page._names) == [TRAIN, LAB, SWEEPS]
    assert neuron_lab.training_app is app
    app.close(timeout=5)


def test_opening_a_trial_loads_it_into_the_run_and_shows_the_train_tab(digits, tmp_path):
    saved = Trainer(Config(hidden=[30], train_samples=20, seed=3), digits)
    saved.train_epoch()
    saved.save(tmp_path / "last.npz")
    app = TrainingApp(config=Config(hidden=[30]), data=digits)
    page = app_page(app, sweep_folder=tmp_path)
    page.active = 2
    before = app.trainer.network.weights[0].copy()

    open_in_trainer(app, page, str(tmp_path / "last.npz"))

    assert page.active == 0
    loaded = app.trainer.network.weights[0] * app.trainer.sim.state.scale[:30]
    expected = saved.network.weights[0] * saved.sim.state.scale[:30]
    np.testing.assert_allclose(loaded, expected, rtol=1e-6)
    assert not np.allclose(loaded, before)
    app.close(timeout=5)
