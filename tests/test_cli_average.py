"""``spikeviz average``: one network from a run's last epochs, for ``spikeviz evaluate``."""

import numpy as np
import pytest

from spikeviz.cli import main
from spikeviz.engine import Network
from spikeviz.train.average import real_weights, write_average
from spikeviz.train.checkpoint import load_checkpoint
from spikeviz.train.trainer import Trainer

SMALL = ["--bundled", "--hidden", "40", "--train-samples", "200", "--test-samples", "50",
         "--test-duration-ms", "100"]


pytestmark = pytest.mark.usefixtures("no_user_data")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A run of three epochs."""
    out = tmp_path_factory.mktemp("average") / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SPIKEVIZ_CACHE_DIR", str(out.parent / "cache"))
        patch.delenv("SPIKEVIZ_DATA", raising=False)
        assert main(["train", *SMALL, "--epochs", "3", "--out", str(out)]) == 0
    return out


def network(path):
    return Trainer.from_checkpoint_network(path)[0]


def test_the_average_holds_the_mean_of_the_epochs_real_weights_and_thresholds(run, tmp_path):
    averaged = network(write_average(run, 2, 3, tmp_path / "avg.npz"))
    second, third = network(run / "epoch-002.npz"), network(run / "epoch-003.npz")
    for layer, (w2, w3) in enumerate(zip(second.weights, third.weights)):
        assert not np.allclose(w2, w3)  # the epochs differ, so the mean is neither of them
        np.testing.assert_allclose(averaged.weights[layer], (w2 + w3) / 2, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(averaged.thresholds[layer],
                                   (second.thresholds[layer] + third.thresholds[layer]) / 2,
                                   rtol=1e-6)
    np.testing.assert_array_equal(averaged.threshold_floors, third.threshold_floors)


def test_real_weights_apply_each_neurons_scale_like_the_network_does():
    """Epoch checkpoints have their scales folded in; one written mid-epoch (last.npz) has not."""
    rng = np.random.default_rng(0)
    weights = [rng.normal(size=(4, 3)), rng.normal(size=(3, 2))]
    scale = np.array([1.0, 2.0, 0.5, 10.0, -1.0])
    stored = Network(weights, [np.ones(3), np.ones(2)])
    arrays = {"weights": stored.flat_weights, "scale": scale,
              "weight_start": stored.weight_start, "neuron_start": stored.neuron_start}
    expected = np.concatenate([w.ravel() for w in stored.scaled(scale).weights])
    np.testing.assert_allclose(real_weights(arrays), expected, rtol=1e-6)


def test_the_cli_averages_the_last_epochs_and_evaluate_names_them(run, capsys):
    assert main(["average", str(run), "--last", "2"]) == 0
    written = run / "average-002-003.npz"
    assert str(written) in capsys.readouterr().out
    _, meta = load_checkpoint(written)
    assert meta["averaged_epochs"] == [2, 3]
    assert main(["evaluate", str(written), "--bundled", "--test-samples", "30"]) == 0
    assert "average of the networks of epochs 2-3" in capsys.readouterr().out

    assert main(["average", str(run)]) == 0  # fewer than 20 epochs: all of them
    assert (run / "average-001-003.npz").is_file()
    single = run / "one.npz"
    assert main(["average", str(run), "--epochs", "3-3", "--out", str(single)]) == 0
    for mine, its in zip(network(single).weights, network(run / "epoch-003.npz").weights):
        np.testing.assert_allclose(mine, its, rtol=1e-6)


@pytest.mark.parametrize("args, message", [
    (["--epochs", "2-5"], "epoch-004.npz does not exist"),
    (["--epochs", "3-1"], "FIRST-LAST"),
    (["--epochs", "last"], "FIRST-LAST"),
    (["--last", "0"], "at least one epoch"),
])
def test_a_span_the_run_does_not_have_is_refused(run, capsys, args, message):
    assert main(["average", str(run), *args]) == 2
    assert message in capsys.readouterr().err


def test_a_directory_without_epochs_is_refused(tmp_path, capsys):
    assert main(["average", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["average", str(tmp_path)]) == 2
    assert "no epoch-NNN.npz" in capsys.readouterr().err


def test_checkpoints_of_different_networks_are_not_averaged(run, tmp_path, capsys):
    other = tmp_path / "other"
    assert main(["train", *SMALL, "--hidden", "30", "--epochs", "1", "--out", str(other)]) == 0
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "epoch-001.npz").write_bytes((run / "epoch-001.npz").read_bytes())
    (mixed / "epoch-002.npz").write_bytes((other / "epoch-001.npz").read_bytes())
    capsys.readouterr()
    assert main(["average", str(mixed)]) == 2
    assert "epoch-002.npz holds a network of another shape" in capsys.readouterr().err


def test_an_average_cannot_be_trained_on_or_averaged_again(run, tmp_path, capsys):
    averaged = write_average(run, 1, 2, tmp_path / "avg.npz")
    assert main(["train", "--out", str(tmp_path / "fork"), "--from", str(averaged)]) == 2
    assert "average of epochs 1-2" in capsys.readouterr().err
    (tmp_path / "epoch-001.npz").write_bytes(averaged.read_bytes())
    assert main(["average", str(tmp_path)]) == 2
    assert "itself an average" in capsys.readouterr().err
