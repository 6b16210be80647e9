"""The neuron lab: step through one digit event by event and watch each mechanism of the model
act on the potentials; and one LIF neuron beside its analytic rate curve.

``NeuronLab()`` displays in a notebook (``pn.extension(inline=True)`` offline); ``apps/train.py``
serves it as the "Neuron lab" tab beside the training app, where "training run" takes a snapshot
of that app's current network.  What it shows is the engine's detailed recording
(:mod:`spikeviz.lab`); nothing here simulates.

Bokeh figures carry named data sources, for tests and browsers (``get_model_by_name``):
``lab-image``, ``lab-events``, ``lab-event`` (input), ``lab-hidden-curves``, ``lab-hidden-now``,
``lab-output-curves``, ``lab-output-now`` (potentials), ``lab-counts``, and ``lab-sn-potential``,
``lab-sn-inputs``, ``lab-sn-spikes``, ``lab-sn-analytic``, ``lab-sn-simulated``, ``lab-sn-now``
(single neuron), ``lab-strokes`` (the drawing pad's strokes).
"""

from pathlib import Path

import numpy as np
import panel as pn
import param
from bokeh.models import ColumnDataSource, FreehandDrawTool, LinearColorMapper, Range1d, Span
from bokeh.palettes import Category10, Greys256
from bokeh.plotting import figure

from spikeviz import lab
from spikeviz.config import Config
from spikeviz.data.mnist import load_mnist
from spikeviz.engine import init_network, make_dynamics
from spikeviz.errors import ConfigError, SpikevizError

__all__ = ["NeuronLab", "SingleNeuronLab", "training_run_network"]

#: Slow-motion speeds: label -> milliseconds between two steps of the player.
SPEEDS = {"1 event/s": 1000, "3 events/s": 333, "10 events/s": 100, "30 events/s": 33}
#: Width of the potential plots' window around the current event, ms.
WINDOW_MS = 12.0
#: Input events drawn on the digit: those of the last this many ms, fading with age.
INPUT_MEMORY_MS = 3.0
#: Vertical distance between two stacked traces, in units of the threshold.
SPACING = 2.6
SOURCES = ("fresh network", "checkpoint", "training run")
#: Seconds "training run" waits for the training app to finish what it is doing.
TRAINING_WAIT_S = 1.0


def training_run_network(app):
    """A snapshot of the network a :class:`spikeviz.viz.app.TrainingApp` is training, taken
    between two samples (under the app's lock; its kappas and dynamics are in ``app.config``).

    Waits at most :data:`TRAINING_WAIT_S` for the lock, whose holder may be a long evaluation:
    this runs on the server's thread, and a page must not freeze.  SpikevizError if busy.
    """
    # only read here: the worker holds the lock while it changes the network
    if not app._lock.acquire(timeout=TRAINING_WAIT_S):
        raise SpikevizError("the training run is busy (an evaluation or a long step): "
                            "press Use network again in a moment")
    try:
        trainer = app.trainer
        return trainer.network.scaled(trainer.sim.state.scale)
    finally:
        app._lock.release()


def _figure(title, width, height, **kwargs):
    fig = figure(title=title, width=width, height=height, tools="pan,wheel_zoom,reset,save",
                 toolbar_location="above", output_backend="canvas", **kwargs)
    fig.toolbar.logo = None
    return fig


# --- network-mode plots: arrays in, figures and columns out ---


def _pixel_xy(pixels, width=28):
    """Plot coordinates (x right, y up) of row-major pixel indices."""
    pixels = np.asarray(pixels)
    return pixels % width, width - 1 - pixels // width


