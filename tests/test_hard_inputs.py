"""Hard test inputs of a run's ensemble (pkd/hard_inputs.py): where prefixes disagree, what each prefix gets
wrong, and what early exit stops on after student 1 while wrong."""

from __future__ import annotations

import torch

from pkd.data import get_dataset_spec
from pkd.hard_inputs import PrefixAnswers, prefix_answers
from pkd.models.ensemble import Ensemble
from tests.test_inference import Pixels


def test_prefix_answers_are_the_ensembles_in_batches():
    spec = get_dataset_spec("mnist")
    ensemble = Ensemble([Pixels(0), Pixels(1), Pixels(2)], mode="residual", student_flops=[1, 1, 1]).eval()
    inputs, labels = torch.rand(7, 1, 28, 28), torch.arange(7)
    got = prefix_answers(ensemble, spec, inputs, labels, batch_size=3)
    with torch.no_grad():
        probs = torch.stack(ensemble.all_prefixes(spec.normalize(inputs))).exp()  # (K, N, C)
    assert torch.equal(got.classes, probs.argmax(-1)) and torch.allclose(got.sureness, probs.max(-1).values)


def test_disagreeing_wrong_and_sure_but_wrong():
    answers = PrefixAnswers(classes=torch.tensor([[1, 2, 3, 9], [1, 5, 3, 4], [1, 5, 3, 4]]),
                            sureness=torch.tensor([[0.99, 0.6, 0.95, 0.97], [0.9] * 4, [0.9] * 4]),
                            labels=torch.tensor([1, 5, 8, 4]))
    assert answers.disagreeing().tolist() == [1, 3]
    assert answers.wrong(1).tolist() == [1, 2, 3] and answers.wrong(3).tolist() == [2]
    assert answers.sure_and_wrong_after_first(0.95).tolist() == [2, 3]
    assert answers.sure_and_wrong_after_first(0.99).tolist() == []
