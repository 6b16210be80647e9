"""Plot functions: numpy arrays in, Bokeh figures and their data out, no server needed.

Each view has a ``*_data`` function (arrays -> a dict of columns, what a periodic callback puts
into the source) and a ``*_figure`` function (a Bokeh figure whose data source carries a fixed
``name``, so that tests and browsers can find it with ``get_model_by_name``):

==================  ==========================  ===============================================
view                source name(s)              columns
==================  ==========================  ===============================================
spike raster        ``raster``                  t (ms), y, layer, neuron
membrane potential  ``potentials``,             xs, ys (lists, one line per watched neuron),
                    ``potential_thresholds``    label, color / xs, ys, color
threshold spread    ``thresholds``              left, right, top (fraction of the layer),
                                                layer (name), color
accuracy and loss   ``accuracy``,               sample, train_accuracy, mean_loss /
                    ``test_accuracy``,          sample, test_accuracy /
                    ``markers``                 sample, text
receptive fields    ``receptive_fields``        image, x, y, dw, dh
firing per layer    ``firing``                  layer (name), rate, dead
confusion matrix    ``confusion``               actual, predicted, count, fraction, text
==================  ==========================  ===============================================

Layers are numbered as in :class:`spikeviz.record.TrainingRecord`: 0 is the input, then the
hidden layers, the last one the output.  Plain Bokeh glyphs, canvas output (no WebGL: it is slow
in browsers without a GPU), fixed sizes.
"""

import math

import numpy as np
from bokeh.models import (
    ColumnDataSource,
    DataRange1d,
    FactorRange,
    FixedTicker,
    HoverTool,
    LinearAxis,
    LinearColorMapper,
    Range1d,
)
from bokeh.palettes import Blues256, Category10, RdBu11
from bokeh.plotting import figure

__all__ = [
    "accuracy_figure", "confusion_data", "confusion_figure", "firing_data",
    "firing_figure", "layer_names", "potentials_data", "potentials_figure", "raster_data",
    "raster_figure", "receptive_fields_data", "receptive_fields_figure",
    "threshold_histogram_data", "threshold_histogram_figure",
]

#: Fraction of its unit-high band that a layer's neurons fill in the raster.
BAND_FILL = 0.9
#: Vertical distance between two stacked membrane traces, in units of the threshold.
TRACE_SPACING = 2.6
_TOOLS = "pan,wheel_zoom,box_zoom,reset,save"


def layer_names(sizes):
    """Names of the layers of a network of ``sizes`` = (inputs, hidden..., outputs)."""
    hidden = len(sizes) - 2
    names = ["input"] + [f"hidden {i + 1}" if hidden > 1 else "hidden" for i in range(hidden)]
    return names + ["output"]


def _layer_colors(n_layers):
    palette = Category10[10]
    return [palette[i % len(palette)] for i in range(n_layers)]


def _empty(columns):
    return {name: [] for name in columns}


def _figure(title, width, height, **kwargs):
    fig = figure(title=title, width=width, height=height, tools=_TOOLS, toolbar_location="above",
                 output_backend="canvas", **kwargs)
    fig.toolbar.logo = None
    return fig


# --- spike raster ---

def raster_data(t_ms, layer, neuron, sizes):
    """Columns of the ``raster`` source.

    Parameters
    ----------
    t_ms : (S,) float, spike times in the presentation (ms)
    layer : (S,) int, 0 = input, 1.. hidden, ``len(sizes) - 1`` = output
    neuron : (S,) int, index in its layer
    sizes : (inputs, hidden..., outputs)

    Returns
    -------
    dict with ``t`` (ms), ``y`` (layer band + position of the neuron in it), ``layer``,
    ``neuron``: layer l occupies the band [l, l + 1), its neurons spread evenly over
    ``BAND_FILL`` of it, so small layers (the 10 outputs) stay as visible as large ones.
    """
    t_ms = np.asarray(t_ms, dtype=np.float64)
    layer = np.asarray(layer, dtype=np.int64)
    neuron = np.asarray(neuron, dtype=np.int64)
    widths = np.asarray(sizes, dtype=np.float64)[layer] if layer.size else np.zeros(0)
    y = layer + (1 - BAND_FILL) / 2 + (neuron + 0.5) / np.maximum(widths, 1) * BAND_FILL
    return {"t": t_ms, "y": y, "layer": layer.astype(np.int32), "neuron": neuron.astype(np.int32)}


