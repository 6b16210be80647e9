"""The training loop: Python drives epochs, schedules, evaluation and checkpoints; each sample is
three compiled calls (encode, forward, backward+update).

Settings are read from the :class:`~spikeviz.config.Config` at sample boundaries: a watcher marks
the compiled settings stale whenever a value changes, and the next sample rebuilds them, so a
widget moved mid-run takes effect at the next sample, never half-applied.

Reproducibility: epoch e presents the training set in the order ``default_rng([seed, e])``
draws and takes its input events from one generator seeded ``[seed, e, 1]``; test sample i
takes its events from ``[seed + 2**31, i]``.  A checkpoint stores the generator's state and the position in
the epoch, so a resumed run continues exactly as if never stopped.
"""

import math
import time

import numpy as np

from spikeviz.engine import Simulator, check_kappas, init_network
from spikeviz.engine.batch import infer_samples
from spikeviz.errors import ConfigError, SpikevizError
from spikeviz.train import backprop
from spikeviz.train.checkpoint import load_checkpoint, save_checkpoint
from spikeviz.train.tasks import make_task

TEST_SEED_OFFSET = 2**31


#: A neuron's sum of squared weights is about 1 at initialization (eq. (10)) and the regularizer
#: (13) holds hidden ones near it; ten thousand times that is an explosion, not learning.
EXPLODED_SUM_SQ = 1e4
# An epoch whose samples (nearly) all end without an output spike: the network fell silent (a
# deep SGD run that collapsed kept a few early spikes per layer, so no layer was wholly dead).
SILENT_EPOCH_FRACTION = 0.99


class DivergenceError(SpikevizError):
    """Training went wrong: NaN or infinite values, exploding firing, or a dead layer."""


def predictions(counts, closeness=None):
    """Label of each row of output counts; -1 where no neuron fired or the maximum is tied.

    With ``closeness`` (each output neuron's V/Vth at the end of the sample, as
    :func:`~spikeviz.engine.batch.infer_samples` fills it), a tied maximum goes to the tied
    neuron closest to its next spike; -1 only if that is tied too, or nothing fired.
    """
    if closeness is None:
        closeness = np.zeros(counts.shape)  # every tie stays a tie
    top = counts.max(axis=1)
    nearest = np.where(counts == top[:, None], closeness, -np.inf)
    decided = (nearest == nearest.max(axis=1)[:, None]).sum(axis=1) == 1
    return np.where((top > 0) & decided, nearest.argmax(axis=1), -1)


def score_counts(counts, labels, closeness=None):
    """Accuracy of output counts against labels, and the fractions of samples that count as
    errors without a wrong winner: a tied maximum, or no output spike at all.

    With ``closeness`` also ``test_accuracy_tie_break``: ties decided by :func:`predictions`'
    tie-break. The paper does not say how it scored ties; ``test_accuracy`` counts them as
    errors, the stricter reading."""
    top = counts.max(axis=1)
    tied = (top > 0) & ((counts == top[:, None]).sum(axis=1) > 1)
    score = {"test_accuracy": float(np.mean(predictions(counts) == labels)),
             "test_tied_fraction": float(np.mean(tied)),
             "test_no_output_fraction": float(np.mean(top == 0))}
    if closeness is not None:
        score["test_accuracy_tie_break"] = float(np.mean(predictions(counts, closeness) == labels))
    return score


