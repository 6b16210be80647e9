"""The training loop: learning, mid-run settings, resuming bit for bit, faults."""

import json
import math

import numpy as np
import pytest

from spikeviz.config import Config
from spikeviz.data import load_mnist
from spikeviz.errors import ConfigError
from spikeviz.train.trainer import DivergenceError, Trainer, predictions, score_counts

TIMING = ("train_samples_per_s", "test_samples_per_s")


@pytest.fixture(scope="module")
def digits():
    return load_mnist(bundled=True)


def small_config(**changes):
    values = dict(hidden=[100], train_samples=300, test_samples=100, test_duration_ms=200.0)
    values.update(changes)
    return Config(**values)


def same_state(a, b):
    for name in ("weights", "thresholds", "threshold_error", "scale", "sum_sq", "col_sum"):
        np.testing.assert_array_equal(getattr(a.sim.state, name), getattr(b.sim.state, name))
    np.testing.assert_array_equal(a.scale_error, b.scale_error)
    for x, y in zip(a.adam, b.adam):
        np.testing.assert_array_equal(x, y)


def without_timing(history):
    return [{k: v for k, v in m.items() if k not in TIMING} for m in history]


def test_a_short_run_on_real_digits_learns_well_above_chance(digits):
    trainer = Trainer(Config(train_samples=4000, test_samples=500, test_duration_ms=500.0), digits)
    trainer.train_epoch()
    metrics = trainer.finish_epoch()
    assert metrics["test_accuracy"] > 0.7  # chance is 0.1
    assert metrics["train_samples_per_s"] > 0 and metrics["epoch"] == 1
    assert len(metrics["dead_fraction"]) == 2


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_resuming_at_an_epoch_boundary_continues_bit_for_bit(digits, tmp_path, optimizer):
    straight = Trainer(small_config(optimizer=optimizer, epochs=2), digits)
    for _ in range(2):
        straight.train_epoch()
        straight.finish_epoch()

    first = Trainer(small_config(optimizer=optimizer, epochs=2), digits)
    first.train_epoch()
    first.finish_epoch()
    first.save(tmp_path / "last.npz")
    resumed = Trainer.resume(tmp_path / "last.npz", digits)
    resumed.train_epoch()
    resumed.finish_epoch()

    same_state(straight, resumed)
    assert without_timing(straight.history) == without_timing(resumed.history)


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_resuming_mid_epoch_continues_bit_for_bit(digits, tmp_path, dropout):
    straight = Trainer(small_config(dropout=dropout), digits)
    straight.train_epoch()

    stopped = Trainer(small_config(dropout=dropout), digits)
    assert stopped.train_epoch(should_stop=lambda: stopped.position == 137) is False
    stopped.save(tmp_path / "last.npz")
    resumed = Trainer.resume(tmp_path / "last.npz", digits)
    assert resumed.position == 137
    assert resumed.train_epoch() is True

    same_state(straight, resumed)
    for key in ("correct", "silent", "samples"):
        assert straight.tally[key] == resumed.tally[key]
    np.testing.assert_array_equal(straight.tally["spikes"], resumed.tally["spikes"])


def test_a_checkpoint_without_float64_errors_resumes_with_exact_values(digits, tmp_path):
    """Checkpoints written before the thresholds' and scales' float64 errors existed resume."""
    from spikeviz.train.checkpoint import load_checkpoint, save_checkpoint

    trainer = Trainer(small_config(), digits)
    trainer.train_epoch()
    trainer.finish_epoch()
    assert np.any(trainer.sim.state.threshold_error != 0)  # training left some
    assert np.any(trainer.scale_error != 0)
    trainer.save(tmp_path / "new.npz")
    arrays, meta = load_checkpoint(tmp_path / "new.npz")
    del arrays["threshold_error"], arrays["scale_error"]
    save_checkpoint(tmp_path / "old.npz", arrays, meta)
    resumed = Trainer.resume(tmp_path / "old.npz", digits)
    np.testing.assert_array_equal(resumed.sim.state.thresholds, trainer.sim.state.thresholds)
    assert not np.any(resumed.sim.state.threshold_error)
    assert not np.any(resumed.scale_error)
    resumed.train_epoch()  # and trains on


def test_a_setting_changed_mid_run_takes_effect_at_the_next_sample(digits):
    config = small_config()
    trainer = Trainer(config, digits)
    trainer.train_sample()
    before = config.kappa_hidden
    assert trainer.kappas[0] == before != -0.8
    config.kappa_hidden = -0.8
    config.eta_w = 0.0005
    assert trainer.kappas[0] == before  # nothing changes inside a sample ...
    trainer.train_sample()
    assert trainer.kappas[0] == -0.8  # ... and everything at the next one
    assert trainer.hyper.eta_w == 0.0005