def raster_figure(sizes, duration_ms=50.0, data=None, width=620, height=340):
    """Spike raster of one presentation: time (ms) across, one band per layer up the page."""
    source = ColumnDataSource(data or _empty(["t", "y", "layer", "neuron"]), name="raster")
    fig = _figure("spikes of the latest sample", width, height,
                  x_range=Range1d(0.0, float(duration_ms)), y_range=Range1d(0.0, len(sizes)))
    colors = LinearColorMapper(palette=_layer_colors(len(sizes)), low=-0.5,
                               high=len(sizes) - 0.5)
    fig.scatter("t", "y", source=source, size=3, marker="square", line_color=None,
                fill_color={"field": "layer", "transform": colors}, name="raster_spikes")
    fig.xaxis.axis_label = "time in the presentation (ms)"
    set_raster_layers(fig, sizes)
    fig.add_tools(HoverTool(tooltips=[("t (ms)", "@t{0.00}"), ("neuron", "@neuron")]))
    return fig


def set_raster_layers(fig, sizes):
    """Bands, tick labels and colors of the raster for a network of ``sizes``."""
    names = layer_names(sizes)
    centers = [i + 0.5 for i in range(len(sizes))]
    fig.y_range.end = len(sizes)
    fig.yaxis.ticker = FixedTicker(ticks=centers)
    fig.yaxis.major_label_overrides = {c: f"{n} ({s})" for c, n, s in zip(centers, names, sizes)}
    fig.ygrid.ticker = FixedTicker(ticks=list(range(len(sizes) + 1)))
    mapper = fig.select_one({"name": "raster_spikes"}).glyph.fill_color["transform"]
    mapper.update(palette=_layer_colors(len(sizes)), high=len(sizes) - 0.5)


# --- membrane potentials ---

def potentials_data(t_ms, watch, v_peak, v_end, thresholds, labels, duration_ms, tau_mp_ms):
    """Columns of the ``potentials`` (traces) and ``potential_thresholds`` sources.

    Each watched neuron is drawn in its own row, potential divided by its threshold, rows
    ``TRACE_SPACING`` apart (first watched neuron at the bottom), so the threshold of every row
    is the line at +1 above its zero.  At each recorded event the trace shows the potential just
    before it (the previous value decayed with ``tau_mp_ms``), after the input (``v_peak``) and,
    when reset or lateral inhibition changed it, after them (``v_end``): a spike is a jump above
    the threshold line and back down, an inhibition a step down without one.  (Most events change
    neither: their third point is left out, a third fewer points for the browser to draw.)

    Parameters
    ----------
    t_ms, watch, v_peak, v_end : (P,) arrays of the recorded rows, in time order
    thresholds : (K,) threshold of each watched neuron
    labels : K names, e.g. ``["hidden 3", "out 0", ...]``
    duration_ms : float, the presentation length
    tau_mp_ms : float, membrane time constant

    Returns
    -------
    (traces, threshold_lines) : two dicts of columns
    """
    t_ms = np.asarray(t_ms, dtype=np.float64)
    watch = np.asarray(watch)
    thresholds = np.asarray(thresholds, dtype=np.float64)
    colors = [Category10[10][k % 10] for k in range(len(labels))]
    xs, ys = [], []
    for k in range(len(labels)):
        rows = watch == k
        times = t_ms[rows]
        scale = 1.0 / thresholds[k] if thresholds[k] > 0 else 1.0
        peak = np.asarray(v_peak, dtype=np.float64)[rows] * scale
        end = np.asarray(v_end, dtype=np.float64)[rows] * scale
        previous_end = np.concatenate([[0.0], end[:-1]])
        previous_t = np.concatenate([[0.0], times[:-1]])
        before = previous_end * np.exp(-(times - previous_t) / tau_mp_ms)
        keep = np.column_stack([np.ones((times.size, 2), bool), end != peak]).ravel()
        last_t = times[-1] if times.size else 0.0
        last_v = end[-1] if times.size else 0.0
        end_t = max(duration_ms, last_t)
        x = np.concatenate([[0.0], np.repeat(times, 3)[keep], [end_t]])
        y = np.concatenate([[0.0], np.column_stack([before, peak, end]).ravel()[keep],
                            [last_v * math.exp(-(end_t - last_t) / tau_mp_ms)]])
        xs.append(x)
        ys.append(y + k * TRACE_SPACING)
    traces = {"xs": xs, "ys": ys, "label": list(labels), "color": colors}
    levels = {
        "xs": [np.array([0.0, float(duration_ms)]) for _ in labels],
        "ys": [np.full(2, k * TRACE_SPACING + 1.0) for k in range(len(labels))],
        "color": colors,
    }
    return traces, levels


