"""The server's warm-up (app/warmup.py): after the first page of the first session has run, one background thread
loads that run's students, teacher and test split into the caches the pages read, once per server process."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from app import common, warmup
from pkd.runs import Run
from tests.app.trained import ROOT, copy_run


def test_the_warm_up_fills_the_cache_the_pages_read(shipped_root, tmp_path):
    path = str(copy_run(shipped_root / "mnist", tmp_path, "warm"))
    warmup.warm(path)
    students = warmup.loaded(path)
    assert students is not None
    assert common.cached_ensemble(path, Run(Path(path)).weights_stamp()) is students  # a hit, not a second load


def test_a_run_whose_students_cannot_be_loaded_is_left_to_the_page(shipped_root, tmp_path):
    path = copy_run(shipped_root / "mnist", tmp_path, "damaged")
    (path / "students" / "student_01.pt").write_bytes(b"not a weights file")
    warmup.warm(str(path))  # no exception: the Playground names the damaged file when it loads the run
    assert warmup.loaded(str(path)) is None


CHILD = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, sys.argv[1])
    from streamlit.testing.v1 import AppTest
    from app import common, warmup
    from pkd.runs import Run
    from pathlib import Path
    main, first, second = sys.argv[2], sys.argv[3], sys.argv[4]
    for run in (first, second):  # two sessions, each opening Results on its own run (its URL id is its name)
        at = AppTest.from_file(main, default_timeout=120)
        at.query_params["run"] = Path(run).name
        at.run()
        assert not at.exception, at.exception
    done = warmup.wait(300)
    after = {"done": done, "first": warmup.loaded(first) is not None, "second": warmup.loaded(second) is not None}
    at = AppTest.from_file(main, default_timeout=120)
    at.query_params["run"] = Path(first).name
    at.switch_page("app_pages/playground.py").run()
    assert not at.exception, at.exception
    after["same"] = common.cached_ensemble(first, Run(Path(first)).weights_stamp()) is warmup.loaded(first)
    print(json.dumps(after))
""")


def test_only_the_first_sessions_run_is_warmed_and_the_playground_uses_it(shipped_root, tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    first, second = (str(copy_run(shipped_root / "mnist", runs, name)) for name in ("first", "second"))
    env = {"PKD_RUNS_DIR": str(runs), "PKD_PRETRAINED_DIR": str(shipped_root), "PATH": "/usr/bin:/bin",
           "HOME": str(Path.home())}
    done = subprocess.run([sys.executable, "-c", CHILD, str(ROOT), str(ROOT / "app" / "main.py"), first, second],
                          capture_output=True, text=True, timeout=600, env=env, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    after = json.loads(done.stdout.strip().splitlines()[-1])
    assert after == {"done": True, "first": True, "second": False, "same": True}


FIRST_PAGE = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, sys.argv[1])
    from streamlit.testing.v1 import AppTest
    from app import common, warmup
    start, started = warmup.start, []
    warmup.start = started.append  # what the pages themselves import, not what the warm-up loads after them
    at = AppTest.from_file(sys.argv[2], default_timeout=300)
    at.run()
    assert not at.exception, at.exception
    seen = {"title": at.title[0].value, "models": "pkd.models" in sys.modules, "compare": "pkd.compare" in sys.modules,
            "sweep": "pkd.sweep" in sys.modules, "torch": "torch" in sys.modules}
    for name in ("runs", "sweeps", "compare"):  # more tabs: these pages read records too
        tab = AppTest.from_file(sys.argv[2], default_timeout=300)
        tab.switch_page(f"app_pages/{name}.py").run()
        assert not tab.exception, tab.exception
        seen[f"{name}: torch"] = "torch" in sys.modules
    start(started[0])  # now the real warm-up: it loads the models, importing torch, after the page has drawn
    assert warmup.wait(300)
    import torch
    seen["warm: threads"] = torch.get_num_threads()
    at.switch_page("app_pages/playground.py").run()
    assert not at.exception, at.exception
    seen["playground: threads"] = torch.get_num_threads()
    print(json.dumps(seen))
""")


def test_the_first_page_imports_neither_model_code_nor_torch(shipped_root, tmp_path):
    """Results, a fresh server's first page, shows a run from its files: it reads the recorded tests (pkd.stats),
    finds sweep folders by their sweep.json (app.common.sweep_dirs) and asks pkd.web.supported whether a web page can
    be made, so importing the models (pkd.models, the SSM kernels' registration: about 1 s on a busy machine) and
    torch itself (2-3 s of CPU) is left to the warm-up and the pages that run models. The Runs, Sweeps and Compare
    pages (its per-sample diff off) read records only too. Once the warm-up has imported torch, the app's thread
    count (1) holds, not torch's default (2 here: OMP_NUM_THREADS=2), for the warm-up's models and the Playground's."""
    env = {"PKD_RUNS_DIR": str(tmp_path), "PKD_PRETRAINED_DIR": str(shipped_root), "PATH": "/usr/bin:/bin",
           "HOME": str(Path.home()), "OMP_NUM_THREADS": "2"}
    done = subprocess.run([sys.executable, "-c", FIRST_PAGE, str(ROOT), str(ROOT / "app" / "main.py")],
                          capture_output=True, text=True, timeout=600, env=env, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {
        "title": "Results", "models": False, "compare": False, "sweep": False, "torch": False, "runs: torch": False,
        "sweeps: torch": False, "compare: torch": False, "warm: threads": 1, "playground: threads": 1}


def test_an_image_runs_warm_up_also_loads_the_clips_pages_first_pick(shipped_root, tmp_path, monkeypatch):
    """On an image run the Clips page opens the newest video run (common.video_runs' first): the warm-up loads its
    students (and teacher and test clips) too, so its first visit finds them in the cache."""
    runs = tmp_path / "runs"
    image = str(copy_run(shipped_root / "mnist", runs, "digits"))
    video = str(copy_run(shipped_root / "moving-mnist", runs, "clips"))
    monkeypatch.setenv("PKD_RUNS_DIR", str(runs))
    monkeypatch.setenv("PKD_PRETRAINED_DIR", str(tmp_path / "no-pretrained"))
    assert list(common.video_runs()) == [video]
    warmup.warm(image)
    assert warmup.loaded(image) is not None and warmup.loaded(video) is not None
    assert common.cached_ensemble(video, Run(Path(video)).weights_stamp()) is warmup.loaded(video)