def test_the_neuron_dynamics_come_from_the_config_and_rho_from_its_schedule(digits):
    config = small_config(tau_mp_ms=30.0, t_ref_ms=2.0, w_dyn0=0.1, gamma=0.8, rho=1e-4,
                          weight_boost=0.5, spread_blocked=True, lr_decay_epochs=2.0)
    trainer = Trainer(config, digits)
    trainer.train_sample()
    expected = dict(tau_mp_ms=30.0, t_ref_ms=2.0, w_dyn0=0.1, gamma=0.8, rho=1e-4,
                    weight_boost=0.5, spread_blocked=True)
    assert trainer.dynamics._asdict() == pytest.approx(expected)
    assert config.dynamics()._asdict() == pytest.approx({**expected, "rho": 0.0})  # inference
    trainer.epoch = 1
    config.gamma = 0.6  # mid-run: taken up at the next sample, rho decayed with the epoch
    config.spread_blocked = False
    trainer.train_sample()
    assert trainer.dynamics.gamma == pytest.approx(0.6)
    assert not trainer.dynamics.spread_blocked
    assert trainer.dynamics.rho == pytest.approx(1e-4 * np.exp(-0.5))


def test_the_method_decisions_are_config_options_read_at_the_next_sample(digits):
    config = small_config()
    trainer = Trainer(config, digits)
    trainer.train_sample()
    assert trainer.hyper.wta_effective and trainer.hyper.wta_factor
    assert trainer.hyper.decay_exponential
    assert not trainer.hyper.use_counts and trainer.hyper.all_outputs
    config.param.update(wta_error="plain", weight_decay="first_order", trace="counts",
                        output_error="active")
    trainer.train_sample()
    assert not trainer.hyper.wta_effective and not trainer.hyper.decay_exponential
    assert trainer.hyper.use_counts and not trainer.hyper.all_outputs
    config.wta_error = "bracket"
    trainer.train_sample()
    assert trainer.hyper.wta_effective and not trainer.hyper.wta_factor
    assert not trainer.hyper.wta_fired
    config.wta_members = "fired"
    trainer.train_sample()
    assert trainer.hyper.wta_fired
    assert trainer.hyper.output_normalized
    config.output_scale = "threshold"
    trainer.train_sample()
    assert not trainer.hyper.output_normalized


def test_max_step_is_read_at_the_next_sample_and_its_cuts_are_counted_per_epoch(digits):
    config = small_config(optimizer="sgd", train_samples=100)
    trainer = Trainer(config, digits)
    trainer.train_epoch()
    assert trainer.hyper.max_step == 0.0  # None: unbounded
    assert trainer.finish_epoch(evaluate=False)["cut_step_fraction"] == [0.0, 0.0]
    config.max_step = 1e-6  # every step is longer than that
    trainer.train_epoch()
    assert trainer.hyper.max_step == 1e-6
    assert trainer.finish_epoch(evaluate=False)["cut_step_fraction"] == [1.0, 1.0]
    config.max_step = 0.003  # about the median step of either layer in this first epoch
    trainer.train_epoch()
    cut = trainer.finish_epoch(evaluate=False)["cut_step_fraction"]
    assert all(0.0 < c < 1.0 for c in cut)
    assert not trainer.hyper.max_step_thresholds
    config.max_step_thresholds = True
    trainer.train_sample()
    assert trainer.hyper.max_step_thresholds


def test_dropout_silences_a_new_share_of_hidden_neurons_every_sample(digits):
    config = small_config(hidden=[200, 100], dropout=0.4, train_samples=50)
    trainer = Trainer(config, digits)
    hidden_end = trainer.network.neuron_start[-2]
    keep, masks = trainer.sim.keep, []
    for _ in range(20):
        trainer.train_sample()
        masks.append(keep[:hidden_end].copy())
        assert trainer.sim.state.counts[:hidden_end][keep[:hidden_end] == 0].sum() == 0
        assert keep[hidden_end:].all()  # output neurons always take part
    masks = np.array(masks)
    assert abs(1 - masks.mean() - 0.4) < 0.02  # 6,000 draws
    assert len({m.tobytes() for m in masks}) == 20
    assert trainer.sim.state.counts[:hidden_end].sum() > 0
    config.dropout = 0.0  # read at the next sample: every neuron takes part again
    trainer.train_sample()
    assert keep.all()