class Trainer:
    """Trains a network with the paper's method.

    Parameters
    ----------
    config : Config
    data : MNIST (images, presented as Poisson events) or NMNIST (event-camera recordings)
    """

    def __init__(self, config, data):
        config.check()
        self.config = config
        self.data = data
        self.task = make_task(config, data)
        self.last_test = None  # (output counts, labels) of the last evaluation
        self.n_inputs = self.task.n_inputs
        sizes = (self.n_inputs, *config.hidden, 10)
        self.network = init_network(sizes, np.random.default_rng(config.seed),
                                    alpha=config.alphas(), floor_fraction=config.floor_fraction)
        self.sim = Simulator(self.network)
        n_neurons, n_weights = self.network.flat_thresholds.size, self.network.flat_weights.size
        adam = config.optimizer == "adam"
        dense = adam and config.adam_update == "dense"
        # The two moments of a parameter sit side by side (one cache line for both): the weight
        # updates of a sample are scattered, and a second miss per update cost ~20% of a step.
        moments_w = np.zeros((n_weights if adam else 0, 2), np.float32)
        moments_th = np.zeros((n_neurons if adam else 0, 2), np.float32)
        self.adam = backprop.Adam(moments_w[:, 0], moments_w[:, 1], moments_th[:, 0],
                                  moments_th[:, 1], np.zeros(1, np.int64))
        # float64 rest of each float32 weight scale (see backprop.regularize_weights)
        self.scale_error = np.zeros(n_neurons)
        self.scratch = backprop.Scratch(
            delta=np.zeros(n_neurons), takes_part=np.zeros(n_neurons, np.bool_),
            active=np.zeros(max(sizes), np.int64), part=np.zeros(max(sizes), np.int64),
            grad_w=np.zeros(n_weights if dense else 0), grad_th=np.zeros(n_neurons if dense else 0),
            step_cuts=np.zeros((len(sizes) - 1, 2), np.int64),
        )
        self.epoch, self.position = 0, 0
        self.history = []
        self._start_epoch()
        self._stale = True
        config.param.watch(self._mark_stale, [name for name in config.param if name != "name"])

    # --- settings ---
    def _mark_stale(self, *events):
        self._stale = True

    def _compile_settings(self):
        """Kernel arguments from the config, for the current epoch."""
        try:
            self._read_settings()
        except BaseException:
            self._stale = True  # nothing half-compiled is used: try again at the next sample
            raise

    def _read_settings(self):
        c = self.config
        self._stale = False  # first: a change made while this runs marks the settings stale again
        c.check()
        eta_w, eta_th, rho = c.learning_rates(self.epoch)
        self.kappas = check_kappas(c.kappas(), len(c.hidden) + 1)
        self.task.update()
        self.duration_ms = float(c.duration_ms(self.epoch))
        self.dynamics = c.dynamics(rho)
        self.hyper = backprop.Hyper(
            eta_w=eta_w, eta_th=eta_th, sigma=c.sigma, gamma=c.gamma, lam=c.lam, beta=c.beta,
            use_counts=c.trace == "counts", all_outputs=c.output_error == "all",
            output_normalized=c.output_scale == "normalized",
            adam=c.optimizer == "adam", adam_dense=c.adam_update == "dense",
            wta_effective=c.wta_error != "plain", wta_factor=c.wta_error == "effective",
            wta_fired=c.wta_members == "fired",
            decay_exponential=c.weight_decay == "exponential",
            decay_output=c.weight_decay_layers == "all",
            max_step=c.max_step_now(self.epoch), max_step_thresholds=c.max_step_thresholds,
            beta1=c.adam_beta1, beta2=c.adam_beta2, eps=c.adam_eps,
        )
        self.dropout = float(c.dropout)
        if not self.dropout:
            self.sim.keep[:] = 1.0  # dropout just turned off: every neuron takes part
        if self.hyper.adam and self.adam.m_w.size == 0:
            raise ConfigError("the optimizer cannot change from SGD to ADAM within a run")

    # --- epochs ---
    @property
    def n_train(self):
        """Training samples in this epoch, fixed at its start (read per sample: a plain field,
        not the config's param lookup)."""
        return self._n_train

    def _start_epoch(self):
        n = len(self.task.train_labels)
        self._n_train = min(n, self.config.train_samples or n)
        self.order = np.random.default_rng([self.config.seed, self.epoch]).permutation(self.n_train)
        self.event_rng = np.random.default_rng([self.config.seed, self.epoch, 1])
        self.position = 0
        self.tally = {"correct": 0, "silent": 0, "loss": 0.0, "samples": 0, "seconds": 0.0,
                      "spikes": np.zeros(self.network.flat_thresholds.size, np.int64)}
        self.scratch.step_cuts[:] = 0
        self._stale = True

    def train_sample(self):
        """Train on the next sample of the epoch; returns (label, predicted, loss)."""
        if self._stale:
            self._compile_settings()
        index = self.order[self.position]
        label = int(self.task.train_labels[index])
        events, end_ms = self.task.train_sample(index, self.duration_ms, self.event_rng)
        if self.dropout > 0.0:
            self._silence_hidden_neurons()
        self.sim.run_checked(events.times_ms, events.channels, end_ms, self.kappas, self.dynamics)
        loss, predicted = backprop.train_step(
            self.sim.state, self.scale_error, self.sim.inputs, label, self.kappas,
            self.network.threshold_floors, self.hyper, self.adam, self.scratch,
        )
        self.position += 1
        tally = self.tally
        tally["correct"] += predicted == label
        tally["silent"] += predicted == -1 and self.sim.counts(-1).max() == 0
        tally["loss"] += loss
        tally["samples"] += 1
        tally["spikes"] += self.sim.state.counts
        return label, predicted, loss

    def _silence_hidden_neurons(self):
        """Dropout: a new random set of hidden neurons sits this sample out. The draw depends
        on (seed, epoch, position) alone, so a resumed run silences the same neurons."""
        rng = np.random.default_rng([self.config.seed, self.epoch, 2, self.position])
        hidden_end = self.network.neuron_start[-2]
        keep = self.sim.keep
        keep[:hidden_end] = rng.random(hidden_end) >= self.dropout

    def train_epoch(self, on_sample=None, should_stop=None):
        """Train until the end of the epoch (or until ``should_stop()``); True when finished."""
        start = time.perf_counter()
        try:
            while self.position < self.n_train:
                if should_stop is not None and should_stop():
                    return False
                result = self.train_sample()
                if on_sample is not None:
                    on_sample(*result)
                if self.position % 1000 == 0:
                    self.check_health()
        finally:
            self.tally["seconds"] += time.perf_counter() - start
        return True

    def finish_epoch(self, evaluate=True):
        """Fold the weight scales, check health, evaluate; returns the epoch's metrics."""
        backprop.fold_scale(self.sim.state, self.scale_error)
        self.check_health(epoch_end=True)
        tally = self.tally
        n = max(tally["samples"], 1)
        metrics = {
            "epoch": self.epoch + 1,
            "train_accuracy": tally["correct"] / n,
            "loss": tally["loss"] / n,
            "train_samples_per_s": tally["samples"] / max(tally["seconds"], 1e-9),
            "no_output_fraction": tally["silent"] / n,
            "duration_ms": self.duration_ms,
            "eta_w": self.hyper.eta_w, "rho": self.dynamics.rho,
        }
        metrics.update(self.firing_statistics())
        if evaluate:
            metrics.update(self.evaluate())
        self.history.append(metrics)
        self.epoch += 1
        self._start_epoch()
        return metrics

    def firing_statistics(self):
        """Per layer: fraction of neurons silent all epoch, and spikes per neuron per sample.

        Before the epoch's first sample no neuron has had a chance to fire: the dead fractions
        are NaN then, not 1.
        """
        spikes, starts = self.tally["spikes"], self.network.neuron_start
        n = max(self.tally["samples"], 1)
        layers = [spikes[a:b] for a, b in zip(starts[:-1], starts[1:])]
        seen = self.tally["samples"] > 0
        return {
            "dead_fraction": [float(np.mean(s == 0)) if seen else math.nan for s in layers],
            "spikes_per_neuron_per_sample": [float(s.mean() / n) for s in layers],
            # neuron weight steps that max_step shortened (0 while it is unset or never binds)
            "cut_step_fraction": [float(cut / max(taken, 1))
                                  for cut, taken in self.scratch.step_cuts],
        }

    def evaluate(self, n_samples=None, workers=None, on_chunk=None):
        """Test accuracy with ``test_duration_ms`` presentations, on every core."""
        backprop.fold_scale(self.sim.state, self.scale_error)
        n = len(self.task.test_labels)
        n = min(n, n_samples or self.config.test_samples or n)
        start = time.perf_counter()
        closeness = np.zeros((n, self.network.sizes[-1]), np.float32)
        counts = infer_samples(
            self.network, n, self.task.test_sample, kappas=self.kappas_now(),
            dynamics=self.dynamics_now(), seed=self.config.seed + TEST_SEED_OFFSET,
            workers=workers, on_chunk=on_chunk, closeness=closeness,
        )
        seconds = time.perf_counter() - start
        labels = np.asarray(self.task.test_labels[:n])
        self.last_test = (counts, labels)
        return {**score_counts(counts, labels, closeness), "test_samples": n,
                "test_samples_per_s": n / seconds}

    def kappas_now(self):
        if self._stale:
            self._compile_settings()
        return self.kappas

    def dynamics_now(self):
        if self._stale:
            self._compile_settings()
        return self.dynamics

    # --- faults ---
    def check_health(self, epoch_end=False):
        """Stop a diverging run with a message naming the layer and the likely setting."""
        state, starts = self.sim.state, self.network.neuron_start
        for layer, (a, b) in enumerate(zip(starts[:-1], starts[1:])):
            w = self.network.weights[layer]
            if not (np.isfinite(state.thresholds[a:b]).all() and np.isfinite(state.scale[a:b]).all()
                    and np.isfinite(w).all()):
                raise DivergenceError(
                    f"layer {layer} has NaN or infinite weights or thresholds after "
                    f"{self.position} samples of epoch {self.epoch + 1}: lower eta_w "
                    f"(now {self.hyper.eta_w:g}) or lam (now {self.config.lam})"
                )
            sum_sq = state.scale[a:b].astype(np.float64) ** 2 * state.sum_sq[a:b]
            if sum_sq.max() > EXPLODED_SUM_SQ:
                raise DivergenceError(
                    f"the weights of layer {layer} exploded: neuron {int(np.argmax(sum_sq))} has a "
                    f"sum of squared weights of {sum_sq.max():.3g} (about 1 at initialization, "
                    f"eq. (10)) after {self.position} samples of epoch {self.epoch + 1}: lower "
                    f"eta_w (now {self.hyper.eta_w:g}) or raise lam (now {self.config.lam})"
                )
        stats = self.firing_statistics()
        max_rate = 1000.0 / max(self.config.t_ref_ms, 0.1)  # spikes/s a refractory neuron allows
        per_sample_limit = max_rate * self.duration_ms / 1000.0
        for layer, rate in enumerate(stats["spikes_per_neuron_per_sample"]):
            if rate > per_sample_limit:
                raise DivergenceError(
                    f"layer {layer} fires {rate:.1f} spikes per neuron per sample, more than its "
                    f"refractory period allows: firing exploded; lower eta_w or raise alpha"
                )
        if epoch_end and self.tally["samples"] > 0:
            for layer, dead in enumerate(stats["dead_fraction"]):
                if dead == 1.0:
                    raise DivergenceError(
                        f"every neuron of layer {layer} stayed silent for a whole epoch: lower "
                        f"alpha (now {self.config.alpha}) or raise rate_hz (now {self.config.rate_hz})"
                    )
            silent = self.tally["silent"] / self.tally["samples"]
            if silent >= SILENT_EPOCH_FRACTION:
                raise DivergenceError(
                    f"the network fell silent: {silent:.2%} of the samples of epoch "
                    f"{self.epoch + 1} ended with no output spike; lower eta_w (now "
                    f"{self.hyper.eta_w:g}) or weight_boost (now {self.dynamics.weight_boost:g})"
                )

    # --- checkpoints ---
    def save(self, path):
        state = self.sim.state
        arrays = {
            "weights": state.weights, "thresholds": state.thresholds,
            "threshold_error": state.threshold_error, "scale": state.scale,
            "scale_error": self.scale_error,
            "sum_sq": state.sum_sq, "col_sum": state.col_sum,
            "threshold_floors": self.network.threshold_floors,
            "weight_start": self.network.weight_start, "neuron_start": self.network.neuron_start,
            "adam_m_w": self.adam.m_w, "adam_v_w": self.adam.v_w, "adam_m_th": self.adam.m_th,
            "adam_v_th": self.adam.v_th, "adam_step": self.adam.step,
            "order": self.order, "tally_spikes": self.tally["spikes"],
        }
        tally = {k: v for k, v in self.tally.items() if k != "spikes"}
        meta = {
            "config": self.config.to_dict(), "epoch": self.epoch, "position": self.position,
            "event_rng": self.event_rng.bit_generator.state, "tally": _jsonable(tally),
            "history": self.history,
        }
        save_checkpoint(path, arrays, meta)

    @classmethod
    def resume(cls, path, data, config=None):
        """A trainer that continues the run saved in ``path``.

        ``config``, if given, replaces the saved settings (e.g. more epochs); the network must
        have the same shape.
        """
        from spikeviz.config import Config

        arrays, meta = load_checkpoint(path)
        if "averaged_epochs" in meta:
            first, last = meta["averaged_epochs"]
            raise ConfigError(f"{path} is the average of epochs {first}-{last} of a run, for "
                              "`spikeviz evaluate`; it has no optimizer state to train on. "
                              "Continue from one of the run's epoch-NNN.npz or last.npz")
        saved = Config.from_dict(meta["config"], source=f"{path} (config)")
        config = config or saved
        if list(config.hidden) != list(saved.hidden):
            raise ConfigError(f"checkpoint {path} holds a network with hidden layers {saved.hidden}, "
                              f"not {config.hidden}: use the same --hidden to resume")
        trainer = cls(config, data)
        if not np.array_equal(arrays["neuron_start"], trainer.network.neuron_start) or not \
                np.array_equal(arrays["weight_start"], trainer.network.weight_start):
            raise ConfigError(f"checkpoint {path} does not fit the data's input size "
                              f"{trainer.n_inputs}: it was trained on other data")
        state = trainer.sim.state
        for name in ("weights", "thresholds", "scale", "sum_sq", "col_sum"):
            getattr(state, name)[:] = arrays[name]
        # older checkpoints have none: their thresholds and scales are exact as stored
        state.threshold_error[:] = arrays.get("threshold_error", 0.0)
        trainer.scale_error[:] = arrays.get("scale_error", 0.0)
        trainer.network.threshold_floors[:] = arrays["threshold_floors"]
        for name, value in zip(backprop.Adam._fields, trainer.adam):
            saved_value = arrays[f"adam_{name}"]
            if saved_value.shape != value.shape:
                raise ConfigError(f"checkpoint {path} was trained with optimizer "
                                  f"{saved.optimizer}; resume with --optimizer {saved.optimizer}")
            value[:] = saved_value
        trainer.epoch = meta["epoch"]
        trainer.history = meta["history"]
        trainer._start_epoch()
        if len(arrays["order"]) != trainer.n_train:
            raise ConfigError(f"checkpoint {path} is in an epoch of {len(arrays['order'])} samples "
                              f"but the data and settings give {trainer.n_train}: resume with the "
                              "same data and --train-samples")
        trainer.position = meta["position"]
        trainer.order = arrays["order"]
        trainer.event_rng.bit_generator.state = meta["event_rng"]
        trainer.tally.update(meta["tally"])
        trainer.tally["spikes"] = arrays["tally_spikes"].copy()
        return trainer

    @classmethod
    def from_checkpoint_network(cls, path):
        """(Network, Config) stored in a checkpoint, for evaluation and inspection."""
        from spikeviz.config import Config
        from spikeviz.engine import Network

        arrays, meta = load_checkpoint(path)
        config = Config.from_dict(meta["config"], source=f"{path} (config)")
        starts, nstarts = arrays["weight_start"], arrays["neuron_start"]
        weights, thresholds = [], []
        for layer in range(len(nstarts) - 1):
            n = nstarts[layer + 1] - nstarts[layer]
            weights.append(arrays["weights"][starts[layer]:starts[layer + 1]].reshape(-1, n))
            thresholds.append(arrays["thresholds"][nstarts[layer]:nstarts[layer + 1]])
        stored = Network(weights, thresholds, arrays["threshold_floors"])
        return stored.scaled(arrays["scale"]), config, meta


def _jsonable(values):
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in values.items()}