def input_figure(image):
    """The digit, the recent input events on it and the current one (red square)."""
    side = int(round(np.sqrt(image.size)))
    fig = _figure("input events on the digit", 300, 300, x_range=(-0.5, side - 0.5),
                  y_range=(-0.5, side - 0.5))
    fig.axis.visible = False
    fig.grid.visible = False
    mapper = LinearColorMapper(palette=Greys256[::-1][:200], low=0, high=255)
    fig.image(image="image", x=-0.5, y=-0.5, dw=side, dh=side, color_mapper=mapper,
              source=ColumnDataSource({"image": [np.flipud(image.reshape(side, side))]},
                                      name="lab-image"))
    fig.scatter("x", "y", size=7, color="orange", alpha="alpha",
                source=ColumnDataSource({"x": [], "y": [], "alpha": []}, name="lab-events"))
    fig.scatter("x", "y", size=13, marker="square", fill_alpha=0, line_color="red", line_width=3,
                source=ColumnDataSource({"x": [], "y": []}, name="lab-event"))
    return fig


def draw_figure():
    """A 28 x 28 pad to draw a digit on with the mouse (Bokeh's freehand tool); the strokes
    reach the server in the ``lab-strokes`` source."""
    fig = figure(title="or draw a digit", width=200, height=200, x_range=(0, 28), y_range=(0, 28),
                 tools="", toolbar_location=None, output_backend="canvas")
    fig.axis.visible = False
    fig.grid.visible = False
    strokes = fig.multi_line("xs", "ys", line_width=14, line_color="black", line_cap="round",
                             source=ColumnDataSource({"xs": [], "ys": []}, name="lab-strokes"))
    pen = FreehandDrawTool(renderers=[strokes])
    fig.add_tools(pen)
    fig.toolbar.active_drag = pen
    return fig


def input_data(trace, event):
    """Columns of ``lab-events`` (recent events, alpha by age) and ``lab-event`` (the current)."""
    times = trace.events.times_ms
    t_now = times[event]
    recent = np.flatnonzero((times <= t_now) & (times > t_now - INPUT_MEMORY_MS))
    recent = recent[recent <= event]
    x, y = _pixel_xy(trace.event_pixels(recent))  # a permuted input shows at its own pixel
    alpha = 1.0 - (t_now - times[recent]) / INPUT_MEMORY_MS
    cx, cy = _pixel_xy(trace.event_pixels([event]))
    return ({"x": x.tolist(), "y": y.tolist(), "alpha": np.clip(alpha, 0.1, 1).tolist()},
            {"x": cx.tolist(), "y": cy.tolist()})


def potentials_figure(kind, names):
    """Stacked traces of V / Vth, one band per neuron: threshold at +1, clipping at -1."""
    fig = _figure(f"{kind} neurons: V / Vth (dashed: Vth, dotted: -Vth)", 640,
                  60 + 48 * len(names), x_axis_label="time (ms)",
                  x_range=Range1d(0.0, WINDOW_MS))  # follows the current event
    offsets = SPACING * np.arange(len(names))[::-1]
    for offset in offsets:
        for level, dash in ((1.0, "dashed"), (-1.0, "dotted")):
            fig.add_layout(Span(location=offset + level, dimension="width", line_color="gray",
                                line_dash=dash, line_width=1))
    fig.yaxis.ticker = list(offsets)
    fig.yaxis.major_label_overrides = {float(o): n for o, n in zip(offsets, names)}
    fig.multi_line("xs", "ys", color="color", line_width=1.5,
                   source=ColumnDataSource({"xs": [], "ys": [], "color": []},
                                           name=f"lab-{kind}-curves"))
    fig.scatter("x", "y", color="color", size=9,
                source=ColumnDataSource({"x": [], "y": [], "color": []}, name=f"lab-{kind}-now"))
    fig.add_layout(Span(location=0, dimension="height", line_color="red", line_width=1,
                        name=f"lab-{kind}-cursor"))
    return fig


def curves_data(trace, watched):
    """Columns of a potentials figure: the whole sample's curve of each watched index."""
    offsets = SPACING * np.arange(len(watched))[::-1]
    xs, ys = [], []
    for w, offset in zip(watched, offsets):
        t, v = lab.potential_curve(trace, w)
        xs.append(t.tolist())
        ys.append((v + offset).tolist())
    return {"xs": xs, "ys": ys, "color": _colors(len(watched))}