def test_with_dropout_tests_present_every_neuron_with_the_weights_as_trained(digits):
    trainer = Trainer(small_config(hidden=[60, 40], dropout=0.25, train_samples=40), digits)
    trainer.train_epoch()
    hidden_end = trainer.network.neuron_start[-2]
    assert not trainer.sim.keep[:hidden_end].all()  # the last training sample's draw
    trainer.evaluate(n_samples=30)
    counts = trainer.last_test[0].copy()
    assert counts.sum() > 50  # the comparison below covers real output
    trainer.sim.keep[:hidden_end] = 0.0  # whatever training silenced, tests do not see it
    trainer.evaluate(n_samples=30)
    np.testing.assert_array_equal(trainer.last_test[0], counts)


def test_max_step_stays_fixed_unless_it_decays_with_the_learning_rate():
    config = Config(max_step=0.01, lr_decay_epochs=35.0)
    assert config.max_step_now(70) == 0.01
    config.max_step_decays = True
    assert config.max_step_now(0) == 0.01
    assert config.max_step_now(70) == pytest.approx(0.01 * math.exp(-2.0))
    assert config.max_step_now(70) / 0.01 == pytest.approx(
        config.learning_rates(70)[0] / config.learning_rates(0)[0])
    assert Config(max_step_decays=True).max_step_now(70) == 0.0  # unbounded stays unbounded


def test_dead_fractions_are_undefined_until_the_epoch_has_a_sample(digits):
    trainer = Trainer(small_config(), digits)
    assert all(np.isnan(trainer.firing_statistics()["dead_fraction"]))
    trainer.train_sample()
    dead = trainer.firing_statistics()["dead_fraction"]
    assert all(0.0 <= d <= 1.0 for d in dead) and dead[0] < 1.0


def test_a_nan_weight_stops_the_run_naming_the_layer(digits):
    trainer = Trainer(small_config(), digits)
    trainer.train_sample()
    trainer.network.weights[1][3, 2] = np.nan
    with pytest.raises(DivergenceError, match="layer 1 .*NaN.*eta_w"):
        trainer.check_health()


@pytest.mark.parametrize("alpha_hidden", [None, 10.0])
def test_alpha_hidden_sets_the_hidden_thresholds_and_floors_alone(digits, alpha_hidden):
    """(9) with one alpha for the hidden layers and another for the output layer."""
    trainer = Trainer(small_config(hidden=[12, 8], alpha=3.0, alpha_hidden=alpha_hidden), digits)
    network = trainer.network
    expected = [alpha_hidden or 3.0] * 2 + [3.0]
    for layer, (fan_in, alpha) in enumerate(zip(network.sizes[:-1], expected)):
        initial = alpha * np.sqrt(3.0 / fan_in)
        np.testing.assert_allclose(network.thresholds[layer], initial, rtol=1e-6)
        assert network.threshold_floors[layer] == pytest.approx(0.5 * initial, rel=1e-6)


def test_a_layer_silent_for_a_whole_epoch_stops_the_run(digits):
    trainer = Trainer(small_config(alpha=20.0, train_samples=50), digits)
    trainer.train_epoch()
    with pytest.raises(DivergenceError, match="every neuron of layer 1 stayed silent.*alpha"):
        trainer.finish_epoch()


def test_an_epoch_without_output_spikes_stops_the_run(digits):
    """Every layer kept some spikes (none wholly dead), but no sample reached an output spike."""
    trainer = Trainer(small_config(train_samples=50), digits)
    trainer.train_epoch()
    assert max(trainer.firing_statistics()["dead_fraction"]) < 1.0
    trainer.tally["silent"] = trainer.tally["samples"]
    with pytest.raises(DivergenceError, match="fell silent: 100.00% of the samples of epoch 1.*eta_w"):
        trainer.finish_epoch()


def test_exploding_learning_rates_are_caught(digits):
    trainer = Trainer(small_config(optimizer="sgd", eta_w=1.0, eta_th=0.0, rho=0.0, lam=0.0,
                                    train_samples=300),
                      digits)
    with pytest.raises(DivergenceError, match="weights of layer 0 exploded.*lower eta_w"):
        trainer.train_epoch()
        trainer.finish_epoch()


def test_predictions_count_ties_and_silence_as_errors():
    counts = np.array([[0, 3, 1], [2, 2, 0], [0, 0, 0], [5, 0, 1]])
    assert predictions(counts).tolist() == [1, -1, -1, 0]


def test_the_score_says_which_errors_were_ties_and_silence():
    counts = np.array([[0, 3, 1], [2, 2, 0], [0, 0, 0], [5, 0, 1], [0, 1, 4]])
    score = score_counts(counts, np.array([1, 0, 2, 0, 1]))
    assert score == {"test_accuracy": 0.4, "test_tied_fraction": 0.2,
                     "test_no_output_fraction": 0.2}


