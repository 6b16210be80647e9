"""The live training app: ``panel serve apps/train.py`` (add ``--show`` to open a browser).

Every browser session gets its own run (see :mod:`spikeviz.viz.app`).  Works offline: the
bundled MNIST subset is the default data set and Panel serves its JavaScript from ``/static``.
"""

import panel as pn

from spikeviz.viz.app import TrainingApp

pn.extension()

if pn.state.served:
    app = TrainingApp()
    app.attach_session()
    app.servable(title="spikeviz: watch a spiking network learn")
