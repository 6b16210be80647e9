"""Browse finished sweeps: the table, the metric against the swept settings, a trial's learning
curve, and "Open in the trainer" for any trial's checkpoint.

:class:`SweepView` reads what ``spikeviz sweep`` wrote (``results.csv``, each trial's
``metrics.jsonl`` and ``last.npz``; the reading is in :mod:`spikeviz.sweep`, with no Panel) and
shows it; it trains nothing.  In the app, its ``on_open`` callback is the training app's
``load``::

    app = TrainingApp()
    sweeps = SweepView(on_open=app.load)
    pn.Tabs(("Train", app), ("Sweeps", sweeps))

A bad directory (no ``results.csv``, a damaged table, a trial without a checkpoint) is a message
in the view saying what to fix; the rest of the view stays usable.  A sweep still running is
shown as far as it got (Refresh reads it again).

The table is a Panel ``Tabulator`` (sortable by a click on a header; a Bokeh ``DataTable``
raised JavaScript errors when it sat in a hidden tab next to the trainer); the plots are
HoloViews.
"""

import contextlib
import logging
import math

import holoviews as hv
import holoviews.plotting.bokeh  # noqa: F401 - registers the Bokeh backend that .opts() needs
import pandas as pd
import panel as pn
import param
from bokeh.models import HTMLTemplateFormatter, NumberFormatter, StringFormatter

from spikeviz import sweep as sweeps
from spikeviz.errors import SpikevizError

__all__ = ["SweepView"]

_log = logging.getLogger("spikeviz.sweep_view")

#: Table columns that are bookkeeping, not results (the run directory is the trial's name).
HIDDEN_COLUMNS = ("run_dir", "reused")
PLOT_SIZE = {"width": 520, "height": 340}
TABLE_WIDTH = 1060
#: The status cell: red for a failed trial (its error is in the last column).
_STATUS_TEMPLATE = ('<span style="font-weight: bold; color: '
                    "<%= value == 'ok' ? '#1a7f37' : '#b00020' %>\"><%= value %></span>")


def table_columns(rows):
    """``{column: values}`` of the table: floats where every filled cell of a column is a
    number (so that it sorts by value; an empty cell is NaN), the text elsewhere."""
    names = [name for name in (rows[0] if rows else {}) if name not in HIDDEN_COLUMNS]
    columns = {}
    for name in names:
        texts = [row[name] for row in rows]
        columns[name] = texts
        if any(text != "" for text in texts):
            with contextlib.suppress(ValueError):
                columns[name] = [float(text) if text != "" else math.nan for text in texts]
    return columns


def _formatter(name, values):
    if name == "status":
        return HTMLTemplateFormatter(template=_STATUS_TEMPLATE)
    if name == "error":
        return StringFormatter(text_color="#b00020")
    if values and isinstance(values[0], float):
        return NumberFormatter(format="0.00%" if "accuracy" in name else "0.[0000]")
    return StringFormatter()


def _axis_values(texts):
    """Numbers for a numeric axis, else the texts (a categorical axis)."""
    try:
        return [float(text) for text in texts]
    except ValueError:
        return list(texts)


def _empty_plot(title, x="epoch", y="accuracy"):
    return hv.Curve([], x, y).opts(title=title, **PLOT_SIZE)