def potentials_figure(labels, duration_ms=50.0, data=None, width=620, height=420):
    """Stacked membrane traces of the watched neurons with their thresholds (dashed)."""
    traces, levels = data if data is not None else (
        _empty(["xs", "ys", "label", "color"]), _empty(["xs", "ys", "color"]))
    source = ColumnDataSource(traces, name="potentials")
    level_source = ColumnDataSource(levels, name="potential_thresholds")
    n = len(labels)
    fig = _figure("membrane potential / threshold of watched neurons", width, height,
                  x_range=Range1d(0.0, float(duration_ms)),
                  y_range=Range1d(-1.2, max(n - 1, 0) * TRACE_SPACING + 1.6))
    fig.multi_line("xs", "ys", source=level_source, line_color="color", line_dash="dashed",
                   line_alpha=0.6)
    fig.multi_line("xs", "ys", source=source, line_color="color", line_width=1.2)
    fig.xaxis.axis_label = "time in the presentation (ms)"
    set_potential_labels(fig, labels)
    return fig


def set_potential_labels(fig, labels):
    """Put one y tick per stacked trace, at its zero, named after the neuron."""
    ticks = [k * TRACE_SPACING for k in range(len(labels))]
    fig.yaxis.ticker = FixedTicker(ticks=ticks)
    fig.yaxis.major_label_overrides = {float(t): label for t, label in zip(ticks, labels)}
    fig.y_range.end = max(len(labels) - 1, 0) * TRACE_SPACING + 1.6


# --- thresholds ---

def threshold_histogram_data(thresholds, names, bins=30):
    """Columns of the ``thresholds`` source: one histogram per layer, each over its own range,
    bar heights the fraction of the layer's neurons in the bin.

    Parameters
    ----------
    thresholds : sequence of (N_l,) arrays, one per trained layer (hidden..., output)
    names : the layers' names
    """
    columns = _empty(["left", "right", "top", "layer", "color"])
    colors = _layer_colors(len(names) + 1)[1:]  # the raster's colors: 0 is the input
    for values, name, color in zip(thresholds, names, colors):
        values = np.asarray(values, dtype=np.float64)
        values = values[np.isfinite(values)]
        if values.size == 0:
            continue
        low, high = float(values.min()), float(values.max())
        if high <= low:  # every threshold equal (at initialization): one narrow bar
            low, high = low * 0.98 - 1e-6, high * 1.02 + 1e-6
        counts, edges = np.histogram(values, bins=bins, range=(low, high))
        columns["left"].extend(edges[:-1].tolist())
        columns["right"].extend(edges[1:].tolist())
        columns["top"].extend((counts / values.size).tolist())
        columns["layer"].extend([name] * bins)
        columns["color"].extend([color] * bins)
    return columns


