"""Network copies: independent of the original, with a training scale folded in on request."""

import numpy as np

from spikeviz.engine import init_network


def test_scaled_folds_the_training_scale_into_an_independent_copy():
    network = init_network((6, 4, 2), np.random.default_rng(0), floor_fraction=0.5)
    scale = np.linspace(0.5, 1.0, 6).astype(np.float32)
    copy = network.scaled(scale)
    np.testing.assert_allclose(copy.weights[0], network.weights[0] * scale[:4])
    np.testing.assert_allclose(copy.weights[1], network.weights[1] * scale[4:])
    np.testing.assert_array_equal(copy.threshold_floors, network.threshold_floors)
    assert network.threshold_floors.any()


def test_copies_share_no_numbers_with_the_original():
    network = init_network((6, 4, 2), np.random.default_rng(0), floor_fraction=0.5)
    for copy in (network.copy(), network.scaled(np.ones(6, np.float32))):
        for mine, theirs in zip([copy.flat_weights, copy.flat_thresholds, copy.threshold_floors],
                                [network.flat_weights, network.flat_thresholds,
                                 network.threshold_floors]):
            assert not np.shares_memory(mine, theirs)
        network.threshold_floors *= 2  # the app's alpha slider changes them in place
        network.thresholds[0][:] = 9.0
        assert not np.allclose(copy.threshold_floors, network.threshold_floors)
        assert copy.thresholds[0].max() < 9.0
