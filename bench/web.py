"""The exported web page in headless Chromium: size, start-up, answer per stroke, and parity on the whole test set.

Exports a run's page (default the shipped `pretrained/mnist`, every student) into a temporary folder, or takes one
already exported (`--page DIR`), serves it from 127.0.0.1 and measures, in fresh browser pages:
- the folder's size (runtime included);
- start-up: milliseconds from navigation start to the page's load event, to the model ready (`window.pkd.ready`),
  and to the first answer (one test digit through `window.pkd.predict` right after ready); best and median of
  `--loads` fresh pages;
- per stroke: `window.pkd.last.ms` (stroke end -> preprocessing, every prefix in onnxruntime-web, table drawn) over
  `--strokes` digits drawn with the mouse; and `window.pkd.predict` alone on one digit;
- parity: every prefix's probabilities for the whole test split (10,000 MNIST digits; `--parity-limit N`: the first
  N), `predictMany` in batches, against pkd's own `PrefixModel` in PyTorch: max |difference| and how many samples
  get identical predictions from every prefix.

A video run's page (clip mode) is measured alike: its first test clip is the start-up's answer, a stroke is a drawing
made into a clip and answered both ways round, and parity is on test clips (`--parity-limit 200`: each clip is
T x S x S numbers through JSON).

    python bench/web.py [--run pretrained/mnist] [--page DIR] [--loads 5] [--strokes 20] [--skip-parity]
                        [--parity-limit N]
    python bench/web.py --page DIR_A --page DIR_B [--loads 8]   # start-up only, pages alternated load by load

Two or more pages: start-up only, one fresh page of each in turn per round, so a busy machine's load falls on all
of them alike (how a change is compared with main's page).

Prints figures, asserts nothing. Check `uptime` first: on a shared 2-core machine the numbers move with the load.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from pkd import data as pkd_data  # noqa: E402
from pkd.artifacts import load_ensemble  # noqa: E402
from pkd.data import get_dataset_spec  # noqa: E402
from pkd.export import PrefixModel  # noqa: E402
from pkd.runs import Run  # noqa: E402
from pkd.web.build import export_web, folder_bytes  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
START = """async () => {
  await window.pkd.ready;
  const ready = performance.now();
  await window.pkd.predict(window.benchDigit);
  const nav = performance.getEntriesByType("navigation")[0];
  const t = window.pkd.timings;
  return {scripts: t.scripts, decoded: t.decoded, session: t.session, load: nav.loadEventEnd, ready: ready,
          first: performance.now()};
}"""


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def serve(folder: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/index.html"


def draw(page, rng: np.random.Generator) -> None:
    """A random three-point stroke (a 7, a Z, a V ...) with the mouse."""
    box = page.locator("#draw").bounding_box()
    points = rng.uniform(0.2, 0.8, size=(3, 2))
    at = lambda p: (box["x"] + box["width"] * p[0], box["y"] + box["height"] * p[1])  # noqa: E731
    page.mouse.move(*at(points[0]))
    page.mouse.down()
    for a, b in zip(points, points[1:]):
        for step in range(1, 11):
            page.mouse.move(*at(a + (b - a) * step / 10))
    page.mouse.up()


def start_up(browser, url: str, digit: list[float], loads: int) -> dict[str, list[float]]:
    times = {"scripts": [], "decoded": [], "session": [], "load": [], "ready": [], "first": []}
    for _ in range(loads):
        page = browser.new_page()
        page.add_init_script(f"window.benchDigit = {digit};")
        page.goto(url)
        page.wait_for_function("window.pkd !== undefined")
        for key, value in page.evaluate(START).items():
            times[key].append(value)
        page.close()
    return times


def strokes(browser, url: str, digit: list[float], n: int) -> tuple[list[float], list[float]]:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(url)
    page.wait_for_function("window.pkd !== undefined")
    page.evaluate("window.pkd.ready")
    rng, per_stroke = np.random.default_rng(0), []
    for _ in range(n):
        page.get_by_role("button", name="Clear").click()
        draw(page, rng)
        page.wait_for_function("window.pkd.last && window.pkd.last.ms !== undefined")
        per_stroke.append(page.evaluate("window.pkd.last.ms"))
    predict = page.evaluate("""async (px) => { const out = [];
      for (let i = 0; i < 30; i++) { const t = performance.now(); await window.pkd.predict(px);
                                     out.push(performance.now() - t); } return out; }""", digit)
    page.close()
    return per_stroke, predict


def parity(browser, url: str, run: Run, limit: int | None = None) -> tuple[float, int, int]:
    spec = get_dataset_spec(run.setting("data", "dataset"))
    split = pkd_data.load_split(spec.name, "test", pkd_data.resolve_data_root())
    inputs = split.inputs[:limit]
    batch = max(1, 400_000 // inputs[0].numel())  # 500 digits, 21 clips of 8 x 48 x 48
    model = PrefixModel(load_ensemble(run), spec, all_prefixes=True).eval()
    page = browser.new_page()
    page.goto(url)
    page.wait_for_function("window.pkd !== undefined")
    page.evaluate("window.pkd.ready")
    worst, same = 0.0, 0
    for start in range(0, len(inputs), batch):
        pixels = inputs[start:start + batch]
        got = np.array(page.evaluate("([px, n]) => window.pkd.predictMany(px, n)",
                                     [pixels.flatten().tolist(), len(pixels)]))
        with torch.no_grad():
            want = model(pixels)[2].numpy()
        worst = max(worst, float(np.abs(got - want).max()))
        same += int((got.argmax(-1) == want.argmax(-1)).all(axis=1).sum())
    page.close()
    return worst, same, len(inputs)


def summary(name: str, values: list[float]) -> str:
    return f"{name}: best {min(values):.0f} ms, median {statistics.median(values):.0f} ms, worst {max(values):.0f} ms"


def compare(pages: list[str], run: Run, loads: int) -> None:
    """Start-up of several exported pages, alternated: `loads` rounds of one fresh page each."""
    from playwright.sync_api import sync_playwright

    spec = get_dataset_spec(run.setting("data", "dataset"))
    digit = pkd_data.load_split(spec.name, "test", pkd_data.resolve_data_root()).inputs[0].flatten().tolist()
    servers = [serve(Path(page)) for page in pages]
    times = [{} for _ in pages]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM,
                                             args=["--headless", "--no-sandbox", "--disable-gpu"])
        for _ in range(loads):
            for (_, url), got in zip(servers, times):
                for key, values in start_up(browser, url, digit, 1).items():
                    got.setdefault(key, []).extend(values)
        browser.close()
    print(f"load after: {Path('/proc/loadavg').read_text().split()[:3]}")
    for page, got in zip(pages, times):
        print(f"{page}: {folder_bytes(Path(page)) / 1e6:.2f} MB")
        for key in ("session", "load", "first"):
            print("  " + summary(f"{key} (from navigation start)", got[key]))
        print("  " + summary("first answer after the load event", [f - lo for f, lo in zip(got["first"], got["load"])]))
    for server, _ in servers:
        server.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default=str(ROOT / "pretrained" / "mnist"))
    parser.add_argument("--page", action="append", help="an exported page's folder (default: export the run's page "
                        "now); twice or more: compare their start-up, alternated")
    parser.add_argument("--loads", type=int, default=5)
    parser.add_argument("--strokes", type=int, default=20)
    parser.add_argument("--skip-parity", action="store_true")
    parser.add_argument("--parity-limit", type=int, help="parity on the first N test samples only (clips: 200)")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    run = Run(Path(args.run))
    print(subprocess.run([sys.executable, "-m", "pkd", "backends"], capture_output=True, text=True,
                         cwd=ROOT).stdout.strip().splitlines()[-1])
    print(f"load: {Path('/proc/loadavg').read_text().split()[:3]}")
    if args.page and len(args.page) > 1:
        compare(args.page, run, args.loads)
        return
    with tempfile.TemporaryDirectory(prefix="pkd-bench-web-") as tmp:
        if args.page:
            folder = Path(args.page[0])
        else:
            started = time.perf_counter()
            folder = export_web(run, out=Path(tmp) / "page")
            print(f"export: {time.perf_counter() - started:.0f} s")
        print(f"folder: {folder_bytes(folder):,} bytes ({folder_bytes(folder) / 1e6:.2f} MB); model.js "
              f"{(folder / 'assets' / 'model.js').stat().st_size:,} bytes, runtime "
              f"{sum((folder / 'assets' / n).stat().st_size for n in ('ort.wasm.min.js', 'ort-wasm.js')):,} bytes")
        server, url = serve(folder)
        spec = get_dataset_spec(run.setting("data", "dataset"))
        digit = pkd_data.load_split(spec.name, "test", pkd_data.resolve_data_root()).inputs[0].flatten().tolist()
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM,
                                                 args=["--headless", "--no-sandbox", "--disable-gpu"])
            times = start_up(browser, url, digit, args.loads)
            for key, label in [("scripts", "scripts run"), ("decoded", "runtime and model decoded"),
                               ("session", "session made"), ("load", "page loaded"), ("ready", "model ready"),
                               ("first", "first answer")]:
                print(summary(f"{label} (from navigation start)", times[key]))
            per_stroke, predict = strokes(browser, url, digit, args.strokes)
            print(summary(f"stroke -> every prefix's answer drawn ({args.strokes} strokes)", per_stroke))
            print(summary("window.pkd.predict alone (30 calls)", predict))
            if not args.skip_parity:
                worst, same, n = parity(browser, url, run, args.parity_limit)
                print(f"parity on {n:,} test samples: max |page - pkd| {worst:.1e}; identical predictions from every "
                      f"prefix on {same:,} / {n:,}")
            browser.close()
        server.shutdown()


if __name__ == "__main__":
    main()