def now_data(trace, watched, moments, t_ms):
    offsets = SPACING * np.arange(len(watched))[::-1]
    ys = [moments[w].end / moments[w].threshold + offset if moments[w].threshold > 0 else offset
          for w, offset in zip(watched, offsets)]
    return {"x": [t_ms] * len(watched), "y": ys, "color": _colors(len(watched))}


def _colors(n):
    return [Category10[10][i % 10] for i in range(n)]


def counts_figure(n_outputs):
    fig = _figure("output spike counts", 300, 260, x_range=[str(i) for i in range(n_outputs)])
    fig.vbar(x="digit", top="count", width=0.8, color="color",
             source=ColumnDataSource({"digit": [], "count": [], "color": []}, name="lab-counts"))
    fig.y_range.start = 0
    return fig


def counts_data(trace, event):
    counts = trace.output_counts(event)
    decision = trace.decision(event)
    colors = ["crimson" if i == decision else "steelblue" for i in range(counts.size)]
    return {"digit": [str(i) for i in range(counts.size)], "count": counts.tolist(),
            "color": colors}


def story_markdown(trace, event, label=None):
    """The mechanisms at ``event`` as Markdown: one bullet per mechanism, then a table of the
    watched neurons' steps."""
    told = lab.story(trace, event)
    head = told[0][1]
    lines = [f"**Event {event + 1} of {trace.n_events}** ({head})", ""]
    names = {"decay": "Decay", "jump": "Jump from the weight", "spike": "Spike and reset",
             "inhibition": "WTA inhibition", "clip": "Clipping at -Vth",
             "refractory": "Refractory dynamic weight", "output": "Output"}
    for mechanism in lab.MECHANISMS[1:]:
        said = [text for m, text in told if m == mechanism]
        if said:
            shown = said if len(said) <= 3 else said[:3] + [f"and {len(said) - 3} more"]
            lines.append(f"- **{names[mechanism]}**: " + "; ".join(shown))
    decision = trace.decision(event)
    verdict = "no decision yet" if decision is None else f"the network says **{decision}**"
    verdict += " (a drawn digit)" if label is None else f" (the digit is {label})"
    lines += ["", f"Output counts so far: {' '.join(map(str, trace.output_counts(event)))}, "
              f"{verdict}.", "", _step_table(lab.describe_event(trace, event))]
    return "\n".join(lines)


def _step_table(moments):
    """One line per arrival at a watched neuron (an output neuron may receive several hidden
    spikes on one event): each line adds up on its own."""
    rows = ["| neuron | from | V before | after decay | + w * w_dyn | peak | spike: reset to | "
            "WTA hits | V end | Vth |", "|---|---|---|---|---|---|---|---|---|---|"]
    for m in moments:
        if not m.reached:
            rows.append(f"| {m.name} | not reached | {m.end:+.3f} | | | | | | {m.end:+.3f} | "
                        f"{m.threshold:.3f} |")
        for step in m.steps:
            reset = f"{step.reset:+.3f}" if step.fired else ""
            gain = f" ({step.gain:.2f})" if step.gain < 1 else ""
            rows.append(f"| {m.name} | {step.sender} | {step.before:+.3f} | {step.decayed:+.3f} | "
                        f"{step.jump:+.3f}{gain} | {step.peak:+.3f} | {reset} | "
                        f"{step.inhibitions or ''} | {step.end:+.3f} | {m.threshold:.3f} |")
    return "\n".join(rows)


def _button(label, action, css_class):
    button = pn.widgets.Button(label=label, width=110, css_classes=[css_class])
    button.on_click(lambda event: action())
    return button


# --- the single-neuron mode ---