def test_a_tie_goes_to_the_tied_neuron_closest_to_its_next_spike():
    counts = np.array([[0, 3, 1], [2, 2, 0], [2, 2, 0], [1, 1, 1], [0, 0, 0], [2, 0, 2]])
    closeness = np.array([[0.9, -0.5, 0.1],   # no tie: the count decides, not V/Vth
                          [-0.2, 0.4, 0.9],   # neuron 2 is closest but not among the tied
                          [0.5, -0.1, 0.0],
                          [0.3, 0.3, 0.1],    # the closest two are tied too: undecided
                          [0.8, 0.1, 0.0],    # nothing fired: no answer
                          [-1.0, 0.5, -0.99]])
    assert predictions(counts, closeness).tolist() == [1, 1, 0, -1, -1, 2]
    assert predictions(counts).tolist() == [1, -1, -1, -1, -1, -1]
    score = score_counts(counts, np.array([1, 1, 1, 0, 0, 2]), closeness)
    assert score["test_accuracy"] == pytest.approx(1 / 6)
    assert score["test_accuracy_tie_break"] == pytest.approx(3 / 6)


def test_a_checkpoint_of_another_network_is_rejected(digits, tmp_path):
    trainer = Trainer(small_config(), digits)
    trainer.save(tmp_path / "last.npz")
    with pytest.raises(ConfigError, match=r"hidden layers \[100\].*--hidden"):
        Trainer.resume(tmp_path / "last.npz", digits, small_config(hidden=[50]))
    with pytest.raises(ConfigError, match="optimizer adam"):
        Trainer.resume(tmp_path / "last.npz", digits, small_config(optimizer="sgd"))


def test_a_truncated_checkpoint_is_a_clear_error(digits, tmp_path):
    trainer = Trainer(small_config(), digits)
    path = tmp_path / "last.npz"
    trainer.save(path)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ConfigError, match="unreadable or truncated"):
        Trainer.resume(path, digits)


def test_config_rejects_unknown_keys_and_out_of_range_values(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown setting\(s\) \['kapa_hidden'\]"):
        Config.from_dict({"kapa_hidden": -0.4})
    with pytest.raises(ConfigError, match="kappa_hidden"):
        Config.from_dict({"kappa_hidden": -1.5})
    path = tmp_path / "config.json"
    Config(hidden=[500, 500], kappa_deeper=[0.0], eta_w=0.003, optimizer="adam").save(path)
    loaded = Config.load(path)
    assert loaded.hidden == [500, 500] and loaded.eta_w == 0.003 and loaded.optimizer == "adam"
    assert json.loads(path.read_text())["kappa_output"] == -1.0


def test_schedules_follow_the_paper():
    config = Config(hidden=[500, 500], eta_w=0.004, rho=1e-4, optimizer="sgd", kappa_hidden=-0.4)
    eta_w, eta_th, rho = config.learning_rates(35)
    assert eta_w == pytest.approx(0.004 * np.exp(-1)) and rho == pytest.approx(1e-4 * np.exp(-1))
    assert eta_th == pytest.approx(10 * eta_w)
    assert config.duration_ms(0) == 200.0 and config.duration_ms(1) == 50.0
    assert Config(hidden=[800]).duration_ms(0) == 50.0
    assert config.kappas() == [-0.4, 0.0, -1.0]  # no WTA in the second hidden layer
    # Unset learning rates follow the optimizer: Table 1's eta_w for SGD with a threshold rate
    # that lets the thresholds learn (docs/results.md), the measured best for ADAM.
    assert Config(optimizer="sgd").learning_rates(0)[:2] == (0.002, pytest.approx(0.02))
    assert Config(optimizer="sgd", eta_th=0.0002).learning_rates(0)[1] == 0.0002
    assert Config(optimizer="adam").learning_rates(0)[:2] == (0.001, 0.001)


def test_the_weight_boost_follows_the_optimizer_unless_set(digits):
    assert Config(optimizer="adam").dynamics().weight_boost == pytest.approx(0.01)
    assert Config(optimizer="sgd").dynamics().weight_boost == 1.0  # METHOD.md's
    assert Config(optimizer="sgd", weight_boost=0.1).dynamics().weight_boost == pytest.approx(0.1)
    trainer = Trainer(small_config(optimizer="adam"), digits)
    trainer.train_sample()
    assert trainer.dynamics.weight_boost == pytest.approx(0.01)
    trainer.config.optimizer = "sgd"  # e.g. from the app, mid-run: the next sample uses SGD's
    trainer.train_sample()
    assert trainer.dynamics.weight_boost == 1.0
