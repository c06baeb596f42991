"""The teacher stage (pkd.train.teacher): the teacher's spec, and the registry that picks how an arch is checked,
loaded and trained (the default for image teachers, the video teacher's from pkd.train.video_stage). Real runs
through the stage are tests/train/test_progressive.py's, test_teacher_logits.py's and test_video_run.py's."""

from __future__ import annotations

import pytest

from pkd.config import VIDEO_TEACHER, load_config
from pkd.data import get_dataset_spec
from pkd.train.teacher import TeacherTraining, register_teacher_training, teacher_spec, teacher_training
from pkd.train.video_stage import VideoTeacherTraining
from tests.pkd_process import TINY


def test_an_image_teachers_spec_is_only_its_config():
    """Video teachers take params from the dataset (pkd.models.teacher_data_params); image teachers take none, so an
    image run's teacher.pt spec, and everything checked against it, is what it was before video mode."""
    assert teacher_spec(load_config(TINY)) == {"kind": "teacher", "arch": "mnist_cnn", "params": {}}
    video = teacher_spec(load_config(TINY, ["data.dataset=moving_mnist", "teacher.arch=vifi_clip"]))
    assert video["params"]["image_size"] == 48 and len(video["params"]["class_names"]) == 60


def test_image_teachers_train_the_default_way_and_the_video_teacher_its_own():
    default = teacher_training("mnist_cnn")
    assert type(default) is TeacherTraining and teacher_training("resnet_cifar") is default
    assert default.check_device == "meta" and default.after_load(None, None) is False
    default.check_data(load_config(TINY), get_dataset_spec("moving_mnist"))  # any dataset
    video = teacher_training(VIDEO_TEACHER)
    assert isinstance(video, VideoTeacherTraining) and video.check_device == "cpu"


def test_the_video_teacher_refuses_image_data_in_one_line():
    cfg = load_config(TINY, [f"teacher.arch={VIDEO_TEACHER}"])
    teacher_training(VIDEO_TEACHER).check_data(cfg, get_dataset_spec("moving_mnist"))
    with pytest.raises(ValueError, match=r"^teacher.arch: vifi_clip classifies clips but data.dataset 'mnist' holds "
                                         r"images; use a clip dataset such as moving_mnist$"):
        teacher_training(VIDEO_TEACHER).check_data(cfg, get_dataset_spec("mnist"))


def test_an_arch_gets_one_training():
    with pytest.raises(ValueError, match="teacher arch 'vifi_clip' already has a training"):
        register_teacher_training(VIDEO_TEACHER)(VideoTeacherTraining)
