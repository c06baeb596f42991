"""Training: the KD loss, the loop that fits one model, the progressive teacher-then-students run.

Imports go one way: pkd.train -> pkd.models / pkd.data / pkd.evaluate / pkd.artifacts -> pkd.runs. Nothing outside
this package (the app in particular) imports it, except the CLI's `train` command.
"""

from pkd.train.progressive import train_run
from pkd.train.signals import StopRequested, install_stop_handler
from pkd.train.specs import check_models

# The video teacher's training registers itself with the teacher stage (pkd.train.teacher) on import.
from pkd.train import video_stage  # noqa: E402,F401,I001

__all__ = ["train_run", "StopRequested", "install_stop_handler", "check_models"]