class SingleNeuronLab(pn.viewable.Viewer):
    """One LIF neuron driven by a spike train you shape, beside its analytic rate curve."""

    rate_hz = param.Number(800.0, bounds=(10.0, 5000.0), doc="input events per second")
    train = param.Selector(default="regular", objects=["regular", "Poisson"],
                           doc="evenly spaced input events, or a Poisson process")
    weight = param.Number(0.05, bounds=(0.001, 2.0), doc="weight of the input synapse")
    tau_ms = param.Number(20.0, bounds=(1.0, 200.0), doc="membrane time constant tau_mp (ms)")
    t_ref_ms = param.Number(1.0, bounds=(0.0, 20.0), doc="refractory period T_ref (ms)")
    threshold = param.Number(0.5, bounds=(0.05, 2.0), doc="threshold Vth")
    gamma = param.Number(1.0, bounds=(0.1, 2.0), doc="reset factor: V -= gamma * Vth on a spike")
    duration_ms = param.Number(200.0, bounds=(20.0, 2000.0), doc="length of the run (ms)")
    seed = param.Integer(0, bounds=(0, None), doc="seed of the Poisson train")

    #: How many input rates, evenly spaced up to the plot's largest, the engine's rate is
    #: simulated at for the curve.
    CURVE_POINTS = 16

    def __init__(self, **params):
        super().__init__(**params)
        self.sources = {}
        self._figures = self._build_figures()
        self._summary = pn.pane.Markdown("", css_classes=["lab-sn-summary"], width=300)
        self._layout = self._build_layout()
        self.param.watch(self.update, [name for name in self.param if name != "name"])
        self.update()

    def _dynamics(self):
        return make_dynamics(tau_mp_ms=self.tau_ms, t_ref_ms=self.t_ref_ms, gamma=self.gamma)

    def _build_figures(self):
        potential = _figure("the neuron's V (engine recording)", 640, 300,
                            x_axis_label="time (ms)", y_axis_label="V")
        potential.line("t", "v", source=self._source("lab-sn-potential", "t", "v"))
        potential.scatter("t", "v", marker="dash", angle=np.pi / 2, size=8, color="gray",
                          source=self._source("lab-sn-inputs", "t", "v"))
        potential.scatter("t", "v", marker="triangle", size=9, color="crimson",
                          source=self._source("lab-sn-spikes", "t", "v"))
        self._levels = [Span(location=0, dimension="width", line_color="gray", line_dash=dash)
                        for dash in ("dashed", "dotted")]
        for span in self._levels:
            potential.add_layout(span)
        rates = _figure("output rate vs input rate", 420, 300, x_axis_label="input rate (Hz)",
                        y_axis_label="output rate (Hz)")
        rates.line("rate", "out", legend_label="analytic (mean drive)", color="black",
                   source=self._source("lab-sn-analytic", "rate", "out"))
        rates.scatter("rate", "out", legend_label="engine", color="darkorange", size=7,
                      source=self._source("lab-sn-simulated", "rate", "out"))
        rates.scatter("rate", "out", marker="star", size=16, color="crimson",
                      legend_label="this run", source=self._source("lab-sn-now", "rate", "out"))
        rates.legend.location = "top_left"
        return {"potential": potential, "rates": rates}

    def _source(self, name, *columns):
        self.sources[name] = ColumnDataSource({c: [] for c in columns}, name=name)
        return self.sources[name]

    def run(self):
        """The engine's run at the current settings (a LabTrace of the one neuron)."""
        return lab.single_neuron_run(
            rate_hz=self.rate_hz, regular=self.train == "regular", weight=self.weight,
            threshold=self.threshold, dynamics=self._dynamics(), duration_ms=self.duration_ms,
            seed=self.seed)

    def update(self, *events):
        trace = self.run()
        t, v = lab.potential_curve(trace, 0)
        rows = trace.rows
        spikes = rows["rank"] >= 0
        s = self.sources
        with pn.io.hold():
            s["lab-sn-potential"].data = {"t": t.tolist(), "v": (v * self.threshold).tolist()}
            s["lab-sn-inputs"].data = {"t": rows["t_ms"].tolist(),
                                       "v": [-1.15 * self.threshold] * rows["t_ms"].size}
            s["lab-sn-spikes"].data = {"t": rows["t_ms"][spikes].tolist(),
                                       "v": [1.1 * self.threshold] * int(spikes.sum())}
            self._levels[0].location, self._levels[1].location = self.threshold, -self.threshold
            self._update_rates(trace)

    def _update_rates(self, trace):
        top = max(2.0 * self.rate_hz, 200.0)
        dense = np.linspace(0.0, top, 120)[1:]
        common = dict(weight=self.weight, threshold=self.threshold)
        analytic = lab.analytic_rate_hz(dense, tau_ms=self.tau_ms, t_ref_ms=self.t_ref_ms,
                                        gamma=self.gamma, **common)
        sampled = np.linspace(top / self.CURVE_POINTS, top, self.CURVE_POINTS)
        simulated = lab.simulated_rates(sampled, regular=self.train == "regular",
                                        dynamics=self._dynamics(),
                                        duration_ms=max(self.duration_ms, 1000.0),
                                        seed=self.seed, **common)
        rate = trace.spikes["t_ms"].size * 1000.0 / self.duration_ms
        s = self.sources
        s["lab-sn-analytic"].data = {"rate": dense.tolist(), "out": analytic.tolist()}
        s["lab-sn-simulated"].data = {"rate": sampled.tolist(), "out": simulated.tolist()}
        s["lab-sn-now"].data = {"rate": [self.rate_hz], "out": [rate]}
        expected = lab.analytic_rate_hz(self.rate_hz, tau_ms=self.tau_ms, t_ref_ms=self.t_ref_ms,
                                        gamma=self.gamma, **common)[0]
        self._summary.object = (
            f"**This run**: {trace.n_events} input events, {trace.spikes['t_ms'].size} "
            f"output spikes: **{rate:.1f} Hz**. Analytic (mean drive w * rate = "
            f"{self.weight * self.rate_hz / 1000:.3g} per ms): **{expected:.1f} Hz**. "
            "Few large jumps and Poisson timing depart from the mean-drive curve; "
            "small, regular jumps approach it.")

    def __panel__(self):
        return self._layout

    def _build_layout(self):
        w = pn.widgets
        sliders = [
            w.FloatSlider.from_param(self.param.rate_hz, step=10, throttled=True,
                                     label="input rate (Hz)", css_classes=["lab-sn-rate"]),
            w.RadioButtonGroup.from_param(self.param.train),
            w.FloatSlider.from_param(self.param.weight, step=0.005, throttled=True,
                                     label="weight w"),
            w.FloatSlider.from_param(self.param.tau_ms, step=1, throttled=True,
                                     label="tau_mp (ms)"),
            w.FloatSlider.from_param(self.param.t_ref_ms, step=0.1, throttled=True,
                                     label="T_ref (ms)"),
            w.FloatSlider.from_param(self.param.threshold, step=0.01, throttled=True,
                                     label="threshold Vth"),
            w.FloatSlider.from_param(self.param.gamma, step=0.05, throttled=True,
                                     label="reset factor gamma"),
            w.FloatSlider.from_param(self.param.duration_ms, step=10, throttled=True,
                                     label="duration (ms)"),
        ]
        return pn.Row(pn.Column(pn.pane.Markdown("### One LIF neuron"), *sliders,
                                self._summary, width=320),
                      pn.Column(pn.pane.Bokeh(self._figures["potential"]),
                                pn.pane.Bokeh(self._figures["rates"])))


