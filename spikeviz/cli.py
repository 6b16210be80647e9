"""The ``spikeviz`` command line.

    spikeviz train --out DIR [--resume] [--config FILE] [--hidden 800] [--epochs N] [--name value]
    spikeviz evaluate CHECKPOINT [--test-samples N] [--split train]
    spikeviz average RUN_DIR [--epochs 181-200]                  one network from a run's last epochs
    spikeviz data [--data-dir DIR] [--bundled] [--no-download]   where the data comes from
    spikeviz infer [--samples N] [--duration-ms MS] ...          forward pass of a fresh network
"""

import argparse
import json
import logging
import re
import signal
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
from tqdm import tqdm

from spikeviz import __version__
from spikeviz.errors import SpikevizError


def _add_data_options(parser):
    parser.add_argument("--data-dir", help="MNIST: directory with the four IDX files (default: "
                        "$SPIKEVIZ_DATA, the user cache, a download, the bundled subset); N-MNIST: "
                        "directory with Train/ (and Test/) recordings (default: emulated ones)")
    parser.add_argument("--bundled", action="store_true",
                        help="use the small subset shipped with spikeviz")
    parser.add_argument("--no-download", action="store_true", help="never go online")
    parser.add_argument("--skip-bad", action="store_true",
                        help="N-MNIST: skip and report bad recordings instead of stopping")


def _load(args, dataset="mnist", config=None):
    from spikeviz.data import load_mnist, load_nmnist

    if dataset == "mnist":
        return load_mnist(args.data_dir, download=not args.no_download, bundled=args.bundled)
    if not args.data_dir:
        from spikeviz.data import emulate_nmnist

        # No recordings at hand: the sensor emulator makes N-MNIST-like ones from the MNIST
        # digits (docs/emulator.md), so the pipeline runs on a fresh machine.
        print("no --data-dir for N-MNIST: emulating recordings of the MNIST digits with the "
              "saccade sensor emulator (docs/emulator.md)", flush=True)
        mnist = load_mnist(None, download=not args.no_download, bundled=True)
        limits = {} if config is None else {"n_train": config.train_samples,
                                            "n_test": config.test_samples}
        return emulate_nmnist(mnist, **limits)
    data = load_nmnist(args.data_dir, skip_bad=args.skip_bad)
    for path, reason in data.skipped:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    if data.test_is_validation_split:
        print(f"{args.data_dir} has no Test/ folder: testing on a validation split of Train/ "
              f"({len(data.test_labels)} of {len(data.test_labels) + len(data.train_labels)} "
              "recordings)")
    return data


#: Where a run directory records its data, so that ``--resume`` alone finds it again.
DATA_SOURCE = "data.json"


def _remember_data(args, out):
    source = {"data_dir": str(Path(args.data_dir).resolve()) if args.data_dir else None,
              "bundled": args.bundled, "skip_bad": args.skip_bad}
    (out / DATA_SOURCE).write_text(json.dumps(source, indent=1) + "\n")


def _recall_data(args, run_dir):
    """On --resume or --from with no data option, use the data the run was started on."""
    path = run_dir / DATA_SOURCE
    if args.data_dir or args.bundled or not path.is_file():
        return
    try:
        source = json.loads(path.read_text())
        args.data_dir, args.bundled = source["data_dir"], bool(source["bundled"])
        args.skip_bad = args.skip_bad or bool(source.get("skip_bad", False))
    except (ValueError, KeyError, TypeError) as error:
        raise SpikevizError(f"{path} is not a data record of spikeviz train ({error}): delete it "
                            "and give --data-dir (or --bundled) with --resume or --from") from None
    print(f"continuing on the run's data: {args.data_dir or 'the bundled subset'}", flush=True)


def cmd_data(args):
    data = _load(args)
    print(f"origin: {data.origin}")
    for split in ("train", "test"):
        images, labels = getattr(data, f"{split}_images"), getattr(data, f"{split}_labels")
        per_class = np.bincount(labels, minlength=10).tolist()
        print(f"{split}: {len(images):,} images {images.shape[1]}x{images.shape[2]}, "
              f"per class {per_class}")


