"""`pkd predict RUN clip.gif|clip.npy` on a video run (real subprocesses of `python -m pkd predict`): the answer
for the whole clip and, with --per-frame, every prefix's answer after every frame; hostile clip files refused in one
line. The library underneath: tests/test_inference.py (streaming) and tests/preprocess/test_preprocess_clips.py."""

from __future__ import annotations

import numpy as np
import pytest

from pkd.artifacts import load_ensemble
from pkd.data import get_dataset_spec, load_split
from pkd.inference import frame_flops
from pkd.preprocess import clip_gif, read_clip
from tests.hostile_clips import hostile_files
from tests.one_thread import one_thread  # noqa: F401 - autouse: tiny models, one thread
from tests.pkd_process import child_env, pkd

ONE_THREAD = {"OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def models(video_run):
    spec = get_dataset_spec(video_run.setting("data", "dataset"))
    return spec, load_ensemble(video_run), load_split(spec.name, "test")


def test_predict_a_gif_and_an_npy_clip(video_run, models, tmp_path):
    spec, ensemble, test = models
    clip = test.inputs[2]
    gif = tmp_path / "clip.gif"
    gif.write_bytes(clip_gif(clip))
    out = pkd("predict", str(video_run.path), str(gif), "--per-frame", env=child_env(**ONE_THREAD))
    assert out.returncode == 0, out.stderr[-2000:]
    x = spec.normalize(read_clip(gif, spec))[None]  # (1, T, 1, S, S)
    final = ensemble.predict(x)  # what the CLI computes (the streamed answers equal it: tests/test_inference.py)
    names, flops = spec.class_names, ensemble.cumulative_flops()
    assert out.stdout.startswith(f"prediction: {names[int(final.classes[0])]} (p={float(final.probs.max()):.3f}) "
                                 f"using {ensemble.k} of {ensemble.k} students, {flops[-1]:,} FLOPs")
    rows = [line.split() for line in out.stdout.splitlines() if line[:5].strip().isdigit()]
    assert len(rows) == spec.sample_shape[0] * ensemble.k  # every frame, every prefix
    per_frame = frame_flops(ensemble)
    assert rows[0][:2] == ["1", "1"] and rows[0][-1] == f"{per_frame[0][0]:,}"
    assert rows[-1][-1] == f"{flops[-1]:,}" and rows[-1][1] == f"1-{ensemble.k}"

    npy = tmp_path / "clip.npy"
    np.save(npy, clip[:, 0].numpy())
    out = pkd("predict", str(video_run.path), str(npy), "--k", "1", env=child_env(**ONE_THREAD))
    assert out.returncode == 0, out.stderr[-2000:]
    first = ensemble.predict(x, k=1)
    assert f"using 1 of {ensemble.k} students, {flops[0]:,} FLOPs" in out.stdout
    assert names[int(first.classes[0])] in out.stdout.splitlines()[0] and "FLOPs so far" not in out.stdout


@pytest.mark.parametrize("name", ["pickled.npy", "wrong-t.npy", "a-directory", "missing.gif"])
def test_predict_refuses_hostile_clips_in_one_line(video_run, models, tmp_path, name):
    path, what = hostile_files(tmp_path, models[0])[name]
    out = pkd("predict", str(video_run.path), str(path), env=child_env(**ONE_THREAD))
    assert out.returncode != 0 and "Traceback" not in out.stderr + out.stdout
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and what in lines[0], out.stderr
