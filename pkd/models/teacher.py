"""CNN teachers: the PyTorch-example MNIST CNN, a small VGG-style CNN and a ResNet-20-style CIFAR network.

All take normalised images (B, C, H, W) and return logits (B, K) (K classes). Every operation is a module
(no functional calls in forward besides the residual add), so per-module FLOP rules see all of them.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from pkd.flops import register_flop_rule, residual_add
from pkd.models.registry import register_teacher
from pkd.models.checks import check_int

__all__ = ["MnistCNN", "VggCNN", "BasicBlock", "ResNetCifar"]


def check_cnn_args(in_channels: int, num_classes: int, image_size: int, min_size: int, width: int, hidden: int,
                   dropout1: float, dropout2: float) -> None:
    """ValueError in one line naming the first impossible size or dropout of a plain CNN teacher."""
    check_int("in_channels", in_channels)
    check_int("num_classes", num_classes, 2)
    check_int("image_size", image_size, min_size)
    check_int("width", width)
    check_int("hidden", hidden)
    for field, p in (("dropout1", dropout1), ("dropout2", dropout2)):
        if not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
            raise ValueError(f"{field} must be a probability in [0, 1), got {p!r}")


@register_teacher("mnist_cnn")
class MnistCNN(nn.Module):
    """pytorch/examples mnist/main.py `Net` (logits instead of log_softmax; same keys conv1/conv2/fc1/fc2).

    conv 3x3 C->w, ReLU, conv 3x3 w->2w, ReLU, maxpool 2, dropout, flatten, fc -> hidden, ReLU, dropout, fc -> K.
    Defaults (1x28x28, w=32, hidden=128): flatten 9216, 11,992,448 multiply-adds. With batch_norm, each conv is
    followed by a BatchNorm (it folds into the conv at inference: 2 FLOPs an element here), which lets the same
    network train to a higher accuracy on harder images such as Fashion-MNIST's in the same epochs.

    Args:
        in_channels: image channels C.
        num_classes: classes K.
        image_size: square input side H = W (>= 6).
        width: channels of the first conv (the second has twice as many).
        hidden: width of the hidden fully connected layer.
        dropout1, dropout2: dropout after pooling and after the hidden layer (train mode only).
        batch_norm: a BatchNorm after each conv (off: the example's network, state-dict keys unchanged).
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        image_size: int = 28,
        width: int = 32,
        hidden: int = 128,
        dropout1: float = 0.25,
        dropout2: float = 0.5,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        check_cnn_args(in_channels, num_classes, image_size, 6, width, hidden, dropout1, dropout2)
        if not isinstance(batch_norm, bool):
            raise ValueError(f"batch_norm must be true or false, got {batch_norm!r}")
        self.image_shape = (in_channels, image_size, image_size)
        side = (image_size - 4) // 2  # two valid 3x3 convs, then 2x2 max-pool
        self.conv1 = nn.Conv2d(in_channels, width, 3, 1)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, 1)
        self.bn1 = nn.BatchNorm2d(width) if batch_norm else nn.Identity()
        self.bn2 = nn.BatchNorm2d(2 * width) if batch_norm else nn.Identity()
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.dropout1 = nn.Dropout(dropout1)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(2 * width * side * side, hidden)
        self.dropout2 = nn.Dropout(dropout2)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x: (B, C, H, W). Returns: (B, K) logits."""
        x = self.relu(self.bn1(self.conv1(x)))  # (B, w, H-2, W-2)
        x = self.relu(self.bn2(self.conv2(x)))  # (B, 2w, H-4, W-4)
        x = self.flatten(self.dropout1(self.pool(x)))  # (B, 2w * ((H-4)/2)^2)
        x = self.dropout2(self.relu(self.fc1(x)))  # (B, hidden)
        return self.fc2(x)  # (B, K)


@register_teacher("vgg_cnn")
class VggCNN(nn.Module):
    """A small VGG-style CNN (Simonyan & Zisserman 2015's blocks at 28x28 scale), the Fashion-MNIST teacher.

    Two blocks of [conv 3x3 (same padding) -> BatchNorm -> ReLU] x 2, then 2x2 max-pool and dropout; widths w and
    2w. Then flatten, fc -> hidden, ReLU, dropout, fc -> K. Where the MNIST CNN looks twice at the full image and
    pools once, this one looks four times at two scales, which is what separates a shirt from a pullover.
    Defaults (1x28x28, w=32, hidden=256): flatten 64*7*7 = 3136, 870,826 parameters, 38,443,594 FLOPs an image
    (`pkd.flops.count_flops`; the BatchNorms fold into the convs at inference: 2 FLOPs an element).

    Args:
        in_channels: image channels C.
        num_classes: classes K.
        image_size: square input side H = W (>= 4; pooled twice by 2, rounding down).
        width: channels of the first block (the second has twice as many).
        hidden: width of the hidden fully connected layer.
        dropout1, dropout2: dropout after each block and after the hidden layer (train mode only).
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        image_size: int = 28,
        width: int = 32,
        hidden: int = 256,
        dropout1: float = 0.25,
        dropout2: float = 0.5,
    ) -> None:
        super().__init__()
        check_cnn_args(in_channels, num_classes, image_size, 4, width, hidden, dropout1, dropout2)
        self.image_shape = (in_channels, image_size, image_size)
        self.block1 = self._block(in_channels, width, dropout1)
        self.block2 = self._block(width, 2 * width, dropout1)
        side = image_size // 4
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(2 * width * side * side, hidden), nn.ReLU(),
                                  nn.Dropout(dropout2), nn.Linear(hidden, num_classes))

    @staticmethod
    def _block(in_channels: int, out_channels: int, dropout: float) -> nn.Sequential:
        """[conv 3x3 same -> BN -> ReLU] x 2 -> max-pool 2 -> dropout: (B, in, H, W) -> (B, out, H/2, W/2)."""
        return nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, 1, 1, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU(),
            nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU(),
            nn.MaxPool2d(2), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x: (B, C, H, W). Returns: (B, K) logits."""
        x = self.block1(x)  # (B, w, H/2, W/2)
        x = self.block2(x)  # (B, 2w, H/4, W/4)
        return self.head(x)  # (B, 2w * (H/4)^2) -> (B, hidden) -> (B, K)


class BasicBlock(nn.Module):
    """ResNet basic block: relu(bn(conv3x3(relu(bn(conv3x3(x))))) + shortcut(x)); 1x1 conv + BN projection
    shortcut when the shape changes (He et al. 2016, option B)."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x: (B, in_planes, H, W). Returns: (B, planes, H/stride, W/stride)."""
        out = self.relu(self.bn1(self.conv1(x)))  # (B, planes, H', W')
        out = self.bn2(self.conv2(out))  # (B, planes, H', W')
        return self.relu(out + self.shortcut(x))  # (B, planes, H', W')


