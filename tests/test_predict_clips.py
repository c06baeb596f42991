"""Clips through a video run's models (pkd/clips.py) and `pkd predict RUN clip.gif|clip.npy`: every prefix's answer
after every frame, streamed frame by frame and equal to the full forward pass of those frames; the teacher blind to
time order; clip files read or refused in one line (real subprocesses of `python -m pkd predict`)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from pkd import clips
from pkd.artifacts import load_ensemble, load_teacher
from pkd.data import get_dataset_spec, load_split
from pkd.data.moving_mnist import MOTIONS, reverse_clips
from pkd.models.ensemble import Ensemble, PrefixSums
from pkd.runs import Run
from tests.one_thread import one_thread  # noqa: F401 - autouse: tiny models, one thread
from tests.pkd_process import child_env, pkd
from tests.video_run import video_run_path

ONE_THREAD = {"OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="session")
def video_run(tmp_path_factory) -> Run:
    return Run(video_run_path(tmp_path_factory))


@pytest.fixture(scope="module")
def models(video_run):
    spec = get_dataset_spec(video_run.setting("data", "dataset"))
    return spec, load_ensemble(video_run), load_teacher(video_run), load_split(spec.name, "test")


def full_forward_probs(ensemble: Ensemble, x: torch.Tensor, frames: int) -> torch.Tensor:
    """(K, C): every prefix's probabilities from the ordinary forward pass of the clip cut after `frames` frames."""
    sums, out = PrefixSums(ensemble.mode), []
    with torch.no_grad():
        for student, scale in zip(ensemble.students, ensemble.prev_scales):
            tokens = student.tokenize(x[None])[:, :frames * student.frame_len]  # (1, t*n, F)
            sums.add(student.forward_tokens(tokens), scale)
            out.append(sums.log_probs().exp()[0])
    return torch.stack(out)


# ------------------------------------------------------------------------------------------------ library

@pytest.mark.parametrize("mode", ["residual", "independent"])
def test_streamed_answers_equal_the_full_forward_of_the_first_t_frames(models, mode):
    spec, ensemble, _, test = models
    if mode != ensemble.mode:  # the same students, combined the other way
        ensemble = Ensemble(list(ensemble.students), mode=mode, student_flops=ensemble.student_flops)
    for index in (0, 7, 19):
        x = spec.normalize(test.inputs[index])  # (T, 1, S, S)
        streamed = clips.stream_prefix_probs(ensemble, x)  # (T, K, C)
        assert streamed.shape == (spec.sample_shape[0], ensemble.k, spec.num_classes)
        for t in range(1, spec.sample_shape[0] + 1):
            diff = (streamed[t - 1] - full_forward_probs(ensemble, x, t)).abs().max().item()
            print(f"clip {index} frame {t}: max diff {diff:.2e}")
            assert diff <= 1e-5
        with torch.no_grad():
            whole = torch.stack([lp.exp()[0] for lp in ensemble.all_prefixes(x[None])])  # (K, C)
        assert torch.allclose(streamed[-1], whole, atol=1e-5)


def test_the_answer_after_frame_t_reads_no_later_frame(models):
    spec, ensemble, _, test = models
    x = spec.normalize(test.inputs[3])
    changed = x.clone()
    changed[2:] = torch.randn_like(changed[2:])  # frames 3.. replaced
    before, after = clips.stream_prefix_probs(ensemble, x), clips.stream_prefix_probs(ensemble, changed)
    assert torch.equal(before[:2], after[:2]) and not torch.allclose(before[2:], after[2:])


def test_frame_flops_grow_with_frames_and_end_at_the_ensembles_cost(models):
    _, ensemble, _, _ = models
    flops = clips.frame_flops(ensemble)  # T x K
    assert flops[-1] == ensemble.cumulative_flops()
    assert all(a[k] < b[k] for a, b in zip(flops, flops[1:]) for k in range(ensemble.k))
    assert all(row[k] < row[k + 1] for row in flops for k in range(ensemble.k - 1))


def test_report_teacher_is_blind_to_order_and_students_are_not(models):
    spec, ensemble, teacher, test = models
    clip = test.inputs[5]
    forwards = clips.clip_report(ensemble, spec, clip, teacher)
    backwards = clips.clip_report(ensemble, spec, reverse_clips(clip), teacher, flops=forwards.cumulative_flops)
    assert forwards.teacher_order_blind() and torch.equal(forwards.teacher_probs, backwards.teacher_probs)
    assert torch.equal(forwards.teacher_probs_reversed, backwards.teacher_probs)
    assert not torch.allclose(forwards.prefix_probs[-1], backwards.prefix_probs[-1], atol=1e-6)
    assert torch.allclose(forwards.prefix_probs.sum(-1), torch.ones(forwards.frames, ensemble.k), atol=1e-5)
    assert clips.clip_report(ensemble, spec, clip).teacher_probs is None
    with pytest.raises(ValueError, match="one clip of shape"):
        clips.clip_report(ensemble, spec, clip[:2], teacher)


