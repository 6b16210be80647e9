"""Plot functions without a server: named sources, and the right numbers in them."""

import numpy as np
import pytest
from bokeh.models import ColumnDataSource

from spikeviz.viz import plots

SIZES = (784, 100, 10)


def source(fig, name):
    found = fig.select_one({"type": ColumnDataSource, "name": name})
    assert found is not None, f"no source named {name!r}"
    return found


def test_layer_names_number_hidden_layers_only_when_there_are_several():
    assert plots.layer_names((784, 800, 10)) == ["input", "hidden", "output"]
    assert plots.layer_names((784, 500, 500, 10)) == ["input", "hidden 1", "hidden 2", "output"]


def test_raster_puts_each_layer_in_its_own_band_with_time_in_ms():
    data = plots.raster_data(t_ms=[0.5, 10.0, 49.0, 20.0], layer=[0, 1, 2, 2],
                             neuron=[0, 99, 0, 9], sizes=SIZES)
    np.testing.assert_array_equal(data["t"], [0.5, 10.0, 49.0, 20.0])
    y = data["y"]
    assert 0 < y[0] < 0.1  # first input neuron: bottom of band 0
    assert 1.9 < y[1] < 2  # last hidden neuron: top of band 1
    assert 2 < y[2] < 2.1 and 2.9 < y[3] < 3  # first and last output neuron
    assert np.all(np.floor(y) == data["layer"])
    fig = plots.raster_figure(SIZES, duration_ms=50.0, data=data)
    raster = source(fig, "raster")
    np.testing.assert_array_equal(raster.data["neuron"], [0, 99, 0, 9])
    assert (fig.x_range.start, fig.x_range.end) == (0.0, 50.0)
    assert fig.output_backend == "canvas"  # no WebGL: slow in browsers without a GPU
    assert fig.yaxis[0].major_label_overrides[2.5] == "output (10)"


def test_raster_of_no_spikes_is_empty():
    data = plots.raster_data([], [], [], SIZES)
    assert all(len(values) == 0 for values in data.values())
    assert len(source(plots.raster_figure(SIZES), "raster").data["t"]) == 0


def test_potential_traces_show_inputs_spikes_and_thresholds_per_neuron():
    # neuron 0: an input to 0.5 Vth, then one to 1.2 Vth that fires and resets to 0.2 Vth
    # neuron 1 (threshold 2): one input to 1.0 = 0.5 Vth
    t_ms = [1.0, 2.0, 3.0]
    watch = [0, 0, 1]
    v_peak = [0.05, 0.125, 1.0]
    v_end = [0.05, 0.02, 1.0]
    traces, levels = plots.potentials_data(t_ms, watch, v_peak, v_end, thresholds=[0.1, 2.0],
                                           labels=["hidden #3", "output 0"], duration_ms=10.0,
                                           tau_mp_ms=20.0)
    assert traces["label"] == ["hidden #3", "output 0"]
    x0, y0 = traces["xs"][0], traces["ys"][0]
    # an event without spike or inhibition: before and after the input (no third point)
    np.testing.assert_allclose(x0, [0, 1, 1, 2, 2, 2, 10])
    decayed = 0.5 * np.exp(-1 / 20)
    np.testing.assert_allclose(y0, [0, 0, 0.5, decayed, 1.25, 0.2, 0.2 * np.exp(-8 / 20)],
                               rtol=1e-6)
    offset = plots.TRACE_SPACING
    np.testing.assert_allclose(traces["xs"][1], [0, 3, 3, 10])
    np.testing.assert_allclose(traces["ys"][1][1:3] - offset, [0, 0.5])
    np.testing.assert_allclose(levels["ys"][0], [1.0, 1.0])  # threshold = 1 in each row
    np.testing.assert_allclose(levels["ys"][1], [offset + 1, offset + 1])
    np.testing.assert_allclose(levels["xs"][1], [0.0, 10.0])
    fig = plots.potentials_figure(["hidden #3", "output 0"], duration_ms=10.0,
                                  data=(traces, levels))
    assert len(source(fig, "potentials").data["xs"]) == 2
    assert len(source(fig, "potential_thresholds").data["ys"]) == 2
    assert fig.yaxis[0].major_label_overrides[offset] == "output 0"


