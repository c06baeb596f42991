"""The ensemble's arithmetic: prefixes, modes, learned scales, anytime prediction and the one PrefixSums."""

import pytest
import torch
import torch.nn as nn

from pkd.models.ensemble import Ensemble, PrefixSums


class Fixed(nn.Module):
    """A 'student' that returns fixed logits per sample (to check the ensemble's arithmetic)."""

    def __init__(self, logits):
        super().__init__()
        self.register_buffer("logits", torch.tensor(logits, dtype=torch.float32))
        self.calls = 0

    def forward(self, x):
        self.calls += len(x)
        return self.logits[x[:, 0, 0, 0].long()]


def make_ensemble(mode="residual"):
    a = Fixed([[4.0, 0.0], [0.0, 0.1]])  # sample 0: confident class 0; sample 1: unsure
    b = Fixed([[0.0, 0.0], [0.0, 4.0]])
    return Ensemble([a, b], mode=mode, student_flops=[10, 100])


def test_ensemble_prefixes_and_modes():
    x = torch.arange(2.0).view(2, 1, 1, 1)
    res = make_ensemble("residual")
    lp = res.forward_prefix(x, 2)
    assert torch.allclose(lp, torch.log_softmax(torch.tensor([[4.0, 0.0], [0.0, 4.1]]), -1))
    ind = make_ensemble("independent")
    probs = (torch.softmax(torch.tensor([[4.0, 0.0], [0.0, 0.1]]), -1) + torch.softmax(torch.zeros(2, 2), -1)) / 2
    probs[1] = (torch.softmax(torch.tensor([0.0, 0.1]), -1) + torch.softmax(torch.tensor([0.0, 4.0]), -1)) / 2
    assert torch.allclose(ind.forward_prefix(x, 2).exp(), probs, atol=1e-6)
    assert res.cumulative_flops() == [10, 110]
    with pytest.raises(ValueError, match="out of range"):
        res.forward_prefix(x, 3)
    with pytest.raises(ValueError, match="mode"):
        Ensemble([nn.Identity()], mode="boost")


def test_anytime_predict():
    x = torch.arange(2.0).view(2, 1, 1, 1)
    ens = make_ensemble()
    p = ens.predict(x, k=1)
    assert p.k_used.tolist() == [1, 1] and p.flops.tolist() == [10, 10]
    p = ens.predict(x, flop_budget=50)
    assert p.k_used.tolist() == [1, 1]
    p = ens.predict(x, flop_budget=1000)
    assert p.k_used.tolist() == [2, 2] and p.classes.tolist() == [0, 1]
    with pytest.raises(ValueError, match="budget"):
        ens.predict(x, flop_budget=5)
    ens = make_ensemble()
    p = ens.predict(x, confidence=0.9)
    assert p.k_used.tolist() == [1, 2] and p.flops.tolist() == [10, 110]  # confident sample 0 stops early
    assert ens.students[1].calls == 1  # the second student only saw the unsure sample
    assert p.classes.tolist() == [0, 1]
    with pytest.raises(ValueError):
        ens.predict(x, confidence=1.5)


def test_learned_prev_scale_rescales_the_ensemble_before_each_student():
    """E_k = s_k * E_(k-1) + z_k: in every prefix, in predict (also with early exit) and nowhere in independent."""
    x = torch.arange(2.0).view(2, 1, 1, 1)
    a, b = make_ensemble().students
    ens = Ensemble([a, b], mode="residual", student_flops=[10, 100], prev_scales=[1.0, 0.25])
    expected = torch.log_softmax(0.25 * a.logits + b.logits, -1)  # rows are samples 0 and 1
    first, second = ens.all_prefixes(x)
    assert torch.allclose(first, torch.log_softmax(a.logits, -1)) and torch.allclose(second, expected)
    assert torch.allclose(ens.predict(x, k=2).probs, expected.exp())
    p = ens.predict(x, confidence=0.9)  # sample 0 stops at k=1, sample 1 goes on with the scaled sum
    assert p.k_used.tolist() == [1, 2] and torch.allclose(p.probs[1], expected[1].exp())
    assert torch.allclose(make_ensemble().forward_prefix(x, 2),
                          Ensemble([a, b], student_flops=[10, 100], prev_scales=[1.0, 1.0]).forward_prefix(x, 2))
    for bad in ([1.0], [1.0, float("nan")]):
        with pytest.raises(ValueError, match="prev_scales"):
            Ensemble([a, b], prev_scales=bad)
    with pytest.raises(ValueError, match="residual"):
        Ensemble([a, b], mode="independent", prev_scales=[1.0, 0.5])


def test_prefix_sums_match_the_ensemble_and_support_early_exit_rows():
    """One PrefixSums serves training (whole splits), evaluation and predict's shrinking set of active rows."""
    torch.manual_seed(0)
    z = [torch.randn(5, 3) for _ in range(3)]
    scales = [1.0, 0.5, 2.0]
    for mode in ("residual", "independent"):
        sums = PrefixSums(mode)
        for j, logits in enumerate(z):
            peek = sums.log_probs_with(logits, scales[j] if mode == "residual" else 1.0)
            sums.add(logits, scales[j] if mode == "residual" else 1.0)
            assert torch.equal(peek, sums.log_probs())  # judging a candidate == adding it
        if mode == "residual":
            expected = torch.log_softmax(2.0 * (0.5 * z[0] + z[1]) + z[2], -1)
        else:
            expected = torch.log(sum(torch.softmax(t, -1) for t in z) / 3)
        assert torch.allclose(sums.log_probs(), expected, atol=1e-6) and sums.k == 3
    rows = torch.tensor([1, 3])  # only samples 1 and 3 go on to student 2
    sums = PrefixSums("residual")
    sums.add(z[0])
    sums.add(z[1][rows], 0.5, rows=rows)
    assert torch.allclose(sums.log_probs(rows), torch.log_softmax(0.5 * z[0][rows] + z[1][rows], -1))
    assert torch.equal(sums.logits[0], z[0][0])  # samples that stopped keep their sums
    with pytest.raises(ValueError, match="no student"):
        PrefixSums("residual").log_probs()
    with pytest.raises(ValueError, match="mode"):
        PrefixSums("boost")
