"""In-session page switches: what a teacher does to re-open a page (click it in the sidebar of the same tab: an
st.navigation rerun of the same session, no new tab and no new session). For each run, a fresh server and one
Chromium tab: the tab opens the app on the run (Results), then clicks every other page's sidebar link in the
sidebar's order (each page's first visit in the session, and its first open since the server started), then
--reopens more rounds in a shuffled order (returns). A switch is timed from the mouse click until the page's own
heading is shown with Streamlit idle (no script run going, and none for QUIET_S after: a query-string update
reruns the page; the quiet time is not counted). Before each click the server is left to go idle (the warm-up
thread, the previous page's work), as when a teacher reads a page before opening the next. Prints figures,
asserts nothing.

    python bench/app.py --pages-only --navigate [--runs mnist,moving-mnist-digits] [--reopens 3] [--port 8620]

Check `uptime` first: on a shared 2-core machine the wall times move with the load; the CPU seconds (server;
Chromium with Playwright's driver) say where a switch's time goes.
"""

from __future__ import annotations

import os
import random
import shutil
import statistics
import subprocess
import time
from pathlib import Path

from bench.app import (CHROMIUM_ARGS, FINISHED, QUIET_S, cpu_seconds, rss_mb, start_server, wait_finished,
                       wait_idle, watcher_cpu_seconds)

TITLES = ("Results", "Playground", "Clips", "How it works", "Train", "Runs", "Sweeps", "Compare")  # sidebar order
VIEWPORT = {"width": 1400, "height": 900}  # the sidebar shows expanded at this width
TRAIN_PANEL = "Runs in progress and finished"  # the Train page's runs panel (a fragment polling every 3 s)


def page_shown(page, title: str):
    """A locator of `title`'s page done: its h1 inside an idle app whose Plotly charts are all drawn (Plotly draws
    after Streamlit's run ends; on Train: and its runs panel drawn)."""
    drawn = f"{FINISHED}:not(:has([data-testid='stPlotlyChart']:not(:has(.main-svg))))"  # every chart drawn
    idle = page.locator(drawn).filter(has=page.get_by_role("heading", level=1, name=title, exact=True))
    return idle.get_by_text(TRAIN_PANEL) if title == "Train" else idle


def switch(page, title: str, server_pid: int) -> dict:
    """Click `title`'s sidebar link (a real mouse click at its centre) and wait until that page is done. Returns
    {"s": seconds, "server": server CPU s, "browser": Chromium + driver CPU s} (NaN seconds after 5 minutes).
    Train's fragment reruns every 3 s, so there it is until the runs panel shows, with no quiet window."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    box = page.get_by_test_id("stSidebarNav").get_by_role("link", name=title, exact=True).bounding_box()
    server0, browser0 = cpu_seconds(server_pid), watcher_cpu_seconds({server_pid})
    t0 = time.perf_counter()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    try:
        done = wait_finished(page, page_shown(page, title), quiet_s=0 if title == "Train" else QUIET_S)
    except PlaywrightTimeout:
        done = float("nan")
    return {"s": done - t0, "server": cpu_seconds(server_pid) - server0,
            "browser": watcher_cpu_seconds({server_pid}) - browser0}


def round_orders(rounds: int, seed: int = 0) -> list[list[str]]:
    """The visits after the first open of Results: every other page in sidebar order, then `rounds` shuffled
    rounds of every page (never the page just shown: its link would not switch)."""
    rng, orders, last = random.Random(seed), [list(TITLES[1:])], TITLES[-1]
    for _ in range(rounds):
        order = list(TITLES)
        rng.shuffle(order)
        while order[0] == last:
            rng.shuffle(order)
        orders.append(order)
        last = order[-1]
    return orders


def navigate_run(browser, env: dict, run: str, rounds: int, port: int | None) -> dict:
    """A fresh server and one tab on `run`: {"first": {title: switch; Results: the new tab's open},
    "again": {title: [switch, ...]}, "rss"/"peak": the server's MB at the end, "load": load averages at the end}."""
    proc, url, _ = start_server(env, port=port)
    out: dict = {"first": {}, "again": {}}
    try:
        context = browser.new_context(viewport=VIEWPORT)
        page = context.new_page()
        server0, browser0, t0 = cpu_seconds(proc.pid), watcher_cpu_seconds({proc.pid}), time.perf_counter()
        page.goto(f"{url}/?run={run}")
        out["first"]["Results"] = {"s": wait_finished(page, page_shown(page, "Results")) - t0,
                                   "server": cpu_seconds(proc.pid) - server0,
                                   "browser": watcher_cpu_seconds({proc.pid}) - browser0}
        for i, order in enumerate(round_orders(rounds)):
            for title in order:
                wait_idle([proc.pid], limit_s=60)
                figures = switch(page, title, proc.pid)
                if i == 0:
                    out["first"][title] = figures
                else:
                    out["again"].setdefault(title, []).append(figures)
        context.close()
        out["rss"], out["peak"] = rss_mb(proc.pid)
        out["load"] = os.getloadavg()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return out


def print_run(run: str, out: dict) -> None:
    """One table: per page, first visit in the session, re-opens (median / worst), and the CPU seconds."""
    nan = float("nan")
    print(f"\n  run {run}: a new tab opens Results (*: the server's first page, with the imports), then sidebar "
          "clicks in that tab (s: click -> heading shown, app idle, charts drawn; CPU s per switch)")
    print(f"  {'page':<13}{'first (s)':>10}{'re-open med / worst (s)':>26}{'server CPU first / re-open':>29}"
          f"{'browser CPU first / re-open':>30}")
    for title in TITLES:
        first, again = out["first"].get(title, {"s": nan, "server": nan, "browser": nan}), out["again"].get(title, [])
        med = {key: statistics.median(f[key] for f in again) if again else nan for key in ("s", "server", "browser")}
        worst = max((f["s"] for f in again), default=nan)
        name = title + "*" * (title == "Results")
        print(f"  {name:<13}{first['s']:>10.2f}{med['s']:>18.2f} / {worst:5.2f}{first['server']:>21.2f} / "
              f"{med['server']:5.2f}{first['browser']:>22.2f} / {med['browser']:5.2f}")
    every = [f for title in TITLES for f in out["again"].get(title, [])]
    if every:
        median = {key: statistics.median(f[key] for f in every) for key in ("s", "server", "browser")}
        print(f"  all {len(every)} re-opens: median {median['s']:.2f} s, worst {max(f['s'] for f in every):.2f} s; "
              f"server CPU median {median['server']:.2f} s, browser CPU median {median['browser']:.2f} s")
    print(f"  server memory at the end {out['rss']:.0f} MB resident, peak {out['peak']:.0f} MB; load average at the "
          f"end {', '.join(f'{x:.2f}' for x in out['load'])}", flush=True)


def bench_navigation(env: dict, runs: list[str], rounds: int, port: int | None) -> None:
    """In-session page switches on each of `runs` (names under env's PKD_PRETRAINED_DIR), one fresh server each."""
    from playwright.sync_api import sync_playwright

    from pkd.ssm.cpu_info import describe_cpu

    uptime = subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    print(f"\n== in-session page switches (sidebar clicks in one tab; {rounds} re-open rounds): CPU {describe_cpu()};"
          f" uptime at the start: {uptime}", flush=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS)
        for run in runs:
            if not (Path(env["PKD_PRETRAINED_DIR"]) / run / "manifest.json").is_file():
                print(f"\n  {run}: not a shipped run, skipped")
                continue
            print_run(run, navigate_run(browser, env, run, rounds, port))
        browser.close()
