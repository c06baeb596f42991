"""Sweeps on a real PostgreSQL server (`pkd sweep --storage URL`): two workers in separate folders, as on two
machines, share one study and find the journal run's front; a SIGKILLed worker's trial is failed by its heartbeat
and retried; bad URLs, servers and databases give one line and write nothing; the password lands in no file pkd
writes, no output and not in the app; optuna-dashboard reads the studies as a second reader.

They need a server: $PKD_TEST_DB_URL, a superuser's URL (`.ci/postgres.sh start DIR` prints one). Without it they
skip with one line; CI (.ci/run, PKD_REQUIRE_DB=1) starts one and requires them.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from pkd import sweep as pkd_sweep
from pkd.runs import Run, State
from pkd.sweep.space import parse_space
from tests.pkd_process import ROOT, TINY, pkd, start
from tests.sweep.sweeping import FAST, SHIPPED_TEACHER, SPACE, TIMEOUT, consoles, env, wait_for, write_space

sqlalchemy = pytest.importorskip("sqlalchemy")
psycopg = pytest.importorskip("psycopg")
optuna = pytest.importorskip("optuna")
N_TRIALS = 3
HEARTBEAT = "1"  # seconds: a trial silent for 2 s is stale
SLOW = 3 * TIMEOUT  # three trials on each of two machines sharing this machine's cores with the rest of the suite


@pytest.fixture(scope="module")
def server() -> sqlalchemy.engine.URL:
    url = os.environ.get("PKD_TEST_DB_URL")
    if not url:
        if os.environ.get("PKD_REQUIRE_DB") == "1":
            pytest.fail("PKD_REQUIRE_DB=1 but PKD_TEST_DB_URL is not set (.ci/postgres.sh start DIR prints one)")
        pytest.skip("no PostgreSQL server: set PKD_TEST_DB_URL (`.ci/postgres.sh start DIR` prints one)")
    return sqlalchemy.engine.make_url(url)


def _admin(server, sql: str) -> None:
    with psycopg.connect(host=server.host, port=server.port, user=server.username, password=server.password,
                         dbname=server.database, autocommit=True) as conn:
        conn.execute(sql)


@pytest.fixture(scope="module")
def new_database(server):
    """Makes empty databases on the server (dropped at the end); returns (URL with the password, password)."""
    made = []

    def make() -> tuple[str, str]:
        name = f"pkd_test_{secrets.token_hex(4)}"
        _admin(server, f"CREATE DATABASE {name}")
        made.append(name)
        return server.set(database=name).render_as_string(hide_password=False), server.password

    yield make
    for name in made:
        _admin(server, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def without_password(url: str) -> str:
    return sqlalchemy.engine.make_url(url)._replace(password=None).render_as_string(hide_password=False)


def sweep_args(folder: Path, space: Path, *extra: str, trials: int = N_TRIALS) -> list[str]:
    return ["sweep", "--config", TINY, "--space", str(space), "--trials", str(trials), "--sweep-dir", str(folder),
            "--no-kernel-build", *extra, *FAST, f"teacher.checkpoint={SHIPPED_TEACHER}"]


def files_holding(root: Path, secret: str) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


def front_of(points: list[dict]) -> list[tuple]:
    return [(p["name"], p["k"], p["flops"], p["val_acc"], p["test_acc"]) for p in pkd_sweep.front(points, "val")]


def run_two_machines(url: str, password: str, tmp: Path) -> dict:
    """Two `pkd sweep` workers at once on one database study, each in a folder of its own (as on two machines;
    the password given once in the URL, once in $PKD_DB_PASSWORD), then the same sweep on a journal file."""
    space = write_space(tmp, SPACE)
    first = start(*sweep_args(tmp / "a" / "sweep", space, "--storage", url, "--heartbeat", HEARTBEAT), env=env())
    wait_for(lambda: (tmp / "a" / "sweep" / "sweep.json").is_file() or first.poll() is not None, "the study")
    second = subprocess.Popen([sys.executable, "-m", "pkd", *sweep_args(tmp / "b" / "sweep", space, "--storage",
                                                                        without_password(url))],
                              cwd=ROOT, env=env() | {"PKD_DB_PASSWORD": password}, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    out, err = second.communicate(timeout=SLOW)
    assert first.wait(timeout=SLOW) == 0 and second.returncode == 0, err[-3000:] + consoles(tmp / "a" / "sweep")
    journal = pkd(*sweep_args(tmp / "journal", space, "--workers", "2"), env=env(), timeout=SLOW)  # on a journal
    assert journal.returncode == 0, journal.stderr[-3000:]
    return {"tmp": tmp, "url": url, "password": password, "output": out + err + journal.stdout + journal.stderr}


def test_two_machines_share_one_study(new_database, tmp_path, monkeypatch):
    """One test, so that its sweeps run once however pytest-xdist shares the tests out: the front, the password
    kept out of every file, output and the app, optuna-dashboard reading the study."""
    if not SHIPPED_TEACHER.is_file():
        pytest.skip("needs the shipped teacher pretrained/mnist/teacher.pt")
    url, password = new_database()
    two_machines = run_two_machines(url, password, tmp_path)
    monkeypatch.setenv("PKD_DB_PASSWORD", password)  # this test reads the study too
    check_the_front(two_machines)
    check_no_password(two_machines, monkeypatch)
    served = dashboard_values(url, tmp_path)
    assert served == {t.number: pytest.approx(t.values) for t in pkd_sweep.Sweep(tmp_path / "a" / "sweep").study()
                      .get_trials(deepcopy=False)}


def check_the_front(two_machines: dict) -> None:
    """Every trial trained once, by one machine or the other; the journal run's front from the study alone."""
    tmp, url = two_machines["tmp"], two_machines["url"]
    a, b = pkd_sweep.Sweep(tmp / "a" / "sweep"), pkd_sweep.Sweep(tmp / "b" / "sweep")
    trials = a.study().get_trials(deepcopy=False)
    assert sorted(t.number for t in trials) == list(range(N_TRIALS))
    assert {t.state.name for t in trials} == {"COMPLETE"}
    mine = {n: [f.name for f in s.path.glob("trial-*")] for n, s in (("a", a), ("b", b))}
    assert sorted(mine["a"] + mine["b"]) == [f"trial-{n:03d}" for n in range(N_TRIALS)], mine  # each trained once
    assert mine["a"] and mine["b"], f"one machine trained every trial: {mine}"
    assert a.database() == b.database() == without_password(url)

    journal = pkd_sweep.Sweep(tmp / "journal")
    expected = front_of(pkd_sweep.sweep_points(journal))
    assert expected and front_of(pkd_sweep.sweep_points(a)) == expected == front_of(pkd_sweep.sweep_points(b))
    watch = pkd("sweep", "--storage", url, "--sweep-dir", str(tmp / "watch" / "sweep"), "--trials", str(N_TRIALS),
                "--workers", "0", env=env())  # a third machine: only the study, no run of its own
    assert watch.returncode == 0, watch.stderr
    assert front_of(pkd_sweep.sweep_points(pkd_sweep.Sweep(tmp / "watch" / "sweep"))) == expected
    assert not list((tmp / "watch" / "sweep").glob("trial-*"))
    table = tmp / "front.csv"
    out = pkd("pareto", "--storage", url, "--csv", str(table), env=env())
    assert out.returncode == 0, out.stderr
    rows = table.read_text().splitlines()[1:]
    assert [(Path(r.split(",")[0]).name, int(r.split(",")[1])) for r in rows] == [(f[0], f[1]) for f in expected]
    two_machines["output"] += watch.stdout + watch.stderr + out.stdout + out.stderr


