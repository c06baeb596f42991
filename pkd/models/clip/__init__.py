"""The video teacher after ViFi-CLIP on an open_clip CLIP (a face over the modules; importing it registers the
teacher, and costs no open_clip import):

- open_clip.py: building the CLIP with open_clip (the one module that imports it, lazily) and the FLOP rules of
  open_clip's modules; pkd's tiny configs pkd-tiny-clip*.json sit beside it.
- prompts.py: ViFi-CLIP's prompt learner (class prompts, the text cache, learnable text and vision prompts).
- vificlip.py: the model (frames -> CLIP image tower -> temporal mean -> cosine against the class prompts) and
  its FLOPs.
- weights.py: loading a user's open_clip / ViFi-CLIP weights (load_clip_weights).
"""

from pkd.models.clip.open_clip import TINY_CLIP, TINY_CLIP_RN, load_open_clip
from pkd.models.clip.vificlip import (CosineHead, FrameAdapter, TemporalMean, VideoTeacherFlops, ViFiCLIP,
                                      video_teacher_flops)
from pkd.models.clip.weights import load_clip_weights

__all__ = ["TINY_CLIP", "TINY_CLIP_RN", "load_open_clip", "ViFiCLIP", "FrameAdapter", "TemporalMean", "CosineHead",
           "load_clip_weights", "VideoTeacherFlops", "video_teacher_flops"]