def threshold_histogram_figure(data=None, width=420, height=300):
    """Distribution of the thresholds of each layer, overlaid."""
    source = ColumnDataSource(data or _empty(["left", "right", "top", "layer", "color"]),
                              name="thresholds")
    fig = _figure("thresholds per layer", width, height)
    fig.quad(left="left", right="right", bottom=0, top="top", source=source, fill_color="color",
             line_color=None, fill_alpha=0.55, legend_field="layer")
    fig.xaxis.axis_label = "threshold Vth"
    fig.yaxis.axis_label = "fraction of the layer"
    fig.legend.location = "top_right"
    fig.legend.label_text_font_size = "8pt"
    return fig


# --- accuracy and loss ---

def accuracy_figure(data=None, tests=None, markers=None, width=620, height=300):
    """Running train accuracy (line), test accuracy (dots), loss (right axis) against samples
    trained, with a vertical mark and its text where a setting changed."""
    source = ColumnDataSource(data or _empty(["sample", "train_accuracy", "mean_loss"]),
                              name="accuracy")
    test_source = ColumnDataSource(tests or _empty(["sample", "test_accuracy"]),
                                   name="test_accuracy")
    marker_source = ColumnDataSource(markers or _empty(["sample", "text"]), name="markers")
    fig = _figure("accuracy and loss", width, height, y_range=Range1d(0.0, 1.02),
                  x_range=DataRange1d(range_padding=0.02))
    fig.extra_y_ranges = {"loss": DataRange1d(start=0.0)}
    fig.add_layout(LinearAxis(y_range_name="loss", axis_label="loss (moving average)"), "right")
    fig.segment(x0="sample", x1="sample", y0=0.0, y1=1.02, source=marker_source,
                line_color="#999999", line_dash="dotted")
    fig.text(x="sample", y=0.02, text="text", source=marker_source, angle=math.pi / 2,
             text_font_size="8pt", text_color="#555555", x_offset=-3)
    loss = fig.line("sample", "mean_loss", source=source, y_range_name="loss", color="#ff7f0e",
                    alpha=0.7, legend_label="loss")
    fig.extra_y_ranges["loss"].renderers = [loss]
    fig.line("sample", "train_accuracy", source=source, color="#1f77b4", line_width=2,
             legend_label="train accuracy (running)")
    fig.scatter("sample", "test_accuracy", source=test_source, size=7, color="#2ca02c",
                legend_label="test accuracy")
    fig.xaxis.axis_label = "samples trained"
    fig.yaxis[0].axis_label = "accuracy"
    fig.legend.location = "bottom_right"
    fig.legend.label_text_font_size = "8pt"
    return fig


# --- receptive fields ---

def receptive_fields_data(fields, ncols=6):
    """Columns of the ``receptive_fields`` source: the fields tiled into one image.

    Parameters
    ----------
    fields : (K, H, W) input weights of K hidden neurons, as images
    ncols : fields per row

    Each field is divided by its largest absolute weight (colors from -1, blue, to +1, red);
    tiles are separated by one NaN pixel (drawn blank).
    """
    fields = np.asarray(fields, dtype=np.float64)
    k, h, w = fields.shape
    ncols = max(1, min(ncols, k))
    nrows = max(1, math.ceil(k / ncols))
    tile = np.full((nrows * (h + 1) - 1, ncols * (w + 1) - 1), np.nan)
    for i, field in enumerate(fields):
        peak = np.abs(field).max()
        row, col = divmod(i, ncols)
        # Bokeh draws image row 0 at the bottom: flip so that the digit stands upright.
        top = (nrows - 1 - row) * (h + 1)
        tile[top:top + h, col * (w + 1):col * (w + 1) + w] = (field / peak if peak > 0 else
                                                              field)[::-1]
    return {"image": [tile], "x": [0], "y": [0], "dw": [tile.shape[1]], "dh": [tile.shape[0]]}


def receptive_fields_figure(neurons, data=None, width=420, height=300):
    """Input weights of some hidden neurons as images (28 x 28 for MNIST)."""
    source = ColumnDataSource(data or _empty(["image", "x", "y", "dw", "dh"]),
                              name="receptive_fields")
    shown = ", ".join(str(n) for n in neurons)
    fig = _figure(f"receptive fields of hidden neurons {shown}", width, height,
                  match_aspect=True)
    mapper = LinearColorMapper(palette=list(reversed(RdBu11)), low=-1.0, high=1.0,
                               nan_color="white")
    fig.image(image="image", x="x", y="y", dw="dw", dh="dh", source=source, color_mapper=mapper)
    fig.axis.visible = False
    fig.grid.visible = False
    return fig


