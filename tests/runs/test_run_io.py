"""Run-file I/O (pkd/runs/io.py): tensor files are loaded weights-only, and anything else is refused by name."""

import os

import pytest
import torch

from pkd.runs import RunError, load_tensors, save_tensors


def test_tensor_files_are_weights_only(tmp_path):
    path = tmp_path / "w.pt"
    save_tensors(path, {"w": torch.ones(2), "spec": {"arch": "mamba"}})
    assert torch.equal(load_tensors(path)["w"], torch.ones(2))

    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    import pickle
    bad = tmp_path / "evil.pt"
    bad.write_bytes(pickle.dumps({"x": Evil()}))
    with pytest.raises(RunError, match="not a pkd weights file"):
        load_tensors(bad)
    assert not (tmp_path / "pwned").exists()
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(RunError):
        load_tensors(tmp_path / "text.pt")
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(RunError, match="dict"):
        load_tensors(tmp_path / "list.pt")
