"""The page that ``panel serve apps/train.py`` serves to each browser session.

Three tabs on one training run: the run itself, the neuron lab (on a snapshot of the run's
network) and the results of finished sweeps, whose "Open in the trainer" loads a trial's
checkpoint into the run and brings its tab to the front.
"""

import functools

import panel as pn

from spikeviz.viz.lab import NeuronLab
from spikeviz.viz.sweep_view import SweepView

TRAIN, LAB, SWEEPS = "Train", "Neuron lab", "Sweeps"


def app_page(app, neuron_lab=None, sweep_folder="runs"):
    """Tabs for ``app`` (a :class:`~spikeviz.viz.app.TrainingApp`); ``sweep_folder`` is where
    the Sweeps tab looks for ``spikeviz sweep`` output first."""
    page = pn.Tabs(dynamic=False)
    neuron_lab = neuron_lab or NeuronLab(training_app=app)
    sweeps = SweepView(folder=str(sweep_folder),
                       on_open=functools.partial(open_in_trainer, app, page))
    page.extend([(TRAIN, app), (LAB, neuron_lab), (SWEEPS, sweeps)])
    return page


def open_in_trainer(app, page, path):
    """Load a trial's checkpoint into the run and bring the Train tab to the front."""
    app.load(path)
    page.active = 0
