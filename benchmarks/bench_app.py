"""The live app's costs (issue 5): training speed while streaming, server CPU on the views,
browser lag and frame rate with the raster at 5,000 spikes/s, and memory over a long run.

One process serves the app in-process (Panel, threaded, as the browser tests do) to a real
Chromium tab, driven by Playwright from a child process (as a user's browser, it takes no GIL
from the server), and also runs the bare training loop while the app is paused, so that every
phase sees the same machine.  Phases, each ``--seconds`` long, on the same network
and seed (each loop has its own trainer, all at about the same point of the same epoch):

- A: the bare loop, what ``spikeviz train`` runs (``Trainer.train_epoch``; the CLI's
  end-of-epoch evaluation left out);
- A': the app's own training loop (``TrainingApp._train_slice``, recording included) in this
  thread, unserved: the app's overhead inside the training thread;
- B: the app served, training in its worker and streaming to the open tab (periodic evaluation
  off, as in A);
  A A' B are interleaved ``--rounds`` times to cancel drift; the target is B / A >= 0.90;
- C: B with ``--raster-duration-ms`` presentations, so that the raster receives at least 5,000
  spikes/s (it shows the newest displayed sample, several times a second);
- D: B with a long history on the accuracy curve (many times ``ACCURACY_POINTS`` rows fed to
  it: the page holds its cap of thinned points, as after hours);
- L (``--minutes N``): B with the app's defaults (evaluations on), one row a minute, for memory.

Chromium run as root gives its display threads nice -8, which a user's browser cannot have;
they are put back to nice 0 unless ``--keep-browser-priority``.

Lag: the worker's time when it recorded a sample's spikes, to the first animation frame in the
page whose raster title names that sample (page clock aligned by the fastest of a few round
trips); the page runs no animation loop of its own.  Page stalls: how late a 50 ms timer in the
page ran at worst (the main thread busy).  CPU: per-thread CPU clocks (the drain callback, the
server's event-loop thread, the training worker), the process, and, when psutil is installed,
the Chromium processes and the tab's driver (Playwright) apart.

    python -m benchmarks.bench_app [--seconds 15] [--rounds 2] [--minutes 0] [--memory-only]
                                   [--json FILE]
"""

import argparse
import contextlib
import json
import multiprocessing
import os
import socket
import sys
import threading
import time
from pathlib import Path

import numpy as np
import panel as pn
from playwright.sync_api import sync_playwright

from spikeviz.config import Config
from spikeviz.data import load_mnist
from spikeviz.train.trainer import Trainer
from spikeviz.viz.app import ACCURACY_POINTS, TrainingApp

try:
    import psutil
except ImportError:  # optional: only the browser's CPU needs it
    psutil = None

DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "mnist"
CHROMIUM = os.environ.get("SPIKEVIZ_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]

# In the page: note the animation frame in which each new raster sample is drawn, and how long
# the main thread stalls.  No animation loop of its own: a requestAnimationFrame loop would make
# the headless browser draw 60 frames a second (about 0.06 of a core) and slow the training it
# measures; the frame after each title change is enough for the lag.
PAGE_PROBE = """() => {
  const doc = Bokeh.documents[0], title = doc.get_model_by_name('bench-raster-title'),
        raster = doc.get_model_by_name('raster');
  const b = window.__bench = {stall: 0, prev: performance.now(), seen: []};
  title.properties.text.change.connect(() => {
    const m = /^sample ([\\d,]+)/.exec(title.text), rows = raster.data.t.length;
    if (m) requestAnimationFrame(() => b.seen.push(
      [Number(m[1].replace(/,/g, '')), performance.timeOrigin + performance.now(), rows]));
  });
  setInterval(() => {  // a 50 ms tick that runs late by as much as the main thread was busy
    const now = performance.now();
    b.stall = Math.max(b.stall, now - b.prev - 50); b.prev = now;
  }, 50);
}"""
PAGE_TAKE = """() => {
  const b = window.__bench;
  const out = {stall_ms: b.stall, seen: b.seen,
               now: performance.timeOrigin + performance.now(),
               heap_mb: performance.memory ? performance.memory.usedJSHeapSize / 2 ** 20 : null};
  b.stall = 0; b.seen = [];
  return out;
}"""


def rss_mb():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmRSS:"))


def thread_cpu(ident):
    return time.clock_gettime(time.pthread_getcpuclockid(ident))


def run_queue_wait(native_id):
    """Seconds a thread of this process has waited for a CPU while runnable (Linux schedstat)."""
    with open(f"/proc/self/task/{native_id}/schedstat") as schedstat:
        return int(schedstat.read().split()[1]) / 1e9


def browser_cpu():
    """CPU seconds of the Chromium processes so far (None without psutil)."""
    if psutil is None:
        return None
    total = 0.0
    for child in psutil.Process().children(recursive=True):
        try:
            if "chrom" in child.name():
                total += sum(child.cpu_times()[:2])
        except psutil.Error:
            pass
    return total


def unboost_browser():
    """Chromium run as root raises its display threads to nice -8, which an ordinary user's
    Chromium cannot: put them back to the benchmark's own nice (0 unless run under ``nice``), as
    on a user's machine.  Returns threads changed."""
    changed, own = 0, os.getpriority(os.PRIO_PROCESS, 0)
    for child in psutil.Process().children(recursive=True) if psutil else []:
        try:
            if "chrom" in child.name():
                for thread in child.threads():
                    if os.getpriority(os.PRIO_PROCESS, thread.id) < own:
                        os.setpriority(os.PRIO_PROCESS, thread.id, own)
                        changed += 1
        except (psutil.Error, OSError):
            pass
    return changed


def trained(trainer):
    return trainer.epoch * trainer.n_train + trainer.position


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Probe:
    """Wraps one session's app: when each sample was recorded and shown, the drain's CPU."""

    def __init__(self, app):
        self.app = app
        self.recorded, self.shown = {}, {}  # sample -> time.time()
        self.drain_cpu, self.server_thread = 0.0, None
        self.unboost = True  # see unboost_browser
        self.tab = None  # the RemoteTab, once open
        self.before_drain = []  # callables to run once on the server thread
        title = app._figures["raster"].title
        title.name = "bench-raster-title"  # so that the page finds it
        record, drain = app._record_sample, app.drain

        def timed_record(*args):
            record(*args)
            self.recorded[app._sample_count] = time.time()

        def timed_drain(*args):
            cpu = time.thread_time()
            while self.before_drain:
                self.before_drain.pop()()
            drain(*args)
            self.drain_cpu += time.thread_time() - cpu
            self.server_thread = threading.get_ident()
            if title.text.startswith("sample "):
                self.shown.setdefault(int(title.text[7:].split(":")[0].replace(",", "")),
                                      time.time())

        app._record_sample, app.drain = timed_record, timed_drain  # before open() binds drain

    def cpu(self):
        app = self.app
        return {"process": time.process_time(), "worker": thread_cpu(app._worker.ident),
                "worker_waiting_for_cpu": run_queue_wait(app._worker.native_id),
                "server_thread": thread_cpu(self.server_thread), "drain": self.drain_cpu,
                "browser": browser_cpu(), "tab_driver": self.tab.driver_cpu()}


def clock_offset(tab):
    """Page clock minus time.time(), s, from the fastest of a few round trips."""
    trips = []
    for _ in range(5):
        t0 = time.time()
        page_s = tab.evaluate("() => performance.timeOrigin + performance.now()") / 1000
        t1 = time.time()
        trips.append((t1 - t0, page_s - (t0 + t1) / 2))
    return min(trips)[1]


def stats_ms(values):
    if not values:
        return None
    v = np.asarray(values) * 1000
    return {"median": round(float(np.median(v))), "p95": round(float(np.percentile(v, 95))),
            "max": round(float(v.max()))}


def measure(probe, tab, seconds):
    """Watch the (running) app for ``seconds``: speed, CPU, lag, main-thread stalls, raster
    load."""
    app = probe.app
    if probe.unboost:
        unboost_browser()  # (threads started since the last call too)
    tab.evaluate(PAGE_TAKE)  # reset the page's counters
    probe.recorded.clear()
    probe.shown.clear()
    offset = clock_offset(tab)
    cpu0, n0, start = probe.cpu(), trained(app.trainer), time.perf_counter()
    skipped0, sent0 = app.skipped_updates, app._update_seq
    time.sleep(seconds)  # the tab records on its own
    cpu1, n1, wall = probe.cpu(), trained(app.trainer), time.perf_counter() - start
    seen = tab.evaluate(PAGE_TAKE)
    shown = [(s, t / 1000 - offset, rows) for s, t, rows in seen["seen"] if s in probe.recorded]
    cores = {k: round((cpu1[k] - cpu0[k]) / wall, 3) for k in cpu0 if cpu0[k] is not None}
    cores["rest_of_process"] = round(cores["process"] - cores["worker"] - cores["server_thread"], 3)
    return {
        "samples_per_s": round((n1 - n0) / wall),
        "cores": cores,
        "lag_ms": stats_ms([t - probe.recorded[s] for s, t, _ in shown]),
        "lag_from_drain_ms": stats_ms([t - probe.shown[s] for s, t, _ in shown
                                       if s in probe.shown]),
        "longest_page_stall_ms": round(seen["stall_ms"]),
        "raster_updates_per_s": round(len(seen["seen"]) / wall, 2),
        "updates_sent_per_s": round((app._update_seq - sent0) / wall, 2),
        "updates_skipped_per_s": round((app.skipped_updates - skipped0) / wall, 2),
        "raster_spikes_per_update": round(float(np.mean([r for *_, r in shown])) if shown else 0),
        "raster_spikes_per_s": round(sum(r for *_, r in shown) / wall),
        "rss_mb": round(rss_mb(), 1),
        "page_heap_mb": seen["heap_mb"] and round(seen["heap_mb"], 1),
    }


def thread_phase(trainer, seconds, train):
    """Samples/s of ``train(stop)`` run in this thread for ``seconds``, the cores this thread
    used and waited for, and the cores of the (idle) browser."""
    me, deadline = threading.get_native_id(), time.perf_counter() + seconds
    n0, cpu0, wait0, browser0 = (trained(trainer), time.thread_time(), run_queue_wait(me),
                                 browser_cpu())
    start = time.perf_counter()
    train(lambda: time.perf_counter() >= deadline)
    wall = time.perf_counter() - start
    return {"samples_per_s": round((trained(trainer) - n0) / wall),
            "cores": {"trainer": round((time.thread_time() - cpu0) / wall, 3),
                      "trainer_waiting_for_cpu": round((run_queue_wait(me) - wait0) / wall, 3),
                      "browser": browser0 and round((browser_cpu() - browser0) / wall, 3)}}


def bare_phase(trainer, seconds):
    """The CLI's loop: Trainer.train_epoch, epochs finished without evaluation."""
    def train(stop):
        while not stop():
            if trainer.train_epoch(should_stop=stop):
                trainer.finish_epoch(evaluate=False)
    return thread_phase(trainer, seconds, train)


def loop_phase(app, seconds):
    """The app's own training loop (recording included) in this thread: no server, no browser."""
    def train(stop):
        while not stop():
            app._train_slice()
    return thread_phase(app.trainer, seconds, train)


def app_phase(probe, tab, seconds):
    probe.app.start()
    result = measure(probe, tab, seconds)
    probe.app.pause()
    time.sleep(0.3)  # the worker ends its slice
    return result


def fill_accuracy_curve(app, rows=20 * ACCURACY_POINTS):
    """A long history fed to the accuracy curve, up to the current sample (synthetic values):
    the page then holds the curve's cap of thinned points.  Run on the server thread."""
    end = app._sample_count
    sample = np.linspace(0, end, rows).round().astype(np.int64)
    wave = 0.9 + 0.05 * np.sin(np.arange(rows) / 500)
    noise = 0.01 * np.random.default_rng(0).standard_normal(rows)
    app._curve.append(sample=sample, train_accuracy=wave + noise, mean_loss=1.5 - wave + noise)


def sample_rss(curve, stop, period_s=1.0):
    start = time.perf_counter()
    while not stop.wait(period_s):
        curve.append(((time.perf_counter() - start) / 60, rss_mb()))


def memory_summary(curve):
    t, mb = np.array(curve).T
    half = t >= (t[0] + t[-1]) / 2
    return {"minutes": round(float(t[-1] - t[0]), 2), "start_mb": round(float(mb[0]), 1),
            "max_mb": round(float(mb.max()), 1), "end_mb": round(float(mb[-1]), 1),
            "slope_mb_per_min": round(float(np.polyfit(t, mb, 1)[0]), 3),
            "slope_second_half_mb_per_min": round(float(np.polyfit(t[half], mb[half], 1)[0]), 3)}


def summary(a, a_loop, b, c, d):
    """The figures the issue sets targets for, from the phases."""
    def total(phases, key="samples_per_s", sub=None):
        return sum(x[key] if sub is None else x[key][sub] for x in phases)

    ratio = total(b) / total(a)
    share = total(b, "cores", "worker") / total(a, "cores", "trainer")
    server = max(x["cores"]["server_thread"] for x in b)
    lag_p95 = c["lag_ms"]["p95"]
    return {
        "training_speed_ratio": {
            "value": round(ratio, 3), "target": ">= 0.90", "met": ratio >= 0.90,
            "bare_loop_samples_per_s": [x["samples_per_s"] for x in a],
            "app_loop_unserved_samples_per_s": [x["samples_per_s"] for x in a_loop],
            "app_served_samples_per_s": [x["samples_per_s"] for x in b],
            "app_loop_unserved_ratio": round(total(a_loop) / total(a), 3),
            # the ratio = (cores the training thread got) x (samples per CPU second)
            "training_thread_cores_ratio": round(share, 3),
            "samples_per_cpu_second_ratio": round(ratio / share, 3)},
        "server_views_core_fraction": {
            "value": server, "target": "< 0.15", "met": server < 0.15,
            "drain_callback_max": max(x["cores"]["drain"] for x in b),
            "browser_mean": round(total(b, "cores", "browser") / len(b), 3)
            if b[0]["cores"].get("browser") is not None else None},
        "browser_lag_p95_ms": {
            "value": lag_p95, "target": "< 500", "met": lag_p95 < 500,
            "raster_spikes_per_s": c["raster_spikes_per_s"],
            "longest_page_stall_ms": c["longest_page_stall_ms"],
            "default_raster_lag_p95_ms_max": max(x["lag_ms"]["p95"] for x in b),
            "default_raster_spikes_per_s_min": min(x["raster_spikes_per_s"] for x in b),
            "default_longest_page_stall_ms": max(x["longest_page_stall_ms"] for x in b),
            "accuracy_curve_long_lag_p95_ms": d["lag_ms"]["p95"],
            "accuracy_curve_long_page_stall_ms": d["longest_page_stall_ms"]},
    }


def _drive_tab(conn, url, allowed_prefix):
    """In a child process: open ``url`` in Chromium with the network cut, then evaluate the
    JavaScript the benchmark sends until told to close."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1050})
        context.route("**/*", lambda route: route.continue_()  # the network is cut
                      if route.request.url.startswith(allowed_prefix)
                      else route.abort("internetdisconnected"))
        page = context.new_page()
        page.goto(url)
        page.wait_for_function("() => window.Bokeh && Bokeh.documents.length > 0 && "
                               "Bokeh.documents[0].get_model_by_name('raster') !== null")
        conn.send(("ok", None))
        while (script := conn.recv()) is not None:
            try:
                conn.send(("ok", page.evaluate(script)))
            except Exception as error:  # noqa: BLE001: reported in the benchmark's process
                conn.send(("error", f"{type(error).__name__}: {error}"))
        context.close()
        browser.close()


class RemoteTab:
    """A Chromium tab driven by Playwright from a child process.

    Playwright's sync API turns its event loop in the thread that waits on it: in the server's
    process that thread took the GIL (2-3% of a core), and the app's training worker waited for
    it, a cost that a user's server, with the browser elsewhere, does not pay.  The server's
    process only sends the tab JavaScript and reads the results.
    """

    def __init__(self, url, allowed_prefix, timeout_s=120):
        context = multiprocessing.get_context("spawn")
        self._conn, child_end = context.Pipe()
        self.process = context.Process(target=_drive_tab, daemon=True, name="bench-tab",
                                       args=(child_end, url, allowed_prefix))
        self.process.start()
        self._receive(timeout_s)  # the page is loaded

    def _receive(self, timeout_s):
        deadline = time.monotonic() + timeout_s
        while not self._conn.poll(0.1):
            if not self.process.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the tab's process stopped answering (exit code "
                                   f"{self.process.exitcode}); see its output above")
        status, value = self._conn.recv()
        if status == "error":
            raise RuntimeError(f"in the tab: {value}")
        return value

    def evaluate(self, script, timeout_s=60):
        self._conn.send(script)
        return self._receive(timeout_s)

    def driver_cpu(self):
        """CPU seconds of the driving process and Playwright's node driver (not Chromium)."""
        if psutil is None:
            return None
        total = 0.0
        driver = psutil.Process(self.process.pid)
        for process in [driver, *driver.children(recursive=True)]:
            try:
                if "chrom" not in process.name():
                    total += sum(process.cpu_times()[:2])
            except psutil.Error:
                pass
        return total

    def close(self):
        with contextlib.suppress(OSError):
            self._conn.send(None)
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.kill()


@contextlib.contextmanager
def served_tab(data, unboost):
    """The app served in-process and open in a Chromium tab (driven from a child process):
    yields (probe, tab)."""
    probes = []

    def make_app():  # what apps/train.py does per session, instrumented
        app = TrainingApp(config=Config(hidden=[800]), data=data, auto_evaluate=False)
        probes.append(Probe(app))
        app.attach_session()
        return app

    port = free_port()
    server = pn.serve({"app": make_app}, port=port, address="127.0.0.1", threaded=True,
                      show=False, allow_websocket_origin=[f"localhost:{port}"])
    tab = None
    try:
        tab = RemoteTab(f"http://localhost:{port}/app", f"http://localhost:{port}/")
        probe = probes[-1]
        probe.unboost, probe.tab = unboost, tab
        while probe.app._worker is None or probe.server_thread is None:
            time.sleep(0.05)  # onload opened the session: worker and periodic drain
        tab.evaluate(PAGE_PROBE)
        yield probe, tab
    finally:
        if tab is not None:
            tab.close()
        for probe in probes:
            probe.app.close(timeout=5)
        pn.state.kill_all_servers()
        server.join(timeout=5)


def phases_a_to_d(args, probe, tab):
    """The bare loop, the app's loop and the served app interleaved, then C and D."""
    app = probe.app
    bare = Trainer(Config(hidden=[800], eta_w=app.config.eta_w), data=app.data)
    loop_app = TrainingApp(config=Config(hidden=[800]), data=app.data, auto_evaluate=False)
    bare_phase(bare, 3)  # warm-up
    loop_phase(loop_app, 3)
    a, a_loop, b = [], [], []
    for round_ in range(1, args.rounds + 1):
        a.append(bare_phase(bare, args.seconds))
        log(f"A{round_} bare loop: {json.dumps(a[-1])}")
        a_loop.append(loop_phase(loop_app, args.seconds))
        log(f"A'{round_} the app's loop, unserved: {json.dumps(a_loop[-1])}")
        b.append(app_phase(probe, tab, args.seconds))
        log(f"B{round_} the app served, streaming: {json.dumps(b[-1])}")
    app.config.train_duration_ms = args.raster_duration_ms
    c = dict(app_phase(probe, tab, args.seconds), presentation_ms=args.raster_duration_ms)
    log(f"C the app, {args.raster_duration_ms:g} ms presentations: {json.dumps(c)}")
    app.config.train_duration_ms = 50.0
    probe.before_drain.append(lambda: fill_accuracy_curve(app))
    d = app_phase(probe, tab, args.seconds)
    d["accuracy_points_on_page"] = len(app.sources["accuracy"].data["sample"])
    log(f"D the app, a long accuracy curve: {json.dumps(d)}")
    return {"summary": summary(a, a_loop, b, c, d),
            "phases": {"A_bare_loop": a, "A'_app_loop_unserved": a_loop, "B_app_served": b,
                       "C_raster_5000": c, "D_accuracy_curve_long": d}}


def log(text):
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="length of each phase")
    parser.add_argument("--rounds", type=int, default=2, help="A A' B rounds")
    parser.add_argument("--minutes", type=int, default=0, help="long run L, for memory")
    parser.add_argument("--memory-only", action="store_true",
                        help="only the long run L (with --minutes), no phases A to D")
    parser.add_argument("--raster-duration-ms", type=float, default=250.0,
                        help="presentation length in phase C (more spikes per raster update)")
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA),
                        help="MNIST files (default: ../shared/data/mnist; bundled if missing)")
    parser.add_argument("--keep-browser-priority", action="store_true",
                        help="leave Chromium's threads at the nice -8 it gives them as root")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()

    full = (Path(args.data_dir) / "train-images-idx3-ubyte.gz").exists()
    data = load_mnist(args.data_dir, download=False) if full else load_mnist(bundled=True)
    report = {"date": time.strftime("%Y-%m-%d"), "cores": os.cpu_count(),
              "load_average_at_start": round(os.getloadavg()[0], 2),
              "network": "784-800-10, ADAM, 50 ms presentations at 5,000 events/s, "
                         + ("MNIST (60,000)" if full else "bundled digits"),
              "seconds_per_phase": args.seconds, "rounds": args.rounds,
              "browser_priority": "as launched" if args.keep_browser_priority else "nice 0"}
    curve, stop_rss = [], threading.Event()
    with served_tab(data, unboost=not args.keep_browser_priority) as (probe, tab):
        app = probe.app
        log("warm-up (compilation, first samples)")
        app_phase(probe, tab, 3)
        threading.Thread(target=sample_rss, args=(curve, stop_rss), daemon=True).start()
        if not args.memory_only:
            report.update(phases_a_to_d(args, probe, tab))
            report["memory_short_run"] = memory_summary(curve)

        if args.minutes:
            curve.clear()
            app.auto_evaluate = True  # as a user runs it
            app.start()
            report["long_run"] = []
            for minute in range(1, args.minutes + 1):
                report["long_run"].append(dict(measure(probe, tab, 60), minute=minute))
                log(f"L minute {minute}: {json.dumps(report['long_run'][-1])}")
            app.pause()
            report["memory_long_run"] = memory_summary(curve)
            report["memory_long_run"]["rss_mb_every_30_s"] = [round(mb, 1)
                                                              for _, mb in curve[::30]]
        stop_rss.set()
        report["load_average_at_end"] = round(os.getloadavg()[0], 2)
        report["record_logs_mb"] = round(app.record.nbytes / 2**20, 1)
        report["accuracy_rows_in_source"] = len(app.sources["accuracy"].data["sample"])
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