def check_no_password(two_machines: dict, monkeypatch) -> None:
    """Not in any file under the test's folder (sweeps, runs, logs), not in pkd's output, not on the Sweeps page
    of an app whose machine knows it."""
    from streamlit.testing.v1 import AppTest

    tmp, password = two_machines["tmp"], two_machines["password"]
    assert password not in two_machines["output"]
    assert files_holding(tmp, password) == []
    meta = json.loads((tmp / "b" / "sweep" / "sweep.json").read_text())  # a's command line had the password
    assert "--storage" in meta["command"] and "***" in " ".join(meta["command"])

    monkeypatch.setenv("PKD_RUNS_DIR", str(tmp / "watch"))
    at = AppTest.from_file(str(ROOT / "app" / "main.py"), default_timeout=120).run()
    at.switch_page("app_pages/sweeps.py").run()
    assert not at.exception, at.exception
    at.selectbox(key="sweeps_pick").set_value(str(tmp / "watch" / "sweep")).run()
    assert not at.exception, at.exception
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    points = pkd_sweep.sweep_points(pkd_sweep.Sweep(tmp / "watch" / "sweep"))
    assert sum(len(t["x"]) for t in spec["data"] if t["name"] != "Pareto front") == len(points) > 0
    shown = " ".join(str(e.proto) for e in at.main) + " ".join(e.value for e in at.caption)
    assert password not in shown and "postgresql+psycopg://" in shown  # where the study lives, masked