def cmd_infer(args):
    from spikeviz.encode import PoissonEncoder
    from spikeviz.engine import check_kappas, init_network, make_dynamics
    from spikeviz.engine.batch import infer_counts

    # Every setting is checked before the data is read.
    hidden = [int(n) for n in args.hidden.split(",")]
    kappas = check_kappas(
        [args.kappa_hidden] + [0.0] * (len(hidden) - 1) + [args.kappa_output], len(hidden) + 1
    )
    dynamics = make_dynamics(tau_mp_ms=args.tau_mp_ms, t_ref_ms=args.t_ref_ms)
    data = _load(args)
    images = data.test_images[: args.samples]
    network = init_network((images[0].size, *hidden, 10), np.random.default_rng(args.seed),
                           alpha=args.alpha)
    encoder = PoissonEncoder(images[0].size, rate_hz=args.rate_hz)
    start = time.perf_counter()
    with tqdm(total=len(images), unit="sample", desc="forward") as bar:
        counts = infer_counts(network, images, encoder, duration_ms=args.duration_ms,
                              kappas=kappas, dynamics=dynamics, seed=args.seed,
                              workers=args.workers, on_chunk=bar.update)
    seconds = time.perf_counter() - start
    print(f"{len(images)} samples in {seconds:.2f} s: {len(images) / seconds:.0f} samples/s; "
          f"{counts.sum(1).mean():.1f} output spikes per sample (untrained network)")


def _config_options(parser):
    """One option per Config setting, spelled --name-with-dashes or --name_with_underscores."""
    from spikeviz.config import Config

    group = parser.add_argument_group("settings (see spikeviz/config.py; default: the config file, "
                                      "else the built-in defaults)")
    for name, spec in Config.param.objects("existing").items():
        if name in ("name", "hidden", "kappa_deeper"):
            continue
        flags = sorted({f"--{name.replace('_', '-')}", f"--{name}"})
        kind = type(spec).__name__
        if kind == "Boolean":
            group.add_argument(*flags, dest=name, type=_boolean, default=argparse.SUPPRESS,
                               metavar="{true,false}", help=_escape(spec.doc))
        elif kind == "Selector":
            group.add_argument(*flags, dest=name, choices=spec.objects, default=argparse.SUPPRESS,
                               help=_escape(spec.doc))
        else:
            convert = int if kind == "Integer" else float
            group.add_argument(*flags, dest=name, type=_optional(convert),
                               default=argparse.SUPPRESS, help=_escape(spec.doc))
    group.add_argument("--hidden", type=_int_list, default=argparse.SUPPRESS,
                       help="hidden layer sizes: 800, or 500,500")
    group.add_argument("--wta", type=_float_list, default=argparse.SUPPRESS,
                       help="kappa of each hidden layer, e.g. -0.4,0 (the first is kappa_hidden)")


def _escape(doc):
    """A setting's doc as argparse help: a bare % would be read as a format directive."""
    return (doc or "").replace("%", "%%")


def _boolean(text):
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _optional(convert):
    def parse(text):
        return None if text.lower() == "none" else convert(text)
    parse.__name__ = convert.__name__
    return parse


def _int_list(text):
    return [int(v) for v in text.split(",")]


def _float_list(text):
    return [float(v) for v in text.split(",")]


def _overrides(args):
    from spikeviz.config import Config

    names = set(Config.param) - {"name"}
    values = {name: value for name, value in vars(args).items() if name in names}
    if "wta" in vars(args):
        values["kappa_hidden"], *values["kappa_deeper"] = args.wta
    return values


def _make_config(args):
    """Built-in defaults, then the dataset's defaults, the config file, the command line."""
    from spikeviz.config import NMNIST_DEFAULTS, Config

    from_file = Config.read(args.config) if args.config else {}
    overrides = _overrides(args)
    config = Config()
    if overrides.get("dataset", from_file.get("dataset")) == "nmnist":
        config.update_from(NMNIST_DEFAULTS, source="N-MNIST defaults")
    config.update_from(from_file, source=str(args.config))
    config.update_from(overrides, source="command line")
    return config


