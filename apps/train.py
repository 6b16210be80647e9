"""The live training app, the neuron lab and finished sweeps: ``panel serve apps/train.py``
(add ``--show`` to open a browser).

Every browser session gets its own run (see :mod:`spikeviz.viz.app`), its own lab, whose
"training run" network is a snapshot of that run (see :mod:`spikeviz.viz.lab`), and a view of
the sweeps under ``runs/`` (see :mod:`spikeviz.viz.sweep_view`).  Works offline: the bundled
MNIST subset is the default data set and Panel serves its JavaScript from ``/static``.
"""

import panel as pn

from spikeviz.viz.app import TrainingApp
from spikeviz.viz.page import app_page

pn.extension("tabulator")

if pn.state.served:
    app = TrainingApp()
    app.attach_session()
    app_page(app).servable(title="spikeviz: watch a spiking network learn")