# --- firing per layer ---

def firing_data(names, rates, dead):
    """Columns of the ``firing`` source: spikes per neuron per sample, and the fraction of
    neurons silent all epoch so far, per trained layer."""
    return {"layer": list(names), "rate": [float(r) for r in rates],
            "dead": [float(d) for d in dead]}


def firing_figure(names, data=None, width=420, height=300):
    """Firing rate (bars) and dead fraction (dots, right axis) of each layer."""
    source = ColumnDataSource(data or _empty(["layer", "rate", "dead"]), name="firing")
    fig = _figure("firing per layer (this epoch)", width, height,
                  x_range=FactorRange(*names), y_range=DataRange1d(start=0.0))
    fig.vbar(x="layer", top="rate", width=0.6, source=source, color="#1f77b4", alpha=0.8,
             legend_label="spikes / neuron / sample")
    fig.extra_y_ranges = {"dead": Range1d(0.0, 1.0)}
    fig.add_layout(LinearAxis(y_range_name="dead", axis_label="dead fraction"), "right")
    fig.scatter(x="layer", y="dead", source=source, y_range_name="dead", size=12, marker="x",
                color="#d62728", line_width=3, legend_label="dead fraction")
    fig.legend.location = "top_left"
    fig.legend.label_text_font_size = "8pt"
    return fig


# --- confusion matrix ---

_PREDICTED = [str(d) for d in range(10)] + ["none"]
_ACTUAL = [str(d) for d in range(10)]


def confusion_data(labels, predicted):
    """Columns of the ``confusion`` source: one cell per (actual, predicted) pair.

    Parameters
    ----------
    labels : (S,) int, true classes 0..9
    predicted : (S,) int, answers 0..9, or -1 for none (silent or tied outputs)

    ``fraction`` is the share of the actual class's samples (each row sums to 1).
    """
    labels = np.asarray(labels, dtype=np.int64)
    predicted = np.asarray(predicted, dtype=np.int64)
    columns = np.where(predicted < 0, 10, predicted)
    matrix = np.zeros((10, 11), np.int64)
    np.add.at(matrix, (labels, columns), 1)
    per_class = np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    actual, guess = np.meshgrid(np.arange(10), np.arange(11), indexing="ij")
    counts = matrix.ravel()
    return {
        "actual": [_ACTUAL[a] for a in actual.ravel()],
        "predicted": [_PREDICTED[g] for g in guess.ravel()],
        "count": counts,
        "fraction": (matrix / per_class).ravel(),
        "text": [str(c) if c else "" for c in counts],
    }


def confusion_figure(data=None, width=420, height=360):
    """Confusion matrix of the last evaluation, rows normalized per actual class."""
    source = ColumnDataSource(data or _empty(["actual", "predicted", "count", "fraction",
                                              "text"]), name="confusion")
    fig = _figure("confusion matrix (last evaluation)", width, height,
                  x_range=FactorRange(*_PREDICTED), y_range=FactorRange(*reversed(_ACTUAL)))
    mapper = LinearColorMapper(palette=list(reversed(Blues256)), low=0.0, high=1.0)
    fig.rect(x="predicted", y="actual", width=1, height=1, source=source, line_color="white",
             fill_color={"field": "fraction", "transform": mapper})
    fig.text(x="predicted", y="actual", text="text", source=source, text_align="center",
             text_baseline="middle", text_font_size="7pt")
    fig.xaxis.axis_label = "predicted"
    fig.yaxis.axis_label = "actual"
    fig.grid.visible = False
    fig.add_tools(HoverTool(tooltips=[("actual", "@actual"), ("predicted", "@predicted"),
                                      ("samples", "@count"), ("share", "@fraction{0.0%}")]))
    return fig
