"""The ``spikeviz`` command line, run in-process and as the installed console script."""

import subprocess
import sys
from pathlib import Path

import pytest

from spikeviz import __version__
from spikeviz.cli import main


pytestmark = pytest.mark.usefixtures("no_user_data")


def test_data_reports_the_bundled_subset(capsys):
    assert main(["data", "--bundled"]) == 0
    out = capsys.readouterr().out
    assert "bundled subset" in out
    assert "train: 5,000 images 28x28, per class [500, 500" in out


def test_a_missing_data_dir_is_a_clear_error(tmp_path, capsys):
    assert main(["data", "--data-dir", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "nowhere" in err and "train-images-idx3-ubyte.gz" in err and "Fix:" in err


def test_infer_runs_a_fresh_network_on_the_bundled_digits(capsys):
    argv = ["infer", "--bundled", "--samples", "40", "--hidden", "30", "--duration-ms", "50"]
    assert main(argv) == 0
    assert "40 samples in" in capsys.readouterr().out


def test_infer_rejects_out_of_range_lateral_inhibition(capsys):
    argv = ["infer", "--bundled", "--samples", "4", "--kappa-hidden", "-1.5"]
    assert main(argv) == 2
    assert "[-1, 0)" in capsys.readouterr().err


def test_the_console_script_is_installed():
    script = Path(sys.executable).parent / "spikeviz"
    result = subprocess.run([str(script), "--version"], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == f"spikeviz {__version__}"


@pytest.mark.parametrize("command", ["train", "evaluate", "sweep", "data", "infer"])
def test_every_command_prints_its_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: spikeviz" in capsys.readouterr().out
