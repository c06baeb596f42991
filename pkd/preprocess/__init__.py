"""What a user gives -> what a run's models read: pictures and canvas drawings (images.py), photos of one object
(photos.py), drawn digits made into clips and clip files (clips.py). A face: `from pkd.preprocess import
prepare_drawing` keeps working; modules inside the package import their sibling directly."""

from pkd.preprocess.clips import (GIF_MAGIC, MAX_CLIP_BYTES, MAX_GIF_SIDE, NPY_MAGIC, clip_config, clip_from_drawing,
                                  clip_gif, read_clip)
from pkd.preprocess.images import (MAX_IMAGE_SIDE, MAX_INK_FRACTION, MIN_INK_EXTENT, ink_extent, load_image_file,
                                   prepare_canvas, prepare_drawing, prepare_image)
from pkd.preprocess.photos import photo_is_light, prepare_photo

__all__ = ["GIF_MAGIC", "MAX_CLIP_BYTES", "MAX_GIF_SIDE", "MAX_IMAGE_SIDE", "MAX_INK_FRACTION", "MIN_INK_EXTENT",
           "NPY_MAGIC", "clip_config", "clip_from_drawing", "clip_gif", "ink_extent", "load_image_file",
           "photo_is_light", "prepare_canvas", "prepare_drawing", "prepare_image", "prepare_photo", "read_clip"]