register_flop_rule(BasicBlock)(residual_add)  # its own add; convs, BNs, ReLU and shortcut are counted by their rules


@register_teacher("resnet_cifar")
class ResNetCifar(nn.Module):
    """ResNet-(6n+2) for 32x32 images (He et al. 2016, §4.2): 3 stages of n basic blocks, widths w, 2w, 4w.

    Args:
        in_channels: image channels C.
        num_classes: classes K.
        depth: 6n + 2 layers, n >= 1 (20 is ResNet-20).
        width: channels of the first stage.
        image_size: square input side (>= 4).
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 10,
        depth: int = 20,
        width: int = 16,
        image_size: int = 32,
    ) -> None:
        super().__init__()
        check_int("in_channels", in_channels)
        check_int("num_classes", num_classes, 2)
        check_int("width", width)
        check_int("image_size", image_size, 4)
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
            raise ValueError(f"depth must be 6n + 2 with n >= 1 (8, 14, 20, 32, 44, 56, 110, ...), got {depth!r}")
        self.image_shape = (in_channels, image_size, image_size)
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU()
        blocks: list[nn.Module] = []
        in_planes = width
        for stage, planes in enumerate((width, 2 * width, 4 * width)):
            for i in range(n):
                blocks.append(BasicBlock(in_planes, planes, 2 if stage > 0 and i == 0 else 1))
                in_planes = planes
        self.layers = nn.Sequential(*blocks)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(4 * width, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x: (B, C, H, W). Returns: (B, K) logits."""
        x = self.relu(self.bn1(self.conv1(x)))  # (B, w, H, W)
        x = self.layers(x)  # (B, 4w, H/4, W/4)
        return self.fc(self.flatten(self.avgpool(x)))  # (B, 4w) -> (B, K)
