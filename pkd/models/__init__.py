"""Models: teachers and students built by name from plain config dicts, or from a saved spec (a face over
pkd.models.registry, where the registries live).

Example: ``build_student("mamba", d_model=16, tokens="patch", patch=4)``, ``build_teacher("mnist_cnn")``,
``build_model({"kind": "teacher", "arch": "mnist_cnn", "params": {}})``. Importing this package also registers
the FLOP rules of pkd's own modules (they sit beside the modules), so pkd.flops.count_flops works on any model.
"""

from pkd.models.registry import (STUDENTS, TEACHERS, build_model, build_student, build_teacher, register_student,
                                 register_teacher, teacher_data_params)

# Importing the model modules fills the registries (they import the decorators from pkd.models.registry) and
# pkd.flops.FLOP_RULES (student imports mamba and tokenizers; each module registers the rules of its own layers).
# clip registers the video teacher (vifi_clip); it imports open_clip only when a teacher is built.
from pkd.models import clip, student, teacher  # noqa: E402,F401,I001

__all__ = ["TEACHERS", "STUDENTS", "register_teacher", "register_student", "build_teacher", "build_student",
           "build_model", "teacher_data_params"]