def cmd_train(args):
    from spikeviz.config import Config
    from spikeviz.train.trainer import DivergenceError, Trainer

    out = Path(args.out)
    last = out / "last.npz"
    if args.resume and args.start_from:
        raise SpikevizError("give --resume (continue the run in --out) or --from CHECKPOINT (a new "
                            "run in --out from another run's checkpoint), not both")
    if not args.resume and last.exists():
        raise SpikevizError(f"{out} already holds a run ({last}); continue it with --resume or "
                            "choose another --out")
    start = last if args.resume else Path(args.start_from) if args.start_from else None
    if start:
        from spikeviz.train.checkpoint import load_checkpoint

        _, meta = load_checkpoint(start)
        config = Config.from_dict(meta["config"], source=f"{start} (config)")
        if args.config:
            config.update_from(Config.read(args.config), source=str(args.config))
        config.update_from(_overrides(args), source="command line")
        _recall_data(args, start.parent)
    else:
        config = _make_config(args)
    data = _load(args, config.dataset, config)
    trainer = Trainer.resume(start, data, config) if start else Trainer(config, data)
    out.mkdir(parents=True, exist_ok=True)
    config.save(out / "config.json")
    _remember_data(args, out)
    print(f"data: {data.origin}; network {trainer.network.sizes}; run directory {out}")
    with _stop_on_signals() as stop:
        try:
            _train_epochs(trainer, config, out, stop)
        except DivergenceError as error:
            print(f"spikeviz train: diverged: {error}. The last good checkpoint is {last}.",
                  file=sys.stderr)
            return 3
    if stop.requested:
        trainer.save(last)
        if _untested(trainer):
            where = f"after training epoch {trainer.epoch}, during its test (--resume tests it)"
        else:
            where = f"at epoch {trainer.epoch + 1}, sample {trainer.position}"
        print(f"stopped; saved {last} {where}; "
              f"continue with: spikeviz train --out {out} --resume")
        return 130
    return 0


def _untested(trainer):
    """Whether the last epoch was trained but its test was stopped (saved before the test)."""
    last = trainer.history[-1] if trainer.history else {}
    return bool(last) and "test_accuracy" not in last and not last.get("test_skipped")


def _train_epochs(trainer, config, out, stop):
    if _untested(trainer):
        # stopped (or killed) while testing the last epoch: its training was saved; test it now
        if not _test_epoch(trainer, config, out, stop):
            return
    while trainer.epoch < config.epochs:
        epoch = trainer.epoch + 1
        with tqdm(total=trainer.n_train, initial=trainer.position, unit="sample",
                  desc=f"epoch {epoch}/{config.epochs}", smoothing=0.1) as bar:
            def on_sample(label, predicted, loss):
                if trainer.position % 200 == 0:
                    bar.update(trainer.position - bar.n)
                    tally = trainer.tally
                    bar.set_postfix(acc=f"{tally['correct'] / max(tally['samples'], 1):.3f}",
                                    refresh=False)
            finished = trainer.train_epoch(on_sample=on_sample, should_stop=stop)
            bar.update(trainer.position - bar.n)
        if not finished:
            return
        trainer.finish_epoch(evaluate=False)
        if not config.tests_epoch(epoch):
            trainer.history[-1]["test_skipped"] = True
            _record_epoch(trainer, out)
            continue
        trainer.save(out / "last.npz")  # the epoch's training is safe before its (long) test
        if not _test_epoch(trainer, config, out, stop):
            return


class _Stopped(Exception):
    """Ctrl-C or SIGTERM during a test: the test is dropped, and redone on --resume."""


