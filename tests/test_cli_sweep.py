"""``spikeviz sweep --random N --range NAME=LOW:HIGH``: the random search from the command line."""

import pytest

from spikeviz.cli import main
from spikeviz.sweep import parse_range, random_trials, read_csv

TINY_ARGS = ["--bundled", "--hidden", "20", "--train-samples", "200", "--test-samples", "50",
             "--test-duration-ms", "100", "--workers", "2"]
RANGES = ["kappa_hidden=-0.9:-0.1", "seed=0:1000"]


pytestmark = pytest.mark.usefixtures("no_user_data")


def _random_sweep(out, n_trials, seed):
    args = ["sweep", "--random", str(n_trials), "--random-seed", str(seed), "--out", str(out)]
    for spec in RANGES:
        args += ["--range", spec]
    return main(args + TINY_ARGS)


def test_a_random_search_has_n_trials_in_range_and_is_reproducible_for_a_seed(tmp_path, capsys):
    out = tmp_path / "random"
    assert _random_sweep(out, 3, seed=7) == 0, capsys.readouterr().err
    rows = read_csv(out / "results.csv")
    assert len(rows) == 3 and {row["status"] for row in rows} == {"ok"}
    kappas = [float(row["kappa_hidden"]) for row in rows]
    seeds = [int(row["seed"]) for row in rows]
    assert all(-0.9 <= kappa <= -0.1 for kappa in kappas)
    assert all(0 <= seed <= 1000 for seed in seeds)
    assert len(set(kappas)) == 3  # drawn, not one value repeated
    # the table holds exactly the draws of the seeded search...
    drawn = random_trials([parse_range(spec) for spec in RANGES], 3, seed=7)
    assert list(zip(kappas, seeds)) == [(t["kappa_hidden"], t["seed"]) for t in drawn]
    # ...and each trial trained with its drawn settings
    for row in rows:
        saved = (out / "trials" / row["trial"] / "config.json").read_text()
        assert f'"seed": {row["seed"]}' in saved

    # the same seed draws the same trials: the restart finds every one finished
    capsys.readouterr()
    assert _random_sweep(out, 3, seed=7) == 0
    assert "3 finished earlier, 0 to run" in capsys.readouterr().out
    again = read_csv(out / "results.csv")
    assert [(r["trial"], r["test_accuracy"]) for r in again] == \
        [(r["trial"], r["test_accuracy"]) for r in rows]
    assert {r["reused"] for r in again} == {"True"}

    # another seed draws other values
    other = random_trials([parse_range(spec) for spec in RANGES], 3, seed=8)
    assert [t["kappa_hidden"] for t in other] != kappas


@pytest.mark.parametrize("args, message", [
    (["--random", "3"], "--range"),
    (["--random", "3", "--range", "kappa_hidden=-0.9:-0.1", "--grid", "hidden=20"], "no --grid"),
    (["--random", "3", "--range", "kappa_hidden=-0.1:-0.9"], "LOW must not exceed HIGH"),
    (["--random", "3", "--range", "kappa_hidden=-0.9"], "NAME=LOW:HIGH"),
    (["--random", "3", "--range", "optimizer=0:1"], "not a number"),
    (["--random", "0", "--range", "kappa_hidden=-0.9:-0.1"], "no trials"),
])
def test_bad_random_searches_are_refused_before_any_work(tmp_path, capsys, args, message):
    out = tmp_path / "random"
    assert main(["sweep", "--out", str(out), *args, *TINY_ARGS]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()
