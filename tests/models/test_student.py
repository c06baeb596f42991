"""Tests for pkd.models.student: the registered Mamba classifier's argument checks, shapes and training signal."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pkd.models import build_student
from tests.models.seeding import randn, seeded


@pytest.mark.parametrize("kwargs, field", [
    ({"d_model": 0}, "d_model"),
    ({"d_model": "32"}, "d_model"),
    ({"d_model": 8.0}, "d_model"),
    ({"n_layers": -1}, "n_layers"),
    ({"d_state": 0}, "d_state"),
    ({"expand": 0}, "expand"),
    ({"d_conv": 0}, "d_conv"),
    ({"num_classes": 1}, "num_classes"),
    ({"tokens": "pixels"}, "tokens"),
    ({"pool": "max"}, "pool"),
    ({"tokens": "patch", "patch": 5}, "patch"),
    ({"tokens": "patch", "patch": 0}, "patch"),
    ({"rows_per_token": 3}, r"rows_per_token must divide height 28 of the image, got 3; try one of \[1, 2, 4, 7, 14, 28\]"),
    ({"rows_per_token": 0}, "rows_per_token"),
    ({"image_shape": [1, 28, 30], "tokens": "cols", "rows_per_token": 4},
     r"rows_per_token must divide width 30 of the image, got 4; try one of \[1, 2, 3, 5, 6, 10, 15, 30\]"),
    ({"tokens": "columns"}, "tokens"),
    ({"image_shape": [1, 28]}, "image_shape"),
    ({"image_shape": [1, 0, 28]}, r"image_shape\[1\]"),
    ({"stem": 8}, r"stem must be a list of conv channel counts such as \[8, 16\]"),
    ({"stem": [8, 0]}, r"stem\[1\]"),
    ({"stem": [4], "rows_per_token": 4},
     r"rows_per_token must divide height 14 of the stem's output, got 4; try one of \[1, 2, 7, 14\]"),
])
def test_impossible_student_sizes_raise_one_line(kwargs, field):
    with pytest.raises(ValueError, match=field) as info:
        build_student("mamba", **kwargs)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("kwargs, seq_len", [
    ({}, 28),
    ({"tokens": "patch", "patch": 4}, 49),
    ({"tokens": "patch", "patch": 7, "pool": "last", "n_layers": 2}, 16),
    ({"image_shape": [3, 32, 32], "tokens": "patch", "patch": 4, "d_model": 8}, 64),
    ({"image_shape": (3, 8, 6), "tokens": "rows", "d_model": 8, "num_classes": 3}, 8),
    ({"rows_per_token": 2}, 14),
    ({"image_shape": (3, 8, 6), "rows_per_token": 4, "d_model": 8}, 2),
    ({"image_shape": (3, 8, 6), "tokens": "cols", "rows_per_token": 3, "d_model": 8}, 2),
    ({"stem": [4, 8]}, 7),  # 28 -> 14 -> 7 rows of the feature map
    ({"stem": [4], "tokens": "patch", "patch": 7}, 4),
    ({"image_shape": (1, 9, 9), "stem": [2]}, 5),  # ceil(9 / 2)
])
def test_classifier_shapes(kwargs, seq_len):
    m = seeded(0, build_student, "mamba", d_state=4, **{"d_model": 8, **kwargs})
    c, h, w = m.image_shape
    assert m.seq_len == seq_len
    logits = m(randn(2, c, h, w))
    assert logits.shape == (2, kwargs.get("num_classes", 10))


def test_classifier_rejects_wrong_input_shape():
    with pytest.raises(ValueError, match=r"expected input \(B, 1, 28, 28\), got \(2, 1, 32, 32\)"):
        build_student("mamba", d_model=8)(torch.zeros(2, 1, 32, 32))


def test_classifier_trains_every_parameter():
    m = seeded(0, build_student, "mamba", d_model=8, d_state=4, n_layers=2, tokens="patch", patch=7)
    loss = F.cross_entropy(m(randn(4, 1, 28, 28)), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    assert any(k.startswith("layers.1.mixer.A_log") for k in m.state_dict())
    assert "norm_f.weight" in m.state_dict()


def test_last_pool_depends_only_on_last_token_causally():
    m = seeded(0, build_student, "mamba", d_model=8, d_state=4, pool="last").eval()
    x = randn(1, 1, 28, 28)
    x2 = x.clone()
    x2[..., 0, :] += 1.0  # change the first row: the last token still sees it through the scan
    with torch.no_grad():
        assert not torch.allclose(m(x), m(x2))


# ------------------------------------------------------------------------------------- clips and streaming

def test_clip_student_reads_frames_in_order():
    m = seeded(0, build_student, "mamba", image_shape=[3, 1, 8, 8], tokens="patch", patch=4, d_model=8, d_state=4)
    assert m.frame_len == 4 and m.seq_len == 12
    clip = randn(2, 3, 1, 8, 8)
    tokens = m.tokenize(clip)  # (B, T * 4, 16)
    assert tokens.shape == (2, 12, 16)
    for f in range(3):
        assert torch.equal(tokens[:, 4 * f:4 * f + 4], m.tokenizer(clip[:, f]))
    with torch.no_grad():
        assert torch.equal(m(clip), m.forward_tokens(tokens))
        assert not torch.allclose(m(clip), m(clip.flip(1)))  # order matters to a student
    with pytest.raises(ValueError, match=r"expected input \(B, 3, 1, 8, 8\), got \(2, 1, 8, 8\)"):
        m(randn(2, 1, 8, 8))
    with pytest.raises(ValueError, match=r"image_shape must be \[C, H, W\] \(an image\) or \[T, C, H, W\]"):
        build_student("mamba", image_shape=[1, 1, 1, 8, 8])


@pytest.mark.parametrize("kwargs", [
    {"pool": "mean"},
    {"pool": "last", "n_layers": 2},
    {"pool": "mean", "n_layers": 3, "d_state": 8, "d_conv": 2, "expand": 1},
    {"pool": "mean", "image_shape": [4, 1, 8, 8], "tokens": "patch", "patch": 4, "d_conv": 3},
    {"pool": "mean", "image_shape": [3, 1, 8, 8], "rows_per_token": 2, "frame_diff": True},
    {"pool": "mean", "image_shape": [3, 1, 6, 8], "tokens": "cols", "rows_per_token": 2, "frame_diff": True},
    {"pool": "mean", "image_shape": [3, 1, 16, 8], "stem": [3, 4], "frame_diff": True},
])
@pytest.mark.parametrize("chunks", ["frames", "tokens", "mixed"])
def test_stream_equals_the_full_forward_of_every_prefix(kwargs, chunks):
    """Fed in chunks (a frame's tokens, one token, or uneven pieces), the logits after every token equal the full
    forward of the prefix read so far (a running mean for pool 'mean')."""
    kwargs = {"image_shape": [1, 12, 8], "d_model": 8, "d_state": 4, **kwargs}
    m = seeded(0, build_student, "mamba", **kwargs).eval()
    x = randn(3, *m.image_shape)
    tokens = m.tokenize(x)  # (B, L, F)
    sizes = {"frames": [m.frame_len] * (m.seq_len // m.frame_len), "tokens": [1] * m.seq_len,
             "mixed": [5, 1, 2, 1, m.seq_len - 9]}[chunks]
    state = m.start_stream(3)
    with torch.no_grad():
        parts, start = [], 0
        for n in sizes:
            parts.append(m.stream(tokens[:, start:start + n], state))
            start += n
        streamed = torch.cat(parts, dim=1)  # (B, L, C)
        prefixes = torch.stack([m.forward_tokens(tokens[:, :t + 1]) for t in range(m.seq_len)], dim=1)
    diff = (streamed - prefixes).abs().max().item()
    print(f"max |stream - forward(prefix)| = {diff:.2e}")
    assert state.seen == m.seq_len and diff < 1e-5
    with torch.no_grad():
        assert torch.allclose(streamed[:, -1], m(x), atol=1e-5)


def test_stream_checks_its_input():
    m = build_student("mamba", d_model=8, d_state=4)
    state = m.start_stream(2)
    with pytest.raises(ValueError, match=r"stream takes tokens \(B=2, n >= 1, F\), got \(3, 1, 28\)"):
        m.stream(torch.zeros(3, 1, 28), state)
    assert sorted(m.state_dict()) == sorted(build_student("mamba", d_model=8, d_state=4).state_dict())


def test_clip_student_flops_equal_flop_counter_mode(monkeypatch):
    from torch.utils.flop_counter import FlopCounterMode

    from pkd.flops import count_flops
    from pkd.models import mamba as mamba_module

    m = build_student("mamba", image_shape=[8, 1, 48, 48], tokens="patch", patch=8, d_model=16, d_state=4).eval()
    report = count_flops(m, (8, 1, 48, 48))
    one_frame = count_flops(build_student("mamba", image_shape=[1, 48, 48], tokens="patch", patch=8, d_model=16,
                                          d_state=4), (1, 48, 48))
    assert 7 * one_frame.flops < report.flops < 9 * one_frame.flops  # about linear in the frames
    monkeypatch.setattr(mamba_module, "selective_scan", lambda u, *a, z=None, **k: u * z)  # no contraction inside
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        m(torch.zeros(1, 8, 1, 48, 48))
    assert report.contraction_flops == counter.get_total_flops()


def test_frame_diff_tokens_carry_each_frame_beside_its_change_and_stream_frame_by_frame():
    """frame_diff: frame t's tokens are [x_t, x_t - x_(t-1)] (zeros for the first frame), the same whether the
    whole clip is tokenized or frames arrive one by one (`frame_tokens`); streaming them equals the full forward."""
    m = seeded(0, build_student, "mamba", image_shape=[3, 1, 8, 8], tokens="rows", d_model=8, d_state=4,
               frame_diff=True).eval()
    x = randn(2, *m.image_shape)
    tokens = m.tokenize(x)  # (B, T*8, 8*2): a row's pixels, each as (value, change)
    assert tokens.shape == (2, 24, 16)
    change = tokens.reshape(2, 3, 8, 8, 2)[..., 1]  # (B, T, H, W)
    assert torch.equal(tokens.reshape(2, 3, 8, 8, 2)[..., 0], x[:, :, 0])
    assert torch.equal(change[:, 0], torch.zeros(2, 8, 8))  # the first frame has no change yet
    assert torch.allclose(change[:, 1:], x[:, 1:, 0] - x[:, :-1, 0])
    state, outs = m.start_stream(2), []
    with torch.no_grad():
        for t in range(3):
            frame_tokens = m.frame_tokens(x[:, t], x[:, t - 1] if t else None)  # (B, 8, 16)
            assert torch.equal(frame_tokens, tokens[:, 8 * t:8 * (t + 1)])
            outs.append(m.stream(frame_tokens, state)[:, -1])
        assert torch.allclose(outs[-1], m(x), atol=1e-5)
    from pkd.flops import count_flops

    rows = {r.name: r for r in count_flops(m, m.image_shape).rows}
    assert rows["frame_diff"].flops == 2 * 64  # frames 2 and 3: one subtraction per pixel
    assert rows["embed"].contraction_flops == 2 * 24 * 16 * 8
    for image_shape in ([1, 8, 8], [1, 28, 28]):
        with pytest.raises(ValueError, match="frame_diff must be true or false, and true only for clips"):
            build_student("mamba", image_shape=image_shape, frame_diff=True)
    with pytest.raises(ValueError, match="frame_diff must be true or false"):
        build_student("mamba", image_shape=[3, 1, 8, 8], frame_diff="yes")


def test_rows_per_token_reads_r_rows_as_one_token_and_halves_the_cost(monkeypatch):
    """rows_per_token 2: token i is rows 2i and 2i+1 side by side (F = 2W), L = H/2, and every per-token layer
    costs half; the FLOP rules still equal FlopCounterMode on the contraction part."""
    from torch.utils.flop_counter import FlopCounterMode

    from pkd.flops import count_flops
    from pkd.models import mamba as mamba_module

    one, two = (build_student("mamba", d_model=16, d_state=8, rows_per_token=r).eval() for r in (1, 2))
    x = randn(2, 1, 28, 28)
    tokens = two.tokenize(x)  # (B, 14, 56)
    assert tokens.shape == (2, 14, 56) and torch.equal(tokens[:, 3], torch.cat([x[:, 0, 6], x[:, 0, 7]], dim=-1))
    cost_one, cost_two = count_flops(one, (1, 28, 28)), count_flops(two, (1, 28, 28))
    assert 0.45 < cost_two.flops / cost_one.flops < 0.6
    monkeypatch.setattr(mamba_module, "selective_scan", lambda u, *a, z=None, **k: u * z)  # no contraction inside
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        two(torch.zeros(1, 1, 28, 28))
    assert cost_two.contraction_flops == counter.get_total_flops()


def test_cols_reads_columns_left_to_right_as_rows_of_the_transposed_image():
    """tokens "cols": token i is columns R*i .. R*i+R-1, top to bottom, side by side (F = R*H), L = W/R; the same
    student on the transposed image reading rows gives the same logits (same weights), and so the same FLOPs."""
    from pkd.flops import count_flops

    cols = seeded(0, build_student, "mamba", image_shape=[1, 28, 20], tokens="cols", rows_per_token=2, d_model=8)
    rows = build_student("mamba", image_shape=[1, 20, 28], tokens="rows", rows_per_token=2, d_model=8)
    rows.load_state_dict(cols.state_dict())
    x = randn(2, 1, 28, 20)
    tokens = cols.tokenize(x)  # (B, 10, 56)
    assert tokens.shape == (2, 10, 56) and torch.equal(tokens[:, 3], torch.cat([x[:, 0, :, 6], x[:, 0, :, 7]], -1))
    with torch.no_grad():
        assert torch.allclose(cols(x), rows(x.transpose(-1, -2)), atol=1e-6)
    assert count_flops(cols, (1, 28, 20)).flops == count_flops(rows, (1, 20, 28)).flops


def test_stem_is_a_conv_front_end_that_moves_with_the_digit_and_streams_frame_by_frame(monkeypatch):
    """stem [c1, c2]: 3x3 stride-2 convs + ReLU before the tokens. A digit shifted by 4 px (two strides) gives the
    same feature map shifted by one cell (away from the padded border); a clip streamed frame by frame (frame_tokens) gives the tokens of the
    whole clip; the contraction FLOPs equal FlopCounterMode's and the stem's rows are in the report."""
    from torch.utils.flop_counter import FlopCounterMode

    from pkd.flops import count_flops
    from pkd.models import mamba as mamba_module

    m = seeded(0, build_student, "mamba", image_shape=[4, 1, 24, 24], frame_diff=True, stem=[4, 8], d_model=8,
               d_state=4, num_classes=6).eval()
    assert m.frame_len == 6 and m.seq_len == 24 and m.embed.in_features == 6 * 8
    digit = torch.zeros(1, 2, 24, 24)
    digit[:, :, 6:12, 5:11] = randn(1, 2, 6, 6)
    shifted = torch.roll(digit, shifts=(4, 4), dims=(2, 3))
    with torch.no_grad():
        a, b = m.stem(digit), m.stem(shifted)  # (1, 8, 6, 6)
    inner = a[..., 1:5, 1:5]  # cells whose receptive field holds no zero padding
    assert torch.allclose(inner, b[..., 2:6, 2:6], atol=1e-6) and inner.std() > 0
    clip = randn(2, 4, 1, 24, 24)
    with torch.no_grad():
        per_frame = torch.cat([m.frame_tokens(clip[:, t], clip[:, t - 1] if t else None) for t in range(4)], 1)
        assert torch.allclose(per_frame, m.tokenize(clip), atol=1e-6)
    report = count_flops(m, (4, 1, 24, 24))
    stem_rows = [r for r in report.rows if r.name.startswith("stem.")]
    assert [r.type for r in stem_rows] == ["Conv2d", "ReLU", "Conv2d", "ReLU"]  # all frames as one batch
    assert stem_rows[0].contraction_flops == 2 * (4 * 4 * 12 * 12) * (2 * 9)  # frames x outputs x (2 ch x 3 x 3)
    monkeypatch.setattr(mamba_module, "selective_scan", lambda u, *a, z=None, **k: u * z)  # no contraction inside
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        m(torch.zeros(1, 4, 1, 24, 24))
    assert report.contraction_flops == counter.get_total_flops()
