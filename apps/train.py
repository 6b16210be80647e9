"""The live training app and the neuron lab: ``panel serve apps/train.py`` (add ``--show`` to open
a browser).

Every browser session gets its own run (see :mod:`spikeviz.viz.app`) and its own lab, whose
"training run" network is a snapshot of that run (see :mod:`spikeviz.viz.lab`).  Works offline:
the bundled MNIST subset is the default data set and Panel serves its JavaScript from
``/static``.
"""

import panel as pn

from spikeviz.viz.app import TrainingApp
from spikeviz.viz.lab import train_and_lab

pn.extension()

if pn.state.served:
    app = TrainingApp()
    app.attach_session()
    train_and_lab(app).servable(title="spikeviz: watch a spiking network learn")
