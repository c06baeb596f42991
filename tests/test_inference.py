"""One input through a run (pkd/inference.py): a digit through an ensemble (the Playground's DigitReport), and a
clip through a video run's models frame by frame (the Clips page's ClipReport): every prefix's answer after every
frame, streamed and equal to the full forward pass of those frames; the teacher blind to time order."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from pkd import inference
from pkd.artifacts import load_ensemble, load_teacher
from pkd.data import get_dataset_spec, load_split
from pkd.data.moving_mnist import reverse_clips
from pkd.models.ensemble import Ensemble, PrefixSums
from tests.one_thread import one_thread  # noqa: F401 - autouse: tiny models, one thread


class Pixels(nn.Module):
    """A toy student: a linear map of the flattened image (deterministic weights)."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.fc = nn.Linear(28 * 28, 10)
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            self.fc.weight.copy_(torch.randn(10, 28 * 28, generator=gen) * 0.05)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))  # (B, 10)


def test_predict_digit_matches_the_ensemble():
    spec = get_dataset_spec("mnist")
    ensemble = Ensemble([Pixels(0), Pixels(1), Pixels(2)], mode="residual", student_flops=[10, 20, 30]).eval()
    image = torch.zeros(1, 28, 28)
    image[0, 5:23, 13:15] = 1.0
    report = inference.predict_digit(ensemble, spec, image, teacher=Pixels(9), teacher_flops=600)
    with torch.no_grad():
        x = spec.normalize(image[None])
        expected = [lp.exp()[0] for lp in ensemble.all_prefixes(x)]
        solo = [torch.softmax(s(x), -1)[0] for s in ensemble.students]
    assert len(report.prefix_probs) == 3
    for got, want in zip(report.prefix_probs, expected):
        assert torch.tensor(got) == pytest.approx(want, abs=1e-6)
    for got, want in zip(report.student_probs, solo):
        assert torch.tensor(got) == pytest.approx(want, abs=1e-6)
    assert report.cumulative_flops == [10, 30, 60]
    assert report.share_of_teacher == pytest.approx([10 / 600, 30 / 600, 60 / 600])
    assert sum(report.teacher_probs) == pytest.approx(1.0)
    stop = inference.anytime_digit(ensemble, spec, image, flop_budget=35)
    assert stop["k_used"] == 2 and stop["flops"] == 30
    stop = inference.anytime_digit(ensemble, spec, image, confidence=1e-6)
    assert stop["k_used"] == 1


# ------------------------------------------------------------------------------------------------ clips

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


@pytest.mark.parametrize("mode", ["residual", "independent"])
def test_streamed_answers_equal_the_full_forward_of_the_first_t_frames(models, mode):
    spec, ensemble, _, test = models
    if mode != ensemble.mode:  # the same students, combined the other way
        ensemble = Ensemble(list(ensemble.students), mode=mode, student_flops=ensemble.student_flops)
    for index in (0, 7, 19):
        x = spec.normalize(test.inputs[index])  # (T, 1, S, S)
        streamed = inference.stream_prefix_probs(ensemble, x)  # (T, K, C)
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
    before, after = inference.stream_prefix_probs(ensemble, x), inference.stream_prefix_probs(ensemble, changed)
    assert torch.equal(before[:2], after[:2]) and not torch.allclose(before[2:], after[2:])


def test_frame_flops_grow_with_frames_and_end_at_the_ensembles_cost(models):
    _, ensemble, _, _ = models
    flops = inference.frame_flops(ensemble)  # T x K
    assert flops[-1] == ensemble.cumulative_flops()
    assert all(a[k] < b[k] for a, b in zip(flops, flops[1:]) for k in range(ensemble.k))
    assert all(row[k] < row[k + 1] for row in flops for k in range(ensemble.k - 1))


def test_report_teacher_is_blind_to_order_and_students_are_not(models):
    spec, ensemble, teacher, test = models
    clip = test.inputs[5]
    forwards = inference.clip_report(ensemble, spec, clip, teacher)
    backwards = inference.clip_report(ensemble, spec, reverse_clips(clip), teacher, flops=forwards.cumulative_flops)
    assert forwards.teacher_order_blind() and torch.equal(forwards.teacher_probs, backwards.teacher_probs)
    assert torch.equal(forwards.teacher_probs_reversed, backwards.teacher_probs)
    assert not torch.allclose(forwards.prefix_probs[-1], backwards.prefix_probs[-1], atol=1e-6)
    assert torch.allclose(forwards.prefix_probs.sum(-1), torch.ones(forwards.frames, ensemble.k), atol=1e-5)
    assert inference.clip_report(ensemble, spec, clip).teacher_probs is None
    with pytest.raises(ValueError, match="one clip of shape"):
        inference.clip_report(ensemble, spec, clip[:2], teacher)


# ------------------------------------------------------------------------------------------------ teaching views

def test_digit_soft_targets_compare_the_teacher_with_the_sum_student_k_is_trained_on():
    spec = get_dataset_spec("mnist")
    ensemble = Ensemble([Pixels(0), Pixels(1)], mode="residual", student_flops=[1, 1], prev_scales=[1.0, 0.5])
    teacher, image = Pixels(9), torch.rand(1, 28, 28)
    out = inference.digit_soft_targets(ensemble, spec, image, teacher, k=2, label=3, alpha=0.2, temperature=4.0)
    x = spec.normalize(image[None])
    with torch.no_grad():
        e2 = 0.5 * ensemble.students[0](x) + ensemble.students[1](x)  # E_2 = s_2 E_1 + z_2
        want_t, want_s = torch.softmax(teacher(x) / 4.0, -1)[0], torch.softmax(e2 / 4.0, -1)[0]
    assert torch.tensor(out.teacher_soft) == pytest.approx(want_t, abs=1e-6)
    assert torch.tensor(out.student_soft) == pytest.approx(want_s, abs=1e-6)
    independent = Ensemble([Pixels(0), Pixels(1)], mode="independent", student_flops=[1, 1])
    alone = inference.digit_soft_targets(independent, spec, image, teacher, k=2, label=3, alpha=0.2, temperature=1.0)
    with torch.no_grad():
        assert torch.tensor(alone.student_plain) == pytest.approx(torch.softmax(independent.students[1](x), -1)[0], abs=1e-6)


def test_read_tokens_answers_after_each_row_as_the_forward_pass_of_those_rows():
    from pkd.models.student import MambaClassifier

    torch.manual_seed(0)
    student = MambaClassifier(d_model=8, d_state=4, n_layers=2).eval()
    spec, image = get_dataset_spec("mnist"), torch.rand(1, 28, 28)
    reading = inference.read_tokens(student, spec, image)
    assert reading.probs.shape == (28, 10) and reading.states.shape == (28, 16, 4) and reading.tokens == "rows"
    tokens = student.tokenize(spec.normalize(image[None]))
    with torch.no_grad():
        for t in (1, 2, 14, 28):
            want = torch.softmax(student.forward_tokens(tokens[:, :t]), -1)[0]
            assert reading.probs[t - 1] == pytest.approx(want, abs=1e-5)
    assert not torch.equal(reading.states[0], reading.states[-1])  # the memory changes as it reads
    with pytest.raises(ValueError, match="token by token"):
        inference.read_tokens(Pixels(0), spec, image)