def _test_epoch(trainer, config, out, stop):
    """Test the epoch just trained, then write its checkpoint and metrics; False if stopped."""
    metrics = trainer.history[-1]
    with tqdm(total=min(len(trainer.task.test_labels), config.test_samples or 10**9),
              unit="sample", desc="test", leave=False) as bar:
        def on_chunk(n_done):
            bar.update(n_done)
            if stop():
                raise _Stopped
        try:
            metrics.update(trainer.evaluate(on_chunk=on_chunk))
        except _Stopped:
            return False
    _record_epoch(trainer, out)
    return True


def _record_epoch(trainer, out):
    """The epoch's checkpoint, the run's last checkpoint and metrics.jsonl, and a line."""
    from spikeviz.train.checkpoint import write_atomically

    metrics = trainer.history[-1]
    epoch = metrics["epoch"]
    trainer.save(out / f"epoch-{epoch:03d}.npz")
    trainer.save(out / "last.npz")
    lines = "".join(json.dumps(m) + "\n" for m in trainer.history)
    write_atomically(out / "metrics.jsonl", lambda file: file.write(lines.encode()))
    test = (f"test {metrics['test_accuracy']:.4f}" if "test_accuracy" in metrics
            else "not tested (test_every)")
    print(f"epoch {epoch}: train {metrics['train_accuracy']:.4f} {test} "
          f"loss {metrics['loss']:.4f} {metrics['train_samples_per_s']:.0f} samples/s", flush=True)