def test_clip_config_and_a_drawn_digit_made_into_a_clip():
    small, big = get_dataset_spec("moving_mnist_small"), get_dataset_spec("moving_mnist")
    assert clips.clip_config(small).zoom == (0.6, 1.35) and clips.clip_config(small).canvas == 40
    assert clips.clip_config(big).zoom == (0.6, 1.5) and clips.clip_config(big).frames == 8
    with pytest.raises(ValueError, match="not a Moving MNIST clip dataset"):
        clips.clip_config(get_dataset_spec("mnist"))
    digit = torch.zeros(1, 28, 28)
    digit[0, 4:24, 12:16] = 1.0  # a "1"
    left = clips.clip_from_drawing(digit, "moving left", small)
    assert left.shape == (4, 1, 40, 40) and 0.0 <= float(left.min()) and float(left.max()) <= 1.0
    columns = [float((frame[0].sum(0) * torch.arange(40)).sum() / frame.sum()) for frame in left]  # centre of mass x
    assert columns == sorted(columns, reverse=True) and columns[0] > columns[-1]  # it moves left
    assert torch.equal(clips.clip_from_drawing(digit, "moving right", small), reverse_clips(left))
    with pytest.raises(ValueError, match="unknown motion"):
        clips.clip_from_drawing(digit, "spinning", small)
    assert len(MOTIONS) == 6


def test_gif_and_npy_clips_read_back(models, tmp_path):
    spec, _, _, test = models
    clip = test.inputs[1]  # (T, 1, S, S)
    gif = tmp_path / "clip.gif"
    gif.write_bytes(clips.clip_gif(clip))
    assert torch.allclose(clips.read_clip(gif, spec), clip, atol=1 / 255 + 1e-6)
    big = tmp_path / "big.gif"
    big.write_bytes(clips.clip_gif(clip, scale=3))  # other sizes are resized to the run's canvas
    assert clips.read_clip(big, spec).shape == clip.shape
    for name, array in (("thw.npy", clip[:, 0].numpy()), ("t1hw.npy", clip.numpy()),
                        ("uint8.npy", (clip[:, 0].numpy() * 255).round().astype(np.uint8))):
        np.save(tmp_path / name, array)
        assert torch.allclose(clips.read_clip(tmp_path / name, spec), clip, atol=1 / 255 + 1e-6), name
    np.save(tmp_path / "moved.npy", clip.numpy())
    assert clips.read_clip(tmp_path / "sub" / ".." / "moved.npy", spec).shape == clip.shape  # resolved first


def hostile_files(tmp_path, spec) -> dict[str, tuple]:
    """name -> (path, what the one-line error says)."""
    t, _, s, _ = spec.sample_shape
    good = np.zeros((t, s, s), dtype=np.float32)
    files = {}

    def add(name, what, array=None, raw=None):
        path = tmp_path / name
        if array is not None:
            np.save(path, array, allow_pickle=True)
        elif raw is not None:
            path.write_bytes(raw)
        files[name] = (path, what)

    add("pickled.npy", "pickled objects", array=np.array([{"a": 1}, None], dtype=object))
    add("a-pickle.npy", "not an animated GIF or a .npy", raw=pickle.dumps({"x": 1}))
    add("wrong-t.npy", f"has {t + 1} frames but this run's clips have {t}", array=np.zeros((t + 1, s, s)))
    add("shape.npy", "array of shape", array=np.zeros((t, s, s + 1)))
    add("five-d.npy", "array of shape", array=np.zeros((1, t, 1, s, s)))
    add("nan.npy", "NaN or infinity", array=np.where(np.eye(s)[None] > 0, np.nan, good))
    add("range.npy", "values in [0, 1]", array=good + 2.0)
    add("text.npy", "not a number type", array=np.full((t, s, s), "a"))
    add("truncated.npy", "not a readable .npy", raw=clips.NPY_MAGIC + b"\x01\x00garbage")
    add("picture.png", "not an animated GIF or a .npy", raw=b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    moving = torch.zeros(t - 1, 1, s, s)
    for i in range(t - 1):
        moving[i, 0, i, i] = 1.0  # distinct frames (Pillow merges identical consecutive ones)
    add("wrong-t.gif", f"has {t - 1} frames", raw=clips.clip_gif(moving))
    add("broken.gif", "GIF", raw=b"GIF89a" + b"\x00" * 10)
    (tmp_path / "a-directory").mkdir()
    files["a-directory"] = (tmp_path / "a-directory", "is not a file")
    files["missing.gif"] = (tmp_path / "missing.gif", "clip file not found")
    return files


def test_hostile_clip_files_are_refused_in_one_line(models, tmp_path):
    spec = models[0]
    for name, (path, what) in hostile_files(tmp_path, spec).items():
        with pytest.raises((ValueError, FileNotFoundError)) as info:
            clips.read_clip(path, spec)
        message = str(info.value)
        assert what in message and "\n" not in message, (name, message)
    with pytest.raises(ValueError, match="takes images"):
        clips.read_clip(tmp_path / "pickled.npy", get_dataset_spec("mnist"))


# ------------------------------------------------------------------------------------------------ CLI

def test_predict_a_gif_and_an_npy_clip(video_run, models, tmp_path):
    spec, ensemble, _, test = models
    clip = test.inputs[2]
    gif = tmp_path / "clip.gif"
    gif.write_bytes(clips.clip_gif(clip))
    out = pkd("predict", str(video_run.path), str(gif), "--per-frame", env=child_env(**ONE_THREAD))
    assert out.returncode == 0, out.stderr[-2000:]
    x = spec.normalize(clips.read_clip(gif, spec))[None]  # (1, T, 1, S, S)
    final = ensemble.predict(x)  # what the CLI computes (the streamed answers equal it, tested above)
    names, flops = spec.class_names, ensemble.cumulative_flops()
    assert out.stdout.startswith(f"prediction: {names[int(final.classes[0])]} (p={float(final.probs.max()):.3f}) "
                                 f"using {ensemble.k} of {ensemble.k} students, {flops[-1]:,} FLOPs")
    rows = [line.split() for line in out.stdout.splitlines() if line[:5].strip().isdigit()]
    assert len(rows) == spec.sample_shape[0] * ensemble.k  # every frame, every prefix
    per_frame = clips.frame_flops(ensemble)
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
