"""Building the video teacher's CLIP (pkd.models.clip.open_clip): importing pkd's models imports no open_clip."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_importing_the_module_does_not_import_open_clip():
    code = ("import pkd.models.clip.open_clip, pkd.models.clip.prompts, pkd.models.clip.vificlip, "
            "pkd.models.clip.weights, pkd.models, pkd.flops, sys; assert 'open_clip' not in sys.modules")
    root = Path(__file__).resolve().parents[3]
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, env={**os.environ, "PYTHONPATH": str(root)},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
