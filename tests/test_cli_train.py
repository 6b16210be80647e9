"""``spikeviz train`` and ``spikeviz evaluate`` end to end, on the bundled digits."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from spikeviz.cli import main

SMALL = ["--bundled", "--hidden", "60", "--train-samples", "300", "--test-samples", "100",
         "--test-duration-ms", "200"]


pytestmark = pytest.mark.usefixtures("no_user_data")


def read_metrics(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def without_speeds(metrics):
    return [{k: v for k, v in m.items() if not k.endswith("_per_s")} for m in metrics]


def test_train_writes_metrics_and_checkpoints_then_resumes_and_evaluates(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *SMALL, "--epochs", "1", "--out", str(out)]) == 0
    (first,) = read_metrics(out)
    for key in ("epoch", "train_accuracy", "test_accuracy", "loss", "train_samples_per_s",
                "test_samples_per_s", "dead_fraction", "test_tied_fraction",
                "test_no_output_fraction", "test_accuracy_tie_break"):
        assert key in first
    # the tie-break can only turn ties into answers, never a decided sample into another
    assert first["test_accuracy"] <= first["test_accuracy_tie_break"] <= (
        first["test_accuracy"] + first["test_tied_fraction"])
    assert 0 <= first["test_accuracy"] <= 1 and first["epoch"] == 1
    assert (out / "epoch-001.npz").is_file() and (out / "last.npz").is_file()
    assert json.loads((out / "config.json").read_text())["hidden"] == [60]

    assert main(["train", *SMALL, "--epochs", "2", "--out", str(out), "--resume"]) == 0
    assert [m["epoch"] for m in read_metrics(out)] == [1, 2]
    assert (out / "epoch-002.npz").is_file()

    capsys.readouterr()
    assert main(["evaluate", str(out / "last.npz"), "--bundled", "--test-samples", "50"]) == 0
    printed = capsys.readouterr().out
    assert "test accuracy" in printed and "tied maximum" in printed and "no output spike" in printed
    assert "closest to its next spike (V/Vth)" in printed
    assert "200 ms presentations" in printed  # the run's test_duration_ms

    def silent_share(text):
        return float(text.split("tied maximum, ")[1].split("%")[0])

    assert main(["evaluate", str(out / "last.npz"), "--bundled", "--test-samples", "50",
                 "--test-duration-ms", "4"]) == 0
    brief = capsys.readouterr().out
    assert "4 ms presentations" in brief
    assert silent_share(brief) > silent_share(printed)  # 20 input events leave the output quiet
    assert main(["evaluate", str(out / "last.npz"), "--bundled",
                 "--test-duration-ms", "0"]) == 2
    assert "test_duration_ms" in capsys.readouterr().err

    assert "at 5000 input events/s" in printed  # the run's rate_hz
    assert main(["evaluate", str(out / "last.npz"), "--bundled", "--test-samples", "50",
                 "--rate-hz", "100"]) == 0
    sparse = capsys.readouterr().out
    assert "200 ms presentations at 100 input events/s" in sparse
    assert silent_share(sparse) > silent_share(printed)  # 20 input events instead of 1,000
    assert main(["evaluate", str(out / "last.npz"), "--bundled", "--rate-hz", "0"]) == 2
    assert "rate_hz" in capsys.readouterr().err


def test_dropout_is_a_training_option_and_evaluate_presents_every_neuron(tmp_path, capsys,
                                                                         monkeypatch):
    import spikeviz.engine.batch as batch
    from spikeviz.train.trainer import Trainer

    out = tmp_path / "drop"
    assert main(["train", *SMALL, "--dropout", "0.4", "--epochs", "1", "--out", str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["dropout"] == 0.4
    tested = []
    infer = batch.infer_samples
    monkeypatch.setattr(batch, "infer_samples",
                        lambda network, *a, **k: tested.append(network) or infer(network, *a, **k))
    assert main(["evaluate", str(out / "last.npz"), "--bundled", "--test-samples", "20"]) == 0
    stored, _, _ = Trainer.from_checkpoint_network(out / "last.npz")
    for tested_w, stored_w in zip(tested[0].weights, stored.weights):
        np.testing.assert_array_equal(tested_w, stored_w)
    assert main(["train", *SMALL, "--dropout", "0.95", "--out", str(tmp_path / "x")]) == 2
    assert "dropout" in capsys.readouterr().err


def test_resume_alone_reuses_the_data_the_run_started_on(tmp_path, capsys):
    """``spikeviz train --out DIR --resume`` with no data option: the run's own data directory,
    not the default resolution (here the bundled 5,000 digits, which would not fit)."""
    from spikeviz.data import load_mnist, write_idx
    from spikeviz.data.mnist import MNIST_FILES

    digits, data_dir = load_mnist(bundled=True), tmp_path / "digits"
    data_dir.mkdir()
    for key, fname in MNIST_FILES.items():
        write_idx(data_dir / fname, getattr(digits, key)[:400 if key.startswith("train") else 80])
    out = tmp_path / "run"
    small = ["--hidden", "40", "--test-duration-ms", "100", "--out", str(out)]
    assert main(["train", "--data-dir", str(data_dir), *small, "--epochs", "1"]) == 0
    capsys.readouterr()
    assert main(["train", *small, "--epochs", "2", "--resume"]) == 0
    printed = capsys.readouterr().out
    assert f"continuing on the run's data: {data_dir.resolve()}" in printed
    assert [m["epoch"] for m in read_metrics(out)] == [1, 2]
    assert read_metrics(out)[1]["test_samples"] == 80

    (out / "data.json").write_text("{not json")
    assert main(["train", *small, "--epochs", "3", "--resume"]) == 2
    assert "data.json is not a data record" in capsys.readouterr().err


def test_an_existing_run_is_not_overwritten(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *SMALL, "--out", str(out)]) == 0
    assert main(["train", *SMALL, "--out", str(out)]) == 2
    assert "--resume" in capsys.readouterr().err


def test_from_a_checkpoint_starts_a_new_run_that_continues_it(tmp_path, capsys):
    """``--from`` forks a run: with no change it goes on exactly as ``--resume`` would (the
    original run is untouched); a changed setting is kept in the new run, with the history."""
    from spikeviz.train.checkpoint import load_checkpoint

    original, resumed, fork, changed = (tmp_path / name for name in ("a", "b", "c", "d"))
    assert main(["train", *SMALL, "--epochs", "1", "--out", str(original)]) == 0
    for name in ("last.npz", "epoch-001.npz", "config.json", "data.json", "metrics.jsonl"):
        (resumed / name).parent.mkdir(exist_ok=True)
        (resumed / name).write_bytes((original / name).read_bytes())
    assert main(["train", "--out", str(resumed), "--epochs", "2", "--resume"]) == 0
    capsys.readouterr()
    assert main(["train", "--out", str(fork), "--epochs", "2",
                 "--from", str(original / "epoch-001.npz")]) == 0
    assert "continuing on the run's data: the bundled subset" in capsys.readouterr().out
    assert not (original / "epoch-002.npz").exists()
    a, _ = load_checkpoint(resumed / "epoch-002.npz")
    b, _ = load_checkpoint(fork / "epoch-002.npz")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    assert without_speeds(read_metrics(fork)) == without_speeds(read_metrics(resumed))

    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"rho": 4e-5, "lam": 0.01}))
    assert main(["train", "--out", str(changed), "--epochs", "2", "--config", str(settings),
                 "--lam", "0.02", "--from", str(original / "last.npz")]) == 0
    saved = json.loads((changed / "config.json").read_text())
    assert (saved["rho"], saved["lam"], saved["hidden"]) == (4e-5, 0.02, [60])
    assert [m["epoch"] for m in read_metrics(changed)] == [1, 2]
    assert read_metrics(changed)[0] == read_metrics(original)[0]
    c, _ = load_checkpoint(changed / "epoch-002.npz")
    assert not np.array_equal(c["thresholds"], a["thresholds"])  # the new rho took effect

    capsys.readouterr()
    assert main(["train", "--out", str(changed), "--from", str(original / "last.npz")]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "e"), "--resume",
                 "--from", str(original / "last.npz")]) == 2
    assert "not both" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "e"),
                 "--from", str(original / "epoch-009.npz")]) == 2
    assert "epoch-009.npz does not exist" in capsys.readouterr().err


def test_test_every_skips_tests_but_changes_no_training(tmp_path, capsys):
    """``--test-every 3 --test-last 1``: over 4 epochs only epochs 3 and 4 are tested (also
    across a --resume after a skipped epoch); every epoch is checkpointed, the skipped ones are
    marked, and the network and training metrics are those of a run tested after every epoch."""
    from spikeviz.train.checkpoint import load_checkpoint

    every, sparse = tmp_path / "every", tmp_path / "sparse"
    assert main(["train", *SMALL, "--epochs", "4", "--out", str(every)]) == 0
    assert main(["train", *SMALL, "--epochs", "1", "--test-every", "3", "--test-last", "0",
                 "--out", str(sparse)]) == 0
    assert "not tested" in capsys.readouterr().out
    assert main(["train", "--out", str(sparse), "--epochs", "4", "--test-last", "1",
                 "--resume"]) == 0
    metrics, reference = read_metrics(sparse), read_metrics(every)
    assert [m["epoch"] for m in metrics] == [1, 2, 3, 4]
    assert ["test_accuracy" in m for m in metrics] == [False, False, True, True]
    assert [m.get("test_skipped", False) for m in metrics] == [True, True, False, False]
    for m, ref in zip(without_speeds(metrics), without_speeds(reference)):
        assert {k: v for k, v in m.items() if k != "test_skipped"} == (
            ref if "test_accuracy" in m else {k: v for k, v in ref.items() if "test" not in k})
    for epoch in (1, 2, 4):
        a, _ = load_checkpoint(sparse / f"epoch-{epoch:03d}.npz")
        b, _ = load_checkpoint(every / f"epoch-{epoch:03d}.npz")
        assert all(np.array_equal(a[k], b[k]) for k in b)


def test_a_config_file_with_an_unknown_key_is_rejected(tmp_path, capsys):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"kappa_hiden": -0.4}))
    assert main(["train", *SMALL, "--config", str(config), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "kappa_hiden" in err and str(config) in err


def test_command_line_values_override_the_config_file_and_are_checked(tmp_path, capsys):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"eta_w": 0.003, "kappa_hidden": -0.2}))
    out = tmp_path / "run"
    assert main(["train", *SMALL, "--config", str(config), "--wta", "-0.6", "--out", str(out)]) == 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["eta_w"] == 0.003 and saved["kappa_hidden"] == -0.6
    assert main(["train", *SMALL, "--kappa_output", "1.5", "--out", str(tmp_path / "x")]) == 2
    assert "kappa_output" in capsys.readouterr().err


def test_sigterm_leaves_a_checkpoint_that_resumes(tmp_path):
    out = tmp_path / "run"
    script = Path(sys.executable).parent / "spikeviz"
    env = dict(os.environ, SPIKEVIZ_CACHE_DIR=str(tmp_path / "cache"))
    args = [str(script), "train", "--bundled", "--hidden", "60", "--train-samples", "5000",
            "--train-duration-ms", "400", "--test-samples", "50", "--out", str(out)]
    process = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    deadline = time.time() + 120
    while "epoch 1/1:" not in (line := process.stderr.readline()) and time.time() < deadline:
        pass
    time.sleep(1.0)  # well into the epoch
    process.send_signal(signal.SIGTERM)
    stdout, _ = process.communicate(timeout=120)
    assert process.returncode == 130, stdout
    assert "--resume" in stdout and (out / "last.npz").is_file()
    assert main(["train", "--bundled", "--train-samples", "5000", "--test-samples", "50",
                 "--out", str(out), "--resume"]) == 0
    assert read_metrics(out)[0]["epoch"] == 1


def test_a_stop_during_the_test_keeps_the_epoch_and_resume_tests_it(tmp_path, monkeypatch,
                                                                     capsys):
    """Ctrl-C while an epoch is being tested (minutes for a busy network): the epoch's training
    is already saved, the test stops at once and --resume does it first, as if never stopped."""
    straight = tmp_path / "straight"
    assert main(["train", *SMALL, "--epochs", "2", "--out", str(straight)]) == 0

    from spikeviz.train.trainer import Trainer
    evaluate = Trainer.evaluate

    def evaluate_after_ctrl_c(self, *args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)  # the CLI's handler asks the run to stop
        return evaluate(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "evaluate", evaluate_after_ctrl_c)
    out = tmp_path / "run"
    capsys.readouterr()
    assert main(["train", *SMALL, "--epochs", "2", "--out", str(out)]) == 130
    assert "during its test" in capsys.readouterr().out
    assert (out / "last.npz").is_file()
    assert not (out / "epoch-001.npz").exists() and not (out / "metrics.jsonl").exists()
    monkeypatch.setattr(Trainer, "evaluate", evaluate)

    assert main(["train", "--out", str(out), "--resume"]) == 0

    def without_speeds(metrics):
        return [{k: v for k, v in m.items() if not k.endswith("_per_s")} for m in metrics]

    assert [m["epoch"] for m in read_metrics(out)] == [1, 2]
    assert without_speeds(read_metrics(out)) == without_speeds(read_metrics(straight))


def test_a_list_of_negative_kappas_needs_no_equals_sign(tmp_path):
    out = tmp_path / "deep"
    argv = ["train", "--bundled", "--hidden", "40,30", "--wta", "-0.4,0", "--kappa-output", "-0.9",
            "--train-samples", "100", "--test-samples", "20", "--test-duration-ms", "100",
            "--first-epoch-duration-ms", "50", "--out", str(out)]
    assert main(argv) == 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["kappa_hidden"] == -0.4 and saved["kappa_deeper"] == [0.0]
    assert saved["kappa_output"] == -0.9 and saved["hidden"] == [40, 30]


SHARED_NMNIST = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "nmnist"


def test_nmnist_trains_resumes_and_evaluates_on_the_real_recordings(tmp_path, capsys):
    out = tmp_path / "nm"
    common = ["--dataset", "nmnist", "--data-dir", str(SHARED_NMNIST), "--hidden", "100",
              "--train-samples", "300", "--test-samples", "60", "--out", str(out)]
    assert main(["train", *common, "--epochs", "1"]) == 0
    printed = capsys.readouterr().out
    assert "validation split of Train/ (200 of 1000 recordings)" in printed
    assert "(2312, 100, 10)" in printed
    config = json.loads((out / "config.json").read_text())
    assert config["dataset"] == "nmnist" and config["tau_mp_ms"] == 200.0  # N-MNIST default
    assert main(["train", *common, "--epochs", "2", "--resume"]) == 0
    assert [m["epoch"] for m in read_metrics(out)] == [1, 2]
    assert main(["evaluate", str(out / "last.npz"), "--data-dir", str(SHARED_NMNIST),
                 "--test-samples", "40"]) == 0
    assert "test accuracy" in capsys.readouterr().out
    assert main(["evaluate", str(out / "last.npz"), "--data-dir", str(SHARED_NMNIST),
                 "--test-samples", "40", "--split", "train"]) == 0
    assert "train accuracy" in capsys.readouterr().out
    assert main(["evaluate", str(out / "last.npz"), "--data-dir", str(SHARED_NMNIST),
                 "--rate-hz", "6450"]) == 2
    assert "--rate-hz sets the Poisson input rate of MNIST digits" in capsys.readouterr().err


def test_nmnist_without_recordings_trains_on_emulated_ones(tmp_path, capsys):
    out = tmp_path / "emulated"
    argv = ["train", "--dataset", "nmnist", "--hidden", "50", "--train-samples", "100",
            "--test-samples", "30", "--out", str(out)]
    assert main(argv) == 0
    assert "emulating recordings" in capsys.readouterr().out
    assert read_metrics(out)[0]["test_samples"] == 30


TABLE2_EXAMPLES = sorted(p.name for p in (Path(__file__).parents[1] / "examples").glob("table2-*.json"))


@pytest.mark.parametrize("name", TABLE2_EXAMPLES)
def test_the_table2_example_configs_train_with_their_settings(tmp_path, name):
    # examples/table2-*.json are the runs docs/results.md reports in Table 2's band (for
    # 784-500-500-10 its first ten epochs, before --lam 0.02 from epoch 10);
    # a key renamed in Config must fail here, not in a user's 200-epoch run.
    example = Path(__file__).parents[1] / "examples" / name
    settings = json.loads(example.read_text())
    out = tmp_path / "run"
    assert main(["train", "--bundled", "--config", str(example), "--epochs", "1",
                 "--train-samples", "200", "--test-samples", "50", "--test-duration-ms", "200",
                 "--out", str(out)]) == 0
    saved = json.loads((out / "config.json").read_text())
    assert {key: saved[key] for key in settings} == {**settings, "epochs": 1}
    assert len(read_metrics(out)) == 1
