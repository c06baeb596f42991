"""pkd: progressive knowledge distillation of a teacher into an ensemble of Mamba students.

Letters used in shape comments across the package: B batch, L sequence length, D model width (d_model),
ED inner width (expand * d_model), N state size, C classes, K students, H/W image height/width.
"""

__version__ = "0.1.0"
