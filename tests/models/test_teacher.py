"""Tests for pkd.models.teacher: the MNIST CNN, the VGG-style CNN and the CIFAR ResNet (layouts, parameter counts,
FLOPs, checks)."""

from __future__ import annotations

import pytest
import torch

from pkd.models import build_teacher
from tests.models.seeding import randn, seeded


@pytest.mark.parametrize("name, kwargs, field", [
    ("resnet_cifar", {"depth": 21}, "depth"),
    ("resnet_cifar", {"width": 0}, "width"),
    ("mnist_cnn", {"image_size": 5}, "image_size"),
    ("mnist_cnn", {"dropout1": 1.0}, "dropout1"),
    ("mnist_cnn", {"hidden": 0}, "hidden"),
    ("mnist_cnn", {"batch_norm": "yes"}, "batch_norm"),
    ("vgg_cnn", {"image_size": 3}, "image_size"),
    ("vgg_cnn", {"dropout2": -0.1}, "dropout2"),
    ("vgg_cnn", {"width": 2.5}, "width"),
])
def test_impossible_teacher_sizes_raise_one_line(name, kwargs, field):
    with pytest.raises(ValueError, match=field) as info:
        build_teacher(name, **kwargs)
    assert "\n" not in str(info.value)


def test_mnist_cnn_is_the_pytorch_example_net():
    m = build_teacher("mnist_cnn")
    shapes = {k: tuple(v.shape) for k, v in m.state_dict().items()}
    assert shapes == {"conv1.weight": (32, 1, 3, 3), "conv1.bias": (32,), "conv2.weight": (64, 32, 3, 3),
                      "conv2.bias": (64,), "fc1.weight": (128, 9216), "fc1.bias": (128,),
                      "fc2.weight": (10, 128), "fc2.bias": (10,)}
    # 320 + 18,496 + 1,179,776 + 1,290 parameters, the well-known 1,199,882 of pytorch/examples mnist.
    assert sum(p.numel() for p in m.parameters()) == 1_199_882
    assert m(randn(3, 1, 28, 28)).shape == (3, 10)


def test_mnist_cnn_with_batch_norm_adds_one_after_each_conv_and_counts_it():
    from pkd.flops import count_flops

    plain, normed = build_teacher("mnist_cnn"), build_teacher("mnist_cnn", batch_norm=True)
    added = {k: tuple(v.shape) for k, v in normed.state_dict().items() if k not in plain.state_dict()}
    assert {k: v for k, v in added.items() if not k.endswith("num_batches_tracked")} == {
        "bn1.weight": (32,), "bn1.bias": (32,), "bn1.running_mean": (32,), "bn1.running_var": (32,),
        "bn2.weight": (64,), "bn2.bias": (64,), "bn2.running_mean": (64,), "bn2.running_var": (64,)}
    assert sum(p.numel() for p in normed.parameters()) == 1_199_882 + 2 * (32 + 64)
    # inference BN folds to x*a + b: 2 FLOPs an element of the (32, 26, 26) and (64, 24, 24) conv outputs
    assert count_flops(normed, (1, 28, 28)).flops - count_flops(plain, (1, 28, 28)).flops == \
        2 * (32 * 26 * 26 + 64 * 24 * 24)
    assert normed.eval()(randn(1, 1, 28, 28)).shape == (1, 10)


def test_mnist_cnn_dropout_only_in_training():
    m = seeded(0, build_teacher, "mnist_cnn")
    x = randn(2, 1, 28, 28)
    m.eval()
    with torch.no_grad():
        assert torch.equal(m(x), m(x))
        m.train()
        assert not torch.equal(m(x), m(x))


def test_vgg_cnn_layout_params_and_flops():
    from pkd.flops import count_flops

    m = build_teacher("vgg_cnn")
    convs = [mod for mod in m.modules() if isinstance(mod, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.padding) for c in convs] == \
        [(1, 32, (1, 1)), (32, 32, (1, 1)), (32, 64, (1, 1)), (64, 64, (1, 1))]
    # convs 9*(32 + 32*32 + 32*64 + 64*64) = 64,800 (no bias: BN follows), BNs 2*(32+32+64+64) = 384,
    # fc 3136*256 + 256 = 803,072, fc 256*10 + 10 = 2,570
    assert sum(p.numel() for p in m.parameters()) == 64_800 + 384 + 803_072 + 2_570 == 870_826
    flops = count_flops(m, (1, 28, 28)).flops
    conv_macs = 28 * 28 * 9 * (32 + 32 * 32) + 14 * 14 * 9 * (32 * 64 + 64 * 64)
    fc_macs = 3136 * 256 + 256 * 10
    # per element: BN 2 (folded x*a + b), ReLU 1 on each conv output and the hidden layer; max-pool 3 a 2x2 window;
    # a bias add per fc output
    elementwise = 3 * (2 * 28 * 28 * 32 + 2 * 14 * 14 * 64) + 256 + 3 * (14 * 14 * 32 + 7 * 7 * 64) + 256 + 10
    assert flops == 2 * (conv_macs + fc_macs) + elementwise == 38_443_594
    assert m(randn(3, 1, 28, 28)).shape == (3, 10)
    small = build_teacher("vgg_cnn", in_channels=3, image_size=6, width=4, hidden=8, num_classes=3)
    assert small(randn(2, 3, 6, 6)).shape == (2, 3)  # 6 -> 3 -> 1 after two poolings


def test_vgg_cnn_dropout_only_in_training():
    m = seeded(0, build_teacher, "vgg_cnn")
    x = randn(4, 1, 28, 28)
    m.train()
    with torch.no_grad():
        assert not torch.equal(m(x), m(x))
        m.eval()
        assert torch.equal(m(x), m(x))


def test_resnet_cifar_depth_and_params():
    m = build_teacher("resnet_cifar")  # ResNet-20, widths 16/32/64
    convs = [mod for mod in m.modules() if isinstance(mod, torch.nn.Conv2d) and mod.kernel_size == (3, 3)]
    assert len(convs) + 1 == 20  # 19 3x3 convs + the fc layer
    # ResNet-20 with option-A shortcuts has 269,722 parameters; our option-B projections add
    # conv 16*32 + 32*64 = 2,560 and BN 2*(32 + 64) = 192.
    assert sum(p.numel() for p in m.parameters()) == 269_722 + 2_560 + 192
    assert m(randn(2, 3, 32, 32)).shape == (2, 10)
    small = build_teacher("resnet_cifar", depth=8, width=4, in_channels=1, image_size=28, num_classes=3)
    assert small(randn(2, 1, 28, 28)).shape == (2, 3)
