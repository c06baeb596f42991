"""App performance: each page's first and repeated open and the server's memory after every page on every shipped
run (side by side with an older commit: --compare REF); server start -> Results rendered in Chromium; drawn digit ->
all K prefix predictions; training throughput with and without a browser watching the Train page. Prints figures,
asserts nothing.

    python bench/app.py [--run pretrained/mnist] [--config configs/tiny.yaml] [--skip-browser] [--skip-train]
    python bench/app.py --pages-only [--compare 2f4de0e] [--reopens 3] [--fresh-browser]   # page times, memory
    python bench/app.py --pages-only --navigate [--runs mnist,moving-mnist-digits]   # in-session page switches

Check `uptime` first: on a shared 2-core machine the numbers move with the load (the throughput runs alternate
watched and unwatched runs so both see similar conditions).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(env: dict, root: Path = ROOT, port: int | None = None) -> tuple[subprocess.Popen, str, float]:
    """Start the app of the tree at `root` (on `port`, else a free one); returns the process, its URL and seconds
    until /_stcore/health answered."""
    port = port or free_port()
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(root / "app" / "main.py"),
                             "--server.headless", "true", "--server.address", "127.0.0.1", "--server.port",
                             str(port), "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false", "--runner.postScriptGC", "false"],
                            cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1) as response:
                if response.read() == b"ok":
                    return proc, url, time.perf_counter() - t0
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError("streamlit exited during start-up") from None
            time.sleep(0.05)


def bench_startup(env: dict, repeats: int) -> None:
    from playwright.sync_api import sync_playwright

    print("\n== server start -> Results page rendered in Chromium (chart with its points drawn)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS)
        for i in range(repeats):
            t0 = time.perf_counter()
            proc, url, health = start_server(env)
            try:
                page = browser.new_page()
                page.goto(url)
                page.locator("[data-testid='stPlotlyChart'] .scatterlayer .point").first.wait_for(timeout=120_000)
                total = time.perf_counter() - t0
                page.close()
                print(f"  run {i + 1}: health after {health:.2f} s, chart rendered after {total:.2f} s")
            finally:
                proc.terminate()
                proc.wait(timeout=30)
        browser.close()


PAGES = ("", "playground", "clips", "how_it_works", "train", "runs", "sweeps")  # URL paths; "" = Results
RUN_PAGES = ("", "playground", "clips", "how_it_works")  # the pages that load what a run holds (models, data)
QUIET_S = 1.0  # a page has finished when its script stays finished this long (a query-string update reruns it)
FINISHED = "[data-testid='stApp'][data-test-script-state='notRunning']"  # Streamlit idle: no script run going


def rss_mb(pid: int) -> tuple[float, float]:
    """(resident now, peak resident) of a process in MB, from /proc/PID/status."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process (all its threads) has used, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_idle(pids: list[int], limit_s: float = 20.0) -> None:
    """Wait (at most limit_s) until the servers used under 5% of a core for 0.5 s: a background warm-up or the
    previous page's work done, as when a user reads a page before opening the next."""
    t_end = time.perf_counter() + limit_s
    while time.perf_counter() < t_end:
        before = sum(cpu_seconds(pid) for pid in pids)
        time.sleep(0.5)
        if sum(cpu_seconds(pid) for pid in pids) - before < 0.025:
            return