# --- the network mode ---


class NeuronLab(pn.viewable.Viewer):
    """Step through one digit, event by event, in the current network.

    Parameters
    ----------
    data : MNIST, digits to pick from (default: the bundled subset)
    config : Config, the settings of fresh networks (shape, kappas, dynamics, input encoding;
        default: the training app's, else ``Config()``); a checkpoint brings its own, the
        training run uses the app's
    training_app : TrainingApp, optional; "training run" takes a snapshot of its network (the
        default network then)
    network : Network, optional; the network to start with (else a fresh one)
    """

    source = param.Selector(default="fresh network", objects=list(SOURCES),
                            doc="where the network comes from")
    checkpoint = param.String(default="runs/app/last.npz", doc="checkpoint of `spikeviz train`")
    sample = param.Integer(default=0, bounds=(0, None), doc="index of the test digit")
    duration_ms = param.Number(default=60.0, bounds=(5.0, 1000.0),
                               doc="presentation length (ms), at the config's input rate")
    hidden = param.String(default="auto", doc="hidden neurons to watch, e.g. '3, 17, 42'; "
                                               "auto: the 4 that fire most on this digit")
    seed = param.Integer(default=0, bounds=(0, None), doc="seed of the digit's input events")
    event = param.Integer(default=0, bounds=(0, None), doc="the input event shown")
    speed = param.Selector(default="3 events/s", objects=list(SPEEDS), doc="slow-motion speed")

    def __init__(self, data=None, config=None, training_app=None, network=None, **params):
        super().__init__(**params)
        self.data = data if data is not None else load_mnist(bundled=True)
        self.param.sample.bounds = (0, len(self.data.test_labels) - 1)
        # the settings of a fresh network; a checkpoint or the training run brings its own
        self.base_config = config or (training_app.config if training_app else Config())
        self.config = self.base_config
        self.training_app = training_app
        opening = ""
        if training_app is None:
            self.param.source.objects = list(SOURCES[:2])
        elif network is None:
            try:
                network = training_run_network(training_app)
                self.source, self.config = "training run", training_app.config
            except SpikevizError as error:
                opening = f"{error}; meanwhile a fresh network"
        self.network, self.kappas, self.dynamics = None, None, None
        self.trace = None
        self._drawn = None  # the image of a digit drawn on the pad, while it is shown
        self.single = SingleNeuronLab()
        self._build()
        self._notify(opening)
        self._use(network)
        self.param.watch(self._show_event, ["event"])
        self.param.watch(self._on_speed, ["speed"])
        if pn.state.curdoc is not None and pn.state.curdoc.session_context is not None:
            # served: the page goes out first, the digit runs once it is connected
            pn.state.onload(self.load_digit)
        else:
            self.load_digit()

    # --- the network and the digit ---

    def _use(self, network):
        """Settings from the config; the given network or a fresh one."""
        c = self.config
        self.kappas = np.asarray(c.kappas(), dtype=float)
        self.dynamics = c.dynamics()
        if network is None:
            sizes = (self.data.test_images[0].size, *c.hidden, 10)
            network = init_network(sizes, np.random.default_rng(c.seed), alpha=c.alphas(),
                                   floor_fraction=c.floor_fraction)
        self.network = network

    def take_network(self):
        """Get the network named by ``source`` (a fresh one, a checkpoint, or a snapshot of the
        training run) and run the digit through it."""
        try:
            if self.source == "training run":
                network = training_run_network(self.training_app)
                self.config = self.training_app.config
                self._use(network)
                self._notify("network: a snapshot of the training run, now")
            elif self.source == "checkpoint":
                from spikeviz.train.trainer import Trainer

                network, config, _ = Trainer.from_checkpoint_network(Path(self.checkpoint))
                self.config = config
                self._use(network)
                self._notify(f"network: {self.checkpoint}")
            else:
                self.config = self.base_config
                self._use(None)
                self._notify("network: fresh (untrained) initialization")
        except (SpikevizError, OSError) as error:
            self._notify(f"{type(error).__name__}: {error}")
            return
        self.load_digit()

    def load_digit(self):
        """Run the digit (test digit ``sample``, or the drawn one) through the network with the
        engine's detailed recording, and show its first event."""
        image = self._image()
        try:
            self.trace = self._record(image)
        except SpikevizError as error:
            self._notify(f"{type(error).__name__}: {error}")
            return
        self._image_source.data = {"image": [np.flipud(image.astype(float))]}
        self._set_curves()
        self._rewind()

    def _record(self, image):
        if self.network.sizes[0] != image.size:
            raise ConfigError(f"this network takes {self.network.sizes[0]} inputs, but the lab "
                              f"presents {image.size}-pixel digits: use a network trained on MNIST")
        common = dict(kappas=self.kappas, dynamics=self.dynamics)
        encoder = lab.digit_encoder(self.config, image.size)  # the training run's rate, pixels
        events = lab.encode_digit(image, self.duration_ms, self.seed, encoder)
        outputs = [(len(self.network.weights) - 1, n) for n in range(self.network.sizes[-1])]
        watch = self._hidden_watch(events, common) + outputs
        return lab.record_sample(self.network, events, self.duration_ms, watch=watch,
                                 permutation=encoder.permutation, **common)

    def _rewind(self):
        """The player's range to the new trace's events, and back to the first one."""
        last = max(self.trace.n_events - 1, 0)
        self.param.event.bounds = (0, last)
        self._player.end = max(last, 1)
        if self.event == 0 and last > 0:
            self.event = 1  # Panel's Player redraws its slider's range only on a new value
        if self.event != 0:
            self.event = 0  # redraws through the watcher
        else:
            self._show_event()

    def _hidden_watch(self, events, common):
        if self.hidden.strip().lower() in ("", "auto"):
            return lab.most_active_hidden(self.network, events, self.duration_ms, **common)
        width = self.network.sizes[1]
        try:
            neurons = [int(part) for part in self.hidden.replace(",", " ").split()]
        except ValueError:
            neurons = [-1]
        if not neurons or min(neurons) < 0 or max(neurons) >= width:
            raise ConfigError(f"hidden: {self.hidden!r} is not a list of neurons of the first "
                              f"hidden layer (0..{width - 1}), e.g. '3, 17', or auto")
        return [(0, n) for n in neurons]

    @property
    def label(self):
        """The test digit's label; None for a drawn digit."""
        return None if self._drawn is not None else int(self.data.test_labels[self.sample])

    def _image(self):
        return self._drawn if self._drawn is not None else self.data.test_images[self.sample]

    def run_test_digit(self):
        """Run test digit ``sample`` (the **Run digit** button)."""
        self._drawn = None
        self.load_digit()

    def use_drawing(self):
        """Run the digit drawn on the pad (the **Use drawing** button)."""
        data = self._strokes.data
        image = lab.rasterize_strokes(data["xs"], data["ys"])
        if not image.any():
            self._notify("draw a digit on the pad first (drag the mouse)")
            return
        self._drawn = image
        self.load_digit()

    def clear_drawing(self):
        self._strokes.data = {"xs": [], "ys": []}

    # --- stepping ---

    def step(self, n=1):
        """Move ``n`` events forward (negative: back), within the sample."""
        if self.trace is None:  # served: the digit runs once the page is connected
            return
        self.event = int(np.clip(self.event + n, 0, self.trace.n_events - 1))

    def jump_to(self, mechanism, direction=1):
        """Go to the next (direction -1: previous) event at which ``mechanism`` acts."""
        if self.trace is None:
            return
        found = lab.next_event(self.trace, self.event, mechanism, direction)
        if found is None:
            self._notify(f"no {mechanism} {'after' if direction > 0 else 'before'} this event")
        else:
            self._notify("")
            self.event = found

    def _notify(self, text):
        self.message = text
        self._status.object = text

    # --- views ---

    def _watched(self, output):
        last = len(self.trace.sizes) - 2
        return [w for w, (layer, _) in enumerate(self.trace.watch) if (layer == last) == output]

    def _set_curves(self):
        names = [self.trace.name(w) for w in range(len(self.trace.watch))]
        for kind, output in (("hidden", False), ("output", True)):
            watched = self._watched(output)
            fig = potentials_figure(kind, [names[w] for w in watched])
            fig.select({"name": f"lab-{kind}-curves"})[0].data = curves_data(self.trace, watched)
            self._panes[kind].object = fig

    def _show_event(self, *events):
        trace, event = self.trace, self.event
        t_ms = float(trace.events.times_ms[event])
        moments = lab.describe_event(trace, event)
        recent, current = input_data(trace, event)
        with pn.io.hold():
            self._input_sources["lab-events"].data = recent
            self._input_sources["lab-event"].data = current
            self._counts.data = counts_data(trace, event)
            for kind, output in (("hidden", False), ("output", True)):
                fig = self._panes[kind].object
                fig.select({"name": f"lab-{kind}-now"})[0].data = now_data(
                    trace, self._watched(output), moments, t_ms)
                fig.select({"name": f"lab-{kind}-cursor"})[0].location = t_ms
                fig.x_range.start = max(0.0, t_ms - WINDOW_MS * 0.8)
                fig.x_range.end = max(0.0, t_ms - WINDOW_MS * 0.8) + WINDOW_MS
            self._story.object = story_markdown(trace, event, self.label)
            self._position.object = (f"event **{event + 1}** of {trace.n_events}, "
                                     f"t = **{t_ms:.3f} ms** of {trace.duration_ms:g} ms")
            if self._player.value != event:
                self._player.value = event

    def _on_speed(self, event):
        self._player.interval = SPEEDS[self.speed]

    def _build(self):
        """The views (figures, panes, player) and the layout; data arrives with a digit."""
        input_fig = input_figure(np.zeros((28, 28)))
        self._input_sources = {s.name: s for s in input_fig.select({"type": ColumnDataSource})}
        self._image_source = self._input_sources["lab-image"]
        counts_fig = counts_figure(10)
        self._counts = counts_fig.select({"name": "lab-counts"})[0]
        self._panes = {kind: pn.pane.Bokeh(None) for kind in ("hidden", "output")}
        self._pad = draw_figure()
        self._strokes = self._pad.select({"name": "lab-strokes"})[0]
        self._story = pn.pane.Markdown("", css_classes=["lab-story"], width=640)
        self._position = pn.pane.Markdown("", css_classes=["lab-position"])
        self._status = pn.pane.Markdown("", css_classes=["lab-status"], width=280)
        self._player = pn.widgets.Player(
            start=0, end=1, value=0, interval=SPEEDS[self.speed], loop_policy="once",
            show_loop_controls=False, width=420, css_classes=["lab-player"], label="event")
        self._player.param.watch(lambda e: setattr(self, "event", int(e.new)), "value")
        network_mode = pn.Row(self._controls(), pn.Column(
            self._stepping(),
            pn.Row(pn.Column(pn.pane.Bokeh(input_fig), pn.pane.Bokeh(counts_fig)),
                   pn.Column(self._story, self._panes["hidden"], self._panes["output"])),
        ))
        self._layout = pn.Tabs(("Network, event by event", network_mode),
                               ("Single neuron", self.single), css_classes=["lab-modes"])

    def _controls(self):
        w = pn.widgets
        return pn.Column(
            pn.pane.Markdown("## Neuron lab\nPick a digit, run it, then step through its "
                             "events and watch each mechanism act."),
            w.Select.from_param(self.param.source, css_classes=["lab-source"]),
            w.TextInput.from_param(self.param.checkpoint),
            _button("Use network", self.take_network, "lab-use-network"),
            w.IntInput.from_param(self.param.sample, label="test digit",
                                  css_classes=["lab-sample"]),
            w.FloatInput.from_param(self.param.duration_ms, step=10),
            w.TextInput.from_param(self.param.hidden, label="hidden neurons"),
            w.IntInput.from_param(self.param.seed, label="event seed"),
            _button("Run digit", self.run_test_digit, "lab-run"),
            pn.Column(pn.pane.Bokeh(self._pad), css_classes=["lab-pad"]),
            pn.Row(_button("Use drawing", self.use_drawing, "lab-use-drawing"),
                   _button("Clear", self.clear_drawing, "lab-clear-drawing")),
            self._status,
            width=300,
        )

    def _stepping(self):
        jumps = [_button(f"next {m}", lambda m=m: self.jump_to(m), f"lab-next-{m}")
                 for m in ("spike", "inhibition", "clip", "output")]
        return pn.Column(
            pn.Row(_button("< back", lambda: self.step(-1), "lab-back"), self._player,
                   _button("step >", lambda: self.step(1), "lab-step"),
                   pn.widgets.Select.from_param(self.param.speed, width=120)),
            pn.Row(self._position, *jumps),
        )

    def __panel__(self):
        return self._layout