def test_a_killed_workers_trial_is_failed_by_its_heartbeat_and_retried(new_database, tmp_path, monkeypatch):
    """Worker a is SIGKILLed while its trial trains; worker b (another folder) finishes the sweep: the dead trial
    is failed once its heartbeat is 2 s old and retried with the same settings; nothing is left running."""
    if not SHIPPED_TEACHER.is_file():
        pytest.skip("needs the shipped teacher pretrained/mnist/teacher.pt")
    url, password = new_database()
    space = write_space(tmp_path, SPACE)
    a = tmp_path / "a" / "sweep"
    passfile = tmp_path / "pgpass"  # the password from a .pgpass-style file this time
    passfile.write_text(f"127.0.0.1:*:*:{sqlalchemy.engine.make_url(url).username}:{password}\n")
    url = without_password(url)
    first = start(*sweep_args(a, space, "--storage", url, "--heartbeat", HEARTBEAT, trials=2),
                  env=env() | {"PKD_DB_PASSFILE": str(passfile)})
    try:
        wait_for(lambda: (a / "trial-000" / "status.json").is_file() or first.poll() is not None, "a's trial")
        assert first.poll() is None, consoles(a)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=60)
    monkeypatch.setenv("PKD_DB_PASSWORD", password)  # this test reads the study too
    killed = pkd_sweep.Sweep(a).study().get_trials(deepcopy=False)
    assert [(t.number, t.state.name) for t in killed] == [(0, "RUNNING")]
    out = pkd("sweep", "--storage", url, "--sweep-dir", str(tmp_path / "b" / "sweep"), "--trials", "2",
              "--no-kernel-build", env=env() | {"PKD_DB_PASSWORD": password}, timeout=SLOW)
    assert out.returncode == 0, out.stderr[-3000:]
    trials = pkd_sweep.Sweep(a).study().get_trials(deepcopy=False)
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE", "COMPLETE"]
    retry = [t for t in trials if t.system_attrs.get("failed_trial") == 0]
    assert len(retry) == 1 and retry[0].params == trials[0].params and retry[0].state.name == "COMPLETE"
    assert Run(tmp_path / "b" / "sweep" / f"trial-{retry[0].number:03d}").state() == State.DONE
    assert password not in out.stdout + out.stderr and files_holding(tmp_path, password) == [str(passfile)]


def test_urls_are_shown_masked_stored_without_password_and_completed_from_a_passfile(tmp_path, monkeypatch):
    """No server needed: what pkd prints and stores of a URL, and where it finds a password."""
    from pkd.sweep.storage import PASSFILE_ENV, PASSWORD_ENV, masked, public_url, with_password

    url = "postgresql+psycopg://ann:s3cret@db.example.org:5433/sweeps"
    assert masked(url) == "postgresql+psycopg://ann:***@db.example.org:5433/sweeps"
    assert public_url(url) == "postgresql+psycopg://ann@db.example.org:5433/sweeps"
    bare = "postgresql+psycopg://bob@db.example.org:5433/sweeps"
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    passfile = tmp_path / "pgpass"
    passfile.write_text("# host:port:database:user:password\nother.org:*:*:bob:no\n*:5433:sweeps:bob:pa\\:ss\n")
    monkeypatch.setenv(PASSFILE_ENV, str(passfile))
    assert sqlalchemy.engine.make_url(with_password(bare)).password == "pa:ss"
    monkeypatch.setenv(PASSWORD_ENV, "from-env")
    assert sqlalchemy.engine.make_url(with_password(bare)).password == "from-env"
    with pytest.raises(pkd_sweep.SweepError, match="without a password"):
        parse_space({"storage": url, "params": {"seed": [0, 1]}})
    assert parse_space({"storage": bare, "heartbeat": 5, "params": {"seed": [0, 1]}}).raw["storage"] == bare