def open_page(new_page, url: str) -> float:
    """Seconds from navigation until the page's script has run to its end and stayed there QUIET_S (in a new tab =
    a new session; the quiet time is not counted). The Train page polls its runs in a fragment, so there it is
    until its runs panel shows. NaN when the page is not there within 5 minutes."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page = new_page()
    try:
        t0 = time.perf_counter()
        page.goto(url)
        if "/train" in url:
            page.get_by_text("Runs in progress and finished").wait_for(timeout=300_000)
            return time.perf_counter() - t0
        return wait_finished(page, page.locator(f"{FINISHED} h1").first) - t0
    except PlaywrightTimeout:
        return float("nan")
    finally:
        page.close()


def wait_finished(page, shown, quiet_s: float = QUIET_S) -> float:
    """perf_counter() when `shown` (a locator inside FINISHED: the page's own element, once its script run has
    ended) appeared, if the script then stays finished quiet_s (else when the last rerun within that window ended:
    a query-string update reruns the page; the quiet time is not counted). Raises Playwright's TimeoutError after
    5 minutes."""
    state = "document.querySelector('[data-testid=stApp]')?.getAttribute('data-test-script-state')"
    shown.wait_for(timeout=300_000)
    done = time.perf_counter()
    while time.perf_counter() - done < quiet_s:
        if page.evaluate(state) != "notRunning":
            page.locator(FINISHED).wait_for(timeout=300_000)
            done = time.perf_counter()
        page.wait_for_timeout(50)
    return done


def page_figures(trees: dict[str, Path], env: dict, runs: list[str], fresh_browser: bool = False,
                 reopens: int = 3) -> dict:
    """Serve the app of each tree at once and open, alternating between the trees (which one goes first alternates
    too), each page on `runs[0]` once (first open) and `reopens` times more (re-opens), then each page that loads a
    run's models or data on every run; before each open the servers are left to go idle. Each tree has its own
    Chromium (both start cold); each open is a new tab of it (its cache shared between tabs, as a user's is), or
    with fresh_browser a new browser profile each time (nothing cached: every tab downloads and compiles
    Streamlit's and Plotly's JavaScript again). Returns per tree {"first": {page: s}, "again": {page: median s},
    "cpu_first"/"cpu_again": {page: the server's CPU seconds for that open (median)}, "slowest": (s, url), "rss":
    MB, "peak": MB}; CPU seconds move less with the machine's load than wall times."""
    from playwright.sync_api import sync_playwright

    servers = {name: start_server(dict(env, PYTHONPATH=str(tree)), tree)[:2] for name, tree in trees.items()}
    out = {name: {"first": {}, "again": {}, "cpu_first": {}, "cpu_again": {}, "slowest": (0.0, "")} for name in trees}
    opens = [(when, path, runs[0]) for path in PAGES for when in ["first"] + ["again"] * reopens]
    opens += [(None, path, run) for run in runs for path in RUN_PAGES]
    pids = [proc.pid for proc, _ in servers.values()]
    again: dict = {name: {} for name in trees}
    try:
        with sync_playwright() as playwright:
            viewport = {"width": 1400, "height": 900}
            browsers = {name: playwright.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS)
                        for name in trees}
            contexts = {name: browsers[name].new_context(viewport=viewport) for name in trees}  # one user each
            for i, (when, path, run) in enumerate(opens):
                for name in (list(trees) if i % 2 == 0 else list(trees)[::-1]):
                    wait_idle(pids)
                    new_page = (lambda b=browsers[name]: b.new_page(viewport=viewport)) if fresh_browser else \
                        contexts[name].new_page
                    cpu0 = cpu_seconds(servers[name][0].pid)
                    seconds = open_page(new_page, f"{servers[name][1]}/{path}?run={run}")
                    cpu = cpu_seconds(servers[name][0].pid) - cpu0
                    page = path or "results"
                    if when == "first":
                        out[name]["first"][page], out[name]["cpu_first"][page] = seconds, cpu
                    elif when == "again":
                        again[name].setdefault(page, []).append((seconds, cpu))
                    else:
                        out[name]["slowest"] = max(out[name]["slowest"], (seconds, f"/{path}?run={run}"))
            for browser in browsers.values():
                browser.close()
        for name, (proc, _) in servers.items():
            out[name]["rss"], out[name]["peak"] = rss_mb(proc.pid)
            for page, values in again[name].items():
                out[name]["again"][page] = statistics.median(v[0] for v in values)
                out[name]["cpu_again"][page] = statistics.median(v[1] for v in values)
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(timeout=30)
    return out


APPTEST_PAGES = {"results": "app_pages/results.py", "playground": "app_pages/playground.py",
                 "clips": "app_pages/clips.py", "how_it_works": "app_pages/how_it_works.py",
                 "train": "app_pages/train.py", "runs": "app_pages/runs.py", "sweeps": "app_pages/sweeps.py"}
APPTEST_CHILD = """
import json, os, sys, time
from streamlit.testing.v1 import AppTest
runs, pages = json.loads(sys.argv[1]), json.loads(sys.argv[2])
def rss(field="VmRSS"):
    return int([l for l in open(f"/proc/{os.getpid()}/status") if l.startswith(field)][0].split()[1]) / 1024
def open_page(page, run):
    at = AppTest.from_file("app/main.py", default_timeout=600)
    at.query_params["run"] = run
    t0 = time.perf_counter()
    at.switch_page(pages[page]).run()
    return time.perf_counter() - t0, bool(at.exception)
out = {"first": {}, "again": {}, "errors": [], "slowest": [0.0, ""]}
for page in pages:
    for when in ("first", "again"):
        out[when][page], bad = open_page(page, runs[0])
for run in runs:
    for page in pages:
        seconds, bad = open_page(page, run)
        out["slowest"] = max(out["slowest"], [seconds, f"{page}?run={run}"])
        if bad:
            out["errors"].append(f"{page}?run={run}")
out["rss"], out["peak"] = rss(), rss("VmHWM")
print(json.dumps(out))
"""


def apptest_figures(tree: Path, env: dict, runs: list[str]) -> dict:
    """The pages of `tree` run in one process by Streamlit's AppTest (no browser, no server: for a machine too busy
    or too short of memory for Chromium): each page on runs[0] twice, then every page on every run; the process's
    resident memory at the end (the app's caches and data, as the server would hold them)."""
    import json

    done = subprocess.run([sys.executable, "-c", APPTEST_CHILD, json.dumps(runs), json.dumps(APPTEST_PAGES)],
                          cwd=tree, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"AppTest run of {tree} failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def old_tree(ref: str, into: Path) -> Path:
    """The repository at commit `ref`, extracted with `git archive` into `into` (no worktree, nothing changed here)."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def bench_pages(env: dict, compare: str | None, apptest: bool = False, fresh_browser: bool = False,
                reopens: int = 3) -> None:
    """Each page's first open and re-open, and the server's memory after every page on every shipped run."""
    from pkd.runs import list_runs

    shipped = Path(env["PKD_PRETRAINED_DIR"])
    runs = [Path(r.path).relative_to(shipped).as_posix() for r in list_runs(shipped)]
    runs.sort(key=lambda r: r != "mnist")  # the app's default run first
    how = "AppTest, one process per tree" if apptest else \
        f"Chromium, a new tab each ({'a fresh browser profile' if fresh_browser else 'one browser cache'}), the trees alternating"
    print(f"\n== page opens ({how}; the script run to its end) and server memory after every page on each of the "
          f"{len(runs)} shipped runs ({shipped})", flush=True)
    trees = {"this tree": ROOT}
    with tempfile.TemporaryDirectory(prefix="pkd-bench-old-") as tmp:
        if compare:  # a folder holding an older checkout, or a commit of this repository
            trees[compare] = Path(compare) if (Path(compare) / "app").is_dir() else old_tree(compare, Path(tmp))
        if apptest:
            figures = {name: apptest_figures(tree, dict(env, PYTHONPATH=str(tree)), runs) for name, tree in trees.items()}
        else:
            figures = page_figures(trees, env, runs, fresh_browser, reopens)
        for name in trees:
            print(f"  {name}: {figures[name]}", flush=True)
    names = list(figures)
    print(f"  {'page':<14}" + "".join(f"{name + ' first / again (s)':>34}" for name in names))
    for page in figures[names[0]]["first"]:
        print(f"  {page:<14}" + "".join(f"{f['first'].get(page, float('nan')):>25.2f} / {f['again'].get(page, float('nan')):5.2f}"
                                       for f in figures.values()))
    if "cpu_first" in figures[names[0]]:
        print(f"  {'server CPU s':<14}" + "".join(f"{name + ' first / again':>34}" for name in names))
        for page in figures[names[0]]["cpu_first"]:
            print(f"  {page:<14}" + "".join(f"{f['cpu_first'][page]:>25.2f} / {f['cpu_again'].get(page, float('nan')):5.2f}"
                                           for f in figures.values()))
    if len(names) == 2:
        a, b = figures[names[0]], figures[names[1]]
        for when in [w for w in ("first", "again", "cpu_first", "cpu_again") if w in a]:
            ratios = [a[when][p] / b[when][p] for p in a[when] if b[when].get(p)]
            if ratios:
                print(f"  {when}: {names[0]} / {names[1]} per page: " + ", ".join(f"{r:.2f}" for r in ratios)
                      + f"; median {statistics.median(ratios):.2f}")
    for name, f in figures.items():
        if f.get("errors"):
            print(f"  {name}: pages that raised: {', '.join(f['errors'])}")
        print(f"  {name}: slowest open of all pages x runs {f['slowest'][0]:.2f} s ({f['slowest'][1]}); server "
              f"memory after all of them {f['rss']:.0f} MB resident, peak {f['peak']:.0f} MB")


def drawn_seven() -> np.ndarray:
    """A 280x280 RGBA canvas with a '7' in white strokes (what the canvas component returns)."""
    from PIL import Image, ImageDraw

    image = Image.new("RGBA", (280, 280), (0, 0, 0, 255))
    draw = ImageDraw.Draw(image)
    draw.line([(70, 60), (210, 60), (120, 230)], fill=(255, 255, 255, 255), width=20, joint="curve")
    return np.asarray(image)


def bench_prediction(run_path: Path, repeats: int) -> None:
    from pkd import inference, preprocess
    from pkd.data import get_dataset_spec
    from pkd.artifacts import load_ensemble, load_teacher
    from pkd.preprocess import prepare_drawing
    from pkd.runs import Run

    run = Run(run_path)
    spec = get_dataset_spec(run.config()["data"]["dataset"])
    ensemble = load_ensemble(run)
    teacher = load_teacher(run)
    canvas = drawn_seven()

    def library_path() -> list:
        x = prepare_drawing(canvas)  # (1, 28, 28)
        with torch.no_grad():
            return ensemble.all_prefixes(spec.normalize(x[None]))

    def app_path():
        return inference.predict_digit(ensemble, spec, preprocess.prepare_canvas(canvas), teacher,
                                       run.summary().get("teacher", {}).get("flops"))

    print(f"\n== drawn digit -> all K={ensemble.k} prefix predictions ({run_path})")
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for name, fn in (("library: prepare_drawing + all_prefixes", library_path),
                         ("app: + each student's vote + teacher", app_path)):
            for _ in range(3):
                fn()  # warm-up
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                fn()
                times.append(1000 * (time.perf_counter() - t0))
            times.sort()
            print(f"  {threads} thread(s), {name}: median {statistics.median(times):.1f} ms, "
                  f"p90 {times[int(0.9 * len(times)) - 1]:.1f} ms, min {times[0]:.1f} ms (target <= 50 ms)")
    t0 = time.perf_counter()
    prepare_drawing(canvas)
    prep = 1000 * (time.perf_counter() - t0)
    print(f"  of which prepare_drawing alone: {prep:.1f} ms")


def samples_per_second(run) -> float:
    """Training throughput of a finished run from its epoch records (samples / second over all epochs)."""
    config = run.config()
    n = config["data"].get("train_limit") or 50_000
    seconds = sum(r["seconds"] for r in run.metrics() if r.get("event") == "epoch")
    epochs = sum(1 for r in run.metrics() if r.get("event") == "epoch")
    return n * epochs / seconds if seconds else float("nan")


def _proc_table() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, CPU seconds used so far) for every process visible in /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        table[int(entry)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / ticks)
    return table


def watcher_cpu_seconds(exclude: set[int]) -> float:
    """CPU seconds used so far by this script's descendants (server, Playwright driver, Chromium), minus the
    subtrees rooted at `exclude` (the training processes)."""
    table = _proc_table()
    total = 0.0
    for pid, (_, cpu) in table.items():
        node, inside = pid, False
        while node in table and node > 1:
            if node in exclude:
                inside = False
                break
            if node == os.getpid():
                inside = pid != os.getpid()
                break
            node = table[node][0]
        if inside:
            total += cpu
    return total


def bench_training(config: Path, env: dict, rounds: int, overrides: list[str]) -> None:
    from playwright.sync_api import sync_playwright

    from pkd import launch

    print(f"\n== training throughput, with and without Chromium watching the Train page ({config.name})")
    runs_dir = Path(env["PKD_RUNS_DIR"])
    results: dict[str, list[float]] = {"unwatched": [], "watched": []}
    proc, url, _ = start_server(env)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS)
            for i in range(rounds):
                for mode in ("unwatched", "watched"):
                    page = None
                    if mode == "watched":
                        page = browser.new_page()
                        page.goto(f"{url}/train")
                        page.get_by_text("Runs in progress and finished").wait_for(timeout=60_000)
                    run = launch.start_run(config, overrides, runs_dir=runs_dir, device="cpu", build_kernel=False,
                                           name=f"bench-{mode}")
                    child = launch.child_process(run)
                    cpu0, t0 = watcher_cpu_seconds({child.pid}), time.perf_counter()
                    while run.state() in ("created", "running", "unknown"):
                        time.sleep(0.5)
                    cpu = watcher_cpu_seconds({child.pid}) - cpu0
                    wall = time.perf_counter() - t0
                    if page is not None:
                        page.close()
                    rate = samples_per_second(run)
                    results[mode].append(rate)
                    print(f"  round {i + 1} {mode:>9}: {rate:8.0f} samples/s ({run.state()}); app server + "
                          f"browser used {cpu:.1f} CPU s in {wall:.0f} s = {100 * cpu / wall:.1f}% of one core")
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    watched, unwatched = statistics.median(results["watched"]), statistics.median(results["unwatched"])
    print(f"  median watched / unwatched throughput: {watched / unwatched:.3f} "
          f"(cost of the live page: {100 * (1 - watched / unwatched):+.1f}%; target <= 5%; on a shared machine the "
          "CPU share above is the steadier figure)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default=str(ROOT / "pretrained" / "mnist"), help="run for the Results/prediction "
                        "figures (default pretrained/mnist)")
    parser.add_argument("--config", default=str(ROOT / "configs" / "tiny.yaml"), help="config for the throughput runs")
    parser.add_argument("--repeats", type=int, default=50, help="prediction timings")
    parser.add_argument("--startups", type=int, default=2, help="server start-up timings")
    parser.add_argument("--rounds", type=int, default=2, help="watched/unwatched training pairs")
    parser.add_argument("--override", action="append", default=[], help="config override for the throughput "
                        "runs, e.g. --override students.optim.epochs=1 (repeatable)")
    parser.add_argument("--skip-browser", action="store_true", help="no Chromium figures")
    parser.add_argument("--skip-train", action="store_true", help="no training throughput figures")
    parser.add_argument("--pages-only", action="store_true", help="only the page times and server memory")
    parser.add_argument("--apptest", action="store_true", help="with --pages-only: run the pages in one process "
                        "with Streamlit's AppTest instead of a server and Chromium (a busy or memory-short machine)")
    parser.add_argument("--fresh-browser", action="store_true", help="with --pages-only: each tab in a new browser "
                        "profile (nothing cached; the figures before this option existed) instead of one browser")
    parser.add_argument("--reopens", type=int, default=3, help="with --pages-only: re-opens per page on the default "
                        "run (their median is reported)")
    parser.add_argument("--navigate", action="store_true", help="with --pages-only: in-session page switches "
                        "(sidebar clicks in one tab, --reopens rounds; bench/app_navigation.py) instead of new tabs")
    parser.add_argument("--runs", default="mnist,moving-mnist-digits", help="with --navigate: shipped runs, "
                        "comma-separated (a fresh server each)")
    parser.add_argument("--port", type=int, help="with --navigate: the server's port (default: a free one)")
    parser.add_argument("--compare", metavar="REF", help="also time the app of this git commit (an older release), "
                        "or of a folder holding an older checkout, side by side")
    args = parser.parse_args()
    run_path = Path(args.run).resolve()
    if not (run_path / "manifest.json").is_file():
        raise SystemExit(f"{run_path} is not a run; pass --run DIR (e.g. a tiny run you trained)")
    print(f"load average: {os.getloadavg()}; torch threads {torch.get_num_threads()}; "
          f"CPU: {cpu_name()}, {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory(prefix="pkd-bench-") as tmp:
        pretrained = Path(tmp) / "pretrained"
        pretrained.mkdir()
        shutil.copytree(run_path, pretrained / "mnist", ignore=shutil.ignore_patterns("checkpoint.pt"))  # opens on it
        env = dict(os.environ, PKD_RUNS_DIR=str(Path(tmp) / "runs"), PKD_PRETRAINED_DIR=str(pretrained),
                   PYTHONPATH=str(ROOT))
        if args.pages_only and args.navigate:
            from bench.app_navigation import bench_navigation

            bench_navigation(dict(env, PKD_PRETRAINED_DIR=str(ROOT / "pretrained")), args.runs.split(","),
                             args.reopens, args.port)
            return
        if args.pages_only:
            bench_pages(dict(env, PKD_PRETRAINED_DIR=str(ROOT / "pretrained")), args.compare, args.apptest,
                        args.fresh_browser, args.reopens)
            return
        bench_prediction(run_path, args.repeats)
        if not args.skip_browser:
            if shutil.which("chromium") is None:
                print("\n(chromium not installed: skipping the browser figures)")
            else:
                bench_startup(env, args.startups)
                if not args.skip_train:
                    bench_training(Path(args.config).resolve(), env, args.rounds, args.override)


if __name__ == "__main__":
    main()