class _stop_on_signals:
    """Ctrl-C or SIGTERM asks the loop to stop at the next sample, so a checkpoint can be saved."""

    def __init__(self):
        self.requested = False

    def __call__(self):
        return self.requested

    def _handler(self, signum, frame):
        self.requested = True

    def __enter__(self):
        self._previous = {sig: signal.signal(sig, self._handler)
                          for sig in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def cmd_sweep(args):
    """A grid or random search of trainings, one Dask task per trial (spikeviz/sweep.py)."""
    from spikeviz.sweep import format_table, parse_grid, parse_range, random_trials, run_sweep

    # Every setting and grid value is checked before a cluster starts or data is read.
    config = _make_config(args)
    if args.random is not None:
        if args.grid or not args.range:
            raise SpikevizError("--random N draws from --range NAME=LOW:HIGH options (no --grid)")
        grid = random_trials([parse_range(spec) for spec in args.range], args.random,
                             seed=args.random_seed)
    elif args.grid:
        grid = parse_grid(args.grid)
    else:
        raise SpikevizError("give --grid NAME=VALUES (repeatable), or --random N with --range")
    data_spec = {"data_dir": args.data_dir, "bundled": args.bundled,
                 "no_download": args.no_download, "skip_bad": args.skip_bad}
    rows = run_sweep(grid, config, data_spec, args.out, scheduler=args.scheduler,
                     n_workers=args.workers, metric=args.metric)
    print(format_table(rows))
    failed = [row for row in rows if row["status"] != "ok"]
    if failed:
        print(f"{len(failed)} of {len(rows)} trials failed (see the error column of "
              f"{Path(args.out) / 'results.csv'})", file=sys.stderr)
    return 1 if failed else 0


def cmd_evaluate(args):
    from spikeviz.engine.batch import infer_samples
    from spikeviz.train.tasks import make_task
    from spikeviz.train.trainer import TEST_SEED_OFFSET, Trainer, score_counts

    network, config, meta = Trainer.from_checkpoint_network(args.checkpoint)
    if args.test_duration_ms is not None:
        config.update_from({"test_duration_ms": args.test_duration_ms}, source="command line")
    if args.rate_hz is not None:
        if config.dataset != "mnist":
            raise SpikevizError("--rate-hz sets the Poisson input rate of MNIST digits; "
                                f"{args.checkpoint} was trained on {config.dataset} recordings, "
                                "whose events are their own")
        config.update_from({"rate_hz": args.rate_hz}, source="command line")
    data = _load(args, config.dataset, config)
    task = make_task(config, data)
    if task.n_inputs != network.sizes[0]:
        raise SpikevizError(f"{args.checkpoint} takes {network.sizes[0]} inputs but the data has "
                            f"{task.n_inputs}: it was trained on other data")
    labels = task.labels(args.split)
    n = min(len(labels), args.test_samples or len(labels))
    dynamics = config.dynamics()
    start = time.perf_counter()
    closeness = np.zeros((n, network.sizes[-1]), np.float32)
    with tqdm(total=n, unit="sample", desc=args.split) as bar:
        counts = infer_samples(network, n, partial(task.test_sample, split=args.split),
                               kappas=config.kappas(), dynamics=dynamics,
                               seed=config.seed + TEST_SEED_OFFSET, workers=args.workers,
                               on_chunk=bar.update, closeness=closeness)
    seconds = time.perf_counter() - start
    outcome = score_counts(counts, labels[:n], closeness)
    print(f"{args.split} accuracy {outcome['test_accuracy']:.4f} on {n} {args.split} samples, "
          f"{config.test_duration_ms:g} ms presentations{_input_rate(config)} ({n / seconds:.0f} "
          f"samples/s); {_checkpoint_origin(meta)}\n"
          f"counted as errors: {outcome['test_tied_fraction']:.2%} tied maximum, "
          f"{outcome['test_no_output_fraction']:.2%} no output spike\n"
          f"with ties to the tied neuron closest to its next spike (V/Vth): "
          f"{outcome['test_accuracy_tie_break']:.4f}")


def _checkpoint_origin(meta):
    if "averaged_epochs" in meta:
        return "average of the networks of epochs {}-{}".format(*meta["averaged_epochs"])
    return f"checkpoint of epoch {meta['epoch']}, sample {meta['position']}"


def cmd_average(args):
    from spikeviz.train.average import choose_epochs, write_average

    first, last = choose_epochs(args.run_dir, args.epochs, args.last)
    out = write_average(args.run_dir, first, last, args.out)
    print(f"averaged the networks of epochs {first}-{last} of {args.run_dir} into {out}; "
          f"test it with: spikeviz evaluate {out}")


def _input_rate(config):
    """The input rate for evaluate's summary line; N-MNIST recordings have none to set."""
    return f" at {config.rate_hz:g} input events/s" if config.dataset == "mnist" else ""


def build_parser():
    parser = argparse.ArgumentParser(
        prog="spikeviz", description="Train spiking neural networks on spikes, and watch them learn.")
    parser.add_argument("--version", action="version", version=f"spikeviz {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train on spikes; checkpoints and metrics in --out")
    train.add_argument("--out", required=True, help="run directory: metrics.jsonl, checkpoints")
    train.add_argument("--resume", action="store_true", help="continue the run in --out")
    train.add_argument("--from", dest="start_from", metavar="CHECKPOINT",
                       help="start a new run in --out from another run's checkpoint (its network, "
                       "optimizer state, settings and history), e.g. to change a setting from "
                       "epoch 80 on: --from runs/x/epoch-080.npz --rho 4e-5")
    train.add_argument("--config", help="JSON file of settings (the same names as the options)")
    _add_data_options(train)
    _config_options(train)
    train.set_defaults(run=cmd_train)

    sweep = commands.add_parser("sweep", help="a grid or random search of trainings, run as Dask "
                                "tasks; a table and a plot in --out")
    sweep.add_argument("--grid", action="append", default=[], metavar="NAME=VALUES",
                       help="a swept setting (repeatable): kappa_hidden=-0.2,-0.4 or "
                       "-0.1,-0.2,...,-1.0 or -1:-0.1:0.1; hidden=100,200 (300+300: two layers)")
    sweep.add_argument("--random", type=int, metavar="N", help="N random trials over the --range "
                       "settings instead of a grid")
    sweep.add_argument("--range", action="append", default=[], metavar="NAME=LOW:HIGH",
                       help="uniform range of a setting for --random (repeatable)")
    sweep.add_argument("--random-seed", type=int, default=0, help="seed of the random search")
    sweep.add_argument("--out", required=True,
                       help="sweep directory: trials/<id>/, results.csv, <metric>.png")
    sweep.add_argument("--scheduler", help="tcp://HOST:PORT of a running Dask scheduler "
                       "(default: a LocalCluster with one worker per core)")
    sweep.add_argument("--workers", type=int, default=None,
                       help="LocalCluster worker processes (default: the number of cores)")
    sweep.add_argument("--metric", default="test_accuracy",
                       help="the column plotted: test_accuracy, best_test_accuracy, "
                       "train_accuracy, loss, ...")
    sweep.add_argument("--config", help="JSON file of settings shared by every trial")
    _add_data_options(sweep)
    _config_options(sweep)
    sweep.set_defaults(run=cmd_sweep)

    evaluate = commands.add_parser("evaluate", help="test accuracy of a checkpoint")
    evaluate.add_argument("checkpoint")
    evaluate.add_argument("--test-samples", type=int, default=None,
                          help="the first N samples of the split (default: all)")
    evaluate.add_argument("--split", choices=["test", "train"], default="test",
                          help="the digits presented: the test set, or the training set (with "
                          "test presentations: how well the network fits what it learned from)")
    evaluate.add_argument("--test-duration-ms", type=float, default=None,
                          help="presentation length (default: the run's test_duration_ms)")
    evaluate.add_argument("--rate-hz", type=float, default=None,
                          help="MNIST: input events per second per digit (default: the run's "
                          "rate_hz, the rate it was trained at)")
    evaluate.add_argument("--workers", type=int, default=None)
    _add_data_options(evaluate)
    evaluate.set_defaults(run=cmd_evaluate)

    average = commands.add_parser("average", help="one network from a run's last epochs: the "
                                  "mean of their checkpoints' weights and thresholds")
    average.add_argument("run_dir", help="the --out DIR of a `spikeviz train` run")
    average.add_argument("--epochs", metavar="FIRST-LAST",
                         help="the epochs averaged, e.g. 181-200 (default: the newest N)")
    average.add_argument("--last", type=int, default=20, metavar="N",
                         help="without --epochs: average the newest N epochs (default 20)")
    average.add_argument("--out", help="the checkpoint written (default: "
                         "RUN_DIR/average-FIRST-LAST.npz)")
    average.set_defaults(run=cmd_average)

    data = commands.add_parser("data", help="show where the MNIST data comes from")
    _add_data_options(data)
    data.set_defaults(run=cmd_data)

    infer = commands.add_parser("infer", help="forward pass of a freshly initialized network "
                                "over the test images, on every core")
    _add_data_options(infer)
    infer.add_argument("--samples", type=int, default=1000)
    infer.add_argument("--hidden", default="800", help="hidden sizes, e.g. 800 or 500,500")
    infer.add_argument("--alpha", type=float, default=3.0, help="threshold scale of (9)")
    infer.add_argument("--kappa-hidden", type=float, default=-0.4)
    infer.add_argument("--kappa-output", type=float, default=-1.0)
    infer.add_argument("--tau-mp-ms", type=float, default=20.0)
    infer.add_argument("--t-ref-ms", type=float, default=1.0)
    infer.add_argument("--rate-hz", type=float, default=5000.0)
    infer.add_argument("--duration-ms", type=float, default=1000.0)
    infer.add_argument("--workers", type=int, default=None, help="threads (default: all cores)")
    infer.add_argument("--seed", type=int, default=0)
    infer.set_defaults(run=cmd_infer)
    return parser


_NEGATIVE_LIST = re.compile(r"^-\d[\d.eE+-]*(,[\d.eE+-]+)+$")  # -0.4,0 (a single -0.4 parses)


def _join_negative_lists(argv):
    """``--wta -0.4,0`` as ``--wta=-0.4,0``: argparse takes "-0.4,0" for an option otherwise."""
    joined = []
    for token in argv:
        previous = joined[-1] if joined else ""
        if _NEGATIVE_LIST.match(token) and previous.startswith("--") and "=" not in previous:
            joined[-1] = f"{joined[-1]}={token}"
        else:
            joined.append(token)
    return joined


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(_join_negative_lists(argv))
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    try:
        return args.run(args) or 0
    except SpikevizError as error:
        print(f"spikeviz {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