def _refused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_bad_storage_gives_one_line_and_writes_nothing(server, new_database, tmp_path):
    url, password = new_database()
    foreign = optuna.create_study(study_name="pkd", storage=url)  # someone else's study of the same name
    foreign.set_user_attr("owner", "not pkd")
    space = write_space(tmp_path, SPACE)
    cases = {
        "mysql://root@127.0.0.1/x": "is not supported",
        "not a url": "not a database URL",
        server.set(port=_refused_port()).render_as_string(hide_password=False): "Connection refused",
        server.set(database="no_such_db").render_as_string(hide_password=False): "does not exist",
        server.set(password="wrong").render_as_string(hide_password=False): "password authentication failed",
        url: "not a pkd sweep",
    }
    for i, (bad, words) in enumerate(cases.items()):  # into a named folder, or a new one in a runs folder
        for where in (["--sweep-dir", str(tmp_path / "sweep")], ["--runs-dir", str(tmp_path / "runs")])[i % 2:][:1]:
            out = pkd("sweep", "--config", TINY, "--space", str(space), "--trials", "1", "--storage", bad, *where,
                      env=env())
            lines = out.stderr.strip().splitlines()
            assert out.returncode != 0 and len(lines) == 1 and words in lines[0], (bad, out.stderr)
            assert password not in out.stderr and ":wrong@" not in out.stderr
            assert not (tmp_path / "sweep").exists() and not (tmp_path / "runs").exists()
    study = optuna.load_study(study_name="pkd", storage=url)
    assert study.user_attrs == {"owner": "not pkd"} and study.trials == []


def dashboard_values(storage: str, tmp_path: Path) -> dict[int, list[float]]:
    """Every complete trial's objective values, as optuna-dashboard's HTTP API serves them."""
    pytest.importorskip("optuna_dashboard")
    port = _refused_port()
    log = tmp_path / f"dashboard-{port}.log"
    with log.open("w") as fh:
        proc = subprocess.Popen([sys.executable, "-c", "from optuna_dashboard._cli import main; main()", storage,
                                 "--host", "127.0.0.1", "--port", str(port)], stdout=fh, stderr=subprocess.STDOUT,
                                cwd=tmp_path)  # what the `optuna-dashboard` command runs
    try:
        def get(path: str):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as response:
                return json.loads(response.read())

        deadline = time.time() + 90
        while True:
            try:
                studies = get("/api/studies")["study_summaries"]
                break
            except OSError:
                assert proc.poll() is None and time.time() < deadline, log.read_text()
                time.sleep(0.3)
        (study,) = [s for s in studies if s["study_name"] == "pkd"]
        trials = get(f"/api/studies/{study['study_id']}?after=0")["trials"]
        return {t["number"]: t["values"] for t in trials if t["state"] == "Complete"}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_optuna_dashboard_reads_both_objectives_of_every_trial_of_the_shipped_journal(tmp_path):
    """optuna-dashboard as a second reader of the shipped sweep's journal (a database study: the test above)."""
    shipped = pkd_sweep.Sweep(ROOT / "pretrained" / "sweep-quick")
    if not shipped.exists():
        pytest.skip(f"no shipped sweep in {shipped.path}")
    complete = {t.number: t.values for t in shipped.study().get_trials(deepcopy=False) if t.state.name == "COMPLETE"}
    assert complete and all(len(v) == 2 for v in complete.values())
    assert dashboard_values(str(shipped.path / "journal.log"), tmp_path) == \
        {n: pytest.approx(values) for n, values in complete.items()}