class SweepView(pn.viewable.Viewer):
    """The results of finished sweeps, and a door from any trial into the trainer.

    Parameters
    ----------
    on_open : callable, optional
        Called with the path (str) of a trial's ``last.npz`` by "Open in the trainer"; in the
        app, ``TrainingApp.load``.  Without it the button is disabled.
    """

    folder = param.String(default="runs", doc="a sweep directory (the --out of spikeviz sweep), "
                          "or a folder holding sweep directories up to two levels down")
    sweep = param.Selector(default=None, objects=[], doc="the sweep directory shown")
    metric = param.Selector(default="test_accuracy", objects=list(sweeps.METRICS),
                            doc="the result plotted")
    x = param.Selector(default=None, objects=[], doc="the swept setting on the x axis")
    lines = param.Selector(default=None, objects=[],
                           doc="one line per value of this swept setting (None: one line)")
    trial = param.Selector(default=None, objects=[],
                           doc="the trial whose learning curve is shown, opened by the button")

    def __init__(self, on_open=None, **params):
        super().__init__(**params)
        self.on_open = on_open
        self.data = None  # the spikeviz.sweep.Sweep shown
        self.message = ""  # the last notice, for tests and notebooks
        self._build_widgets()
        self._quiet = False  # set while the view sets its own choices: one redraw, after
        self.param.watch(lambda event: self.refresh(), "folder")
        self.param.watch(self._unless_quiet(self._load), "sweep")
        self.param.watch(self._unless_quiet(self._replot), ["metric", "x", "lines"])
        self.param.watch(self._unless_quiet(self._show_trial), "trial")
        self.table.param.watch(self._on_select, "selection")
        self.refresh()

    # --- actions ---

    def refresh(self):
        """Look for sweeps in ``folder`` again and reread the one shown (a running sweep grows)."""
        with self._reporting():
            self._notice("")
            found = self._find()
            self.param.sweep.objects = found
            if self.sweep in found:
                self._load()
            else:
                self.sweep = found[0]  # the watcher loads it

    def open_trial(self):
        """Hand the chosen trial's checkpoint to ``on_open`` (the trainer loads it)."""
        with self._reporting():
            if self.on_open is None:
                raise SpikevizError("this view has no trainer to open a trial in")
            if self.data is None or self.trial is None:
                raise SpikevizError("choose a trial first (a row of the table)")
            path = sweeps.trial_checkpoint(self.data, self.trial)
            self.on_open(str(path))
            self._notice(f"loading {path} in the trainer (the Train tab shows the outcome)",
                         "success")

    # --- reading and showing ---

    @contextlib.contextmanager
    def _reporting(self):
        """Any fault becomes the view's message: the page never freezes on a bad directory."""
        try:
            yield
        except (SpikevizError, OSError) as error:
            self._notice(str(error), "danger")
        except Exception as error:  # noqa: BLE001 - an unforeseen fault must reach the page too
            _log.exception("sweep view")
            self._notice(f"{type(error).__name__}: {error}", "danger")

    def _notice(self, text, kind="info"):
        self.message = text
        self._alert.param.update(object=text, alert_type=kind, visible=bool(text))

    def _find(self):
        """The sweeps in ``folder``; an error (and an empty view) if there is none."""
        try:
            found = [str(path) for path in sweeps.find_sweeps(self.folder)]
            if not found:
                raise SpikevizError(f"{self.folder}: no sweep here or up to two levels down (a "
                                    f"sweep directory holds {sweeps.RESULTS_FILE}; make one with "
                                    "`spikeviz sweep --out DIR`)")
        except (SpikevizError, OSError):
            self._clear()
            raise
        return found

    def _unless_quiet(self, action):
        """A watcher running ``action``, except while the view sets its own choices (the
        widgets still follow every change)."""
        return lambda *events: None if self._quiet else action()

    def _set_choices(self, objects, **values):
        """Set the view's own choices (``objects``: ``{name: options}``) and values without a
        redraw per change; the widgets follow (a widget whose value left its options picks
        another, which would redraw too)."""
        self._quiet = True
        try:
            for name, options in objects.items():
                self.param[name].objects = options
            self.param.update(**values)
        finally:
            self._quiet = False

    def _clear(self):
        self._set_choices({"sweep": []}, sweep=None)
        self._show(None)

    def _load(self):
        with self._reporting():
            self._notice("")
            self._show(None)
            if self.sweep is not None:
                self._show(sweeps.load_sweep(self.sweep))
                failed = sum(row["status"] != "ok" for row in self.data.rows)
                if failed:
                    self._notice(f"{failed} of {len(self.data.rows)} trials failed: their error "
                                 "is in the last column of the table", "warning")

    def _show(self, data):
        """Show a sweep (None: nothing); the axis, line and trial choices are kept where they
        still exist."""
        self.data = data
        names = data.names if data is not None else []
        rows = data.rows if data is not None else []
        metrics = [m for m in sweeps.METRICS if rows and m in rows[0]] or list(sweeps.METRICS)
        trials = [row["trial"] for row in rows]
        x_name, others = sweeps.plot_groups(names) if names else (None, [])
        x = self.x if self.x in names else x_name
        lines = self.lines if self.lines in names and self.lines != x else next(iter(others),
                                                                                None)
        columns = table_columns(rows)
        self.table.formatters = {name: _formatter(name, values) for name, values in columns.items()}
        self.table.value = pd.DataFrame(columns)
        self._set_choices(  # one redraw below, not one per change
            {"metric": metrics, "x": names, "lines": [None, *names], "trial": trials},
            x=x, lines=lines, metric=self.metric if self.metric in metrics else metrics[0],
            trial=self.trial if self.trial in trials else next(iter(trials), None))
        self._replot()
        self._show_trial()

    def _on_select(self, event):
        """A row clicked in the table (its index in the data, however the table is sorted)."""
        if event.new and self.data is not None:
            self.trial = self.data.rows[event.new[0]]["trial"]

    def _replot(self):
        with self._reporting():
            self._plot_pane.object = self.metric_plot()

    def _show_trial(self):
        trials = [row["trial"] for row in self.data.rows] if self.data is not None else []
        self.table.selection = [trials.index(self.trial)] if self.trial in trials else []
        self._open_button.disabled = self.on_open is None or self.trial is None
        self._curve_pane.object = _empty_plot("no trial chosen")  # stays if the metrics are bad
        with self._reporting():
            self._curve_pane.object = self.learning_curve()

    # --- plots (HoloViews; also callable in a notebook) ---

    def metric_plot(self):
        """``metric`` against ``x``, one line per value of ``lines``; other swept settings (the
        seeds) averaged: the mean, with bars from the lowest to the highest value."""
        if self.data is None or self.x is None:
            return _empty_plot("no sweep", "setting", self.metric)
        groups = [self.lines] if self.lines else []
        points = sweeps.aggregate(self.data.rows, self.x, self.metric, groups)
        layers = []
        for group in dict.fromkeys(point["group"] for point in points):
            members = [point for point in points if point["group"] == group]
            xs = _axis_values([point["x"] for point in members])
            means = [point["mean"] for point in members]
            below = [mean - point["min"] for mean, point in zip(means, members)]
            above = [point["max"] - mean for mean, point in zip(means, members)]
            label = f"{self.lines}={group[0]}" if group else self.metric
            layers += [
                hv.Curve((xs, means), self.x, self.metric, label=label).opts(tools=["hover"]),
                hv.ErrorBars((xs, means, below, above), self.x, [self.metric, "below", "above"],
                             label=label),
                hv.Scatter((xs, means), self.x, self.metric, label=label).opts(size=6),
            ]
        title = f"{self.metric} against {self.x}"
        repeats = max((point["n"] for point in points), default=0)
        y_label = f"{self.metric}: mean of {repeats}, min to max" if repeats > 1 else self.metric
        if not layers:
            return _empty_plot(title + ": no finished trial", self.x, self.metric)
        return hv.Overlay(layers).opts(title=title, ylabel=y_label, legend_position="top_left",
                                       padding=0.05, **PLOT_SIZE)

    def learning_curve(self):
        """Test and train accuracy per epoch of the chosen trial."""
        if self.data is None or self.trial is None:
            return _empty_plot("no trial chosen")
        history = sweeps.read_metrics(sweeps.trial_dir(self.data, self.trial))
        if not history:
            return _empty_plot(f"{self.trial}: no finished epoch")
        epochs = [entry["epoch"] for entry in history]
        layers = []
        for column, label in (("test_accuracy", "test"), ("train_accuracy", "train")):
            values = [entry.get(column, math.nan) for entry in history]
            layers += [hv.Curve((epochs, values), "epoch", "accuracy", label=label)
                       .opts(tools=["hover"]),
                       hv.Scatter((epochs, values), "epoch", "accuracy", label=label)
                       .opts(size=6)]
        return hv.Overlay(layers).opts(title=f"learning curve: {self.trial}",
                                       legend_position="bottom_right", **PLOT_SIZE)

    # --- layout ---

    def _build_widgets(self):
        widgets = pn.widgets
        self._alert = pn.pane.Alert("", alert_type="info", visible=False, width=TABLE_WIDTH,
                                    css_classes=["sweep-message"])
        self.table = widgets.Tabulator(pd.DataFrame(), disabled=True, selectable=1,
                                       show_index=False, pagination=None, height=300,
                                       width=TABLE_WIDTH, layout="fit_data_table",
                                       css_classes=["sweep-table"])
        self._plot_pane = pn.pane.HoloViews(_empty_plot("no sweep"), css_classes=["sweep-plot"])
        self._curve_pane = pn.pane.HoloViews(_empty_plot("no trial chosen"),
                                             css_classes=["trial-curve"])
        self._open_button = widgets.Button(label="Open in the trainer", color="primary",
                                           disabled=True, css_classes=["open-trial-button"])
        self._open_button.on_click(lambda event: self.open_trial())
        refresh = widgets.Button(label="Refresh", css_classes=["sweep-refresh-button"])
        refresh.on_click(lambda event: self.refresh())
        self._layout = pn.Column(
            pn.pane.Markdown("## Sweeps\nThe results of `spikeviz sweep`: choose a sweep and a "
                             "trial (a row of the table, or the list), then open its checkpoint "
                             "in the trainer."),
            pn.Row(widgets.TextInput.from_param(self.param.folder, width=360,
                                                css_classes=["sweep-folder"]),
                   widgets.Select.from_param(self.param.sweep, width=360,
                                             css_classes=["sweep-choice"]),
                   pn.Column(pn.Spacer(height=18), refresh)),
            self._alert,
            pn.Row(widgets.Select.from_param(self.param.metric, width=200),
                   widgets.Select.from_param(self.param.x, width=200, label="x axis"),
                   widgets.Select.from_param(self.param.lines, width=200,
                                             label="one line per")),
            pn.Row(self._plot_pane, self._curve_pane),
            pn.Row(widgets.Select.from_param(self.param.trial, width=420,
                                             css_classes=["trial-choice"]),
                   pn.Column(pn.Spacer(height=18), self._open_button)),
            self.table,
        )

    def __panel__(self):
        return self._layout
