"""Views of a training run: pure plot functions (:mod:`spikeviz.viz.plots`) and the Panel app
(:mod:`spikeviz.viz.app`).  The only package that imports Panel or Bokeh."""