def test_threshold_histograms_give_each_layer_fractions_that_sum_to_one():
    rng = np.random.default_rng(0)
    hidden, output = rng.normal(0.18, 0.02, 100), np.full(10, 0.2)  # all equal, as at start
    data = plots.threshold_histogram_data([hidden, output], ["hidden", "output"], bins=20)
    layers = np.array(data["layer"])
    top = np.array(data["top"])
    assert top[layers == "hidden"].sum() == pytest.approx(1.0)
    assert top[layers == "output"].sum() == pytest.approx(1.0)
    left, right = np.array(data["left"]), np.array(data["right"])
    assert left[layers == "hidden"].min() == pytest.approx(hidden.min())
    assert right[layers == "hidden"].max() == pytest.approx(hidden.max())
    assert np.all(right > left)
    fig = plots.threshold_histogram_figure(data)
    assert len(source(fig, "thresholds").data["top"]) == 40


def test_accuracy_figure_has_curves_tests_and_markers():
    fig = plots.accuracy_figure(
        data={"sample": [10, 20], "train_accuracy": [0.1, 0.3], "mean_loss": [2.0, 1.5]},
        tests={"sample": [20], "test_accuracy": [0.25]},
        markers={"sample": [15], "text": ["kappa_hidden -0.4 -> -0.8"]},
    )
    assert source(fig, "accuracy").data["train_accuracy"] == [0.1, 0.3]
    assert source(fig, "test_accuracy").data["test_accuracy"] == [0.25]
    assert source(fig, "markers").data["text"] == ["kappa_hidden -0.4 -> -0.8"]
    assert "loss" in fig.extra_y_ranges


def test_receptive_fields_are_tiled_upright_and_scaled_per_field():
    fields = np.zeros((3, 28, 28))
    fields[0, 0, 0] = 4.0  # top-left pixel of the first field
    fields[1, 5, 5] = -0.5
    data = plots.receptive_fields_data(fields, ncols=2)
    image = data["image"][0]
    assert image.shape == (2 * 29 - 1, 2 * 29 - 1)
    assert data["dw"] == [57] and data["dh"] == [57]
    # first field in the top row; image row 0 is drawn at the bottom, so its top-left pixel is
    # the last row of the tile
    assert image[-1, 0] == 1.0
    assert image[-1 - 5, 29 + 5] == -1.0  # second field, scaled to its own peak
    assert np.isnan(image[:, 28]).all()  # separator column
    assert np.isnan(image[:29, 29:]).all()  # no fourth field: blank
    fig = plots.receptive_fields_figure([0, 1, 2], data)
    assert len(source(fig, "receptive_fields").data["image"]) == 1


def test_firing_data_per_layer():
    data = plots.firing_data(["hidden", "output"], [0.5, 3.0], [0.25, 0.0])
    assert data == {"layer": ["hidden", "output"], "rate": [0.5, 3.0], "dead": [0.25, 0.0]}
    fig = plots.firing_figure(["hidden", "output"], data)
    assert source(fig, "firing").data["dead"] == [0.25, 0.0]


def test_confusion_counts_answers_per_class_and_silent_outputs_as_none():
    labels = [0, 0, 0, 1, 7]
    predicted = [0, 0, 3, -1, 7]
    data = plots.confusion_data(labels, predicted)
    assert len(data["count"]) == 10 * 11
    cells = {(a, p): (c, f) for a, p, c, f in
             zip(data["actual"], data["predicted"], data["count"], data["fraction"])}
    assert cells[("0", "0")] == (2, pytest.approx(2 / 3))
    assert cells[("0", "3")] == (1, pytest.approx(1 / 3))
    assert cells[("1", "none")] == (1, 1.0)
    assert cells[("7", "7")] == (1, 1.0)
    assert cells[("5", "5")] == (0, 0.0)
    assert sum(data["count"]) == 5
    fig = plots.confusion_figure(data)
    assert len(source(fig, "confusion").data["text"]) == 110
