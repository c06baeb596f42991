"""The built-in datasets, by name: their specs (shapes, classes, normalisation, augmentation) registered at once,
their loaders named ("module:function") and imported at a dataset's first ``load_split``.

Why apart from the loaders: the loaders' modules import torch (a few seconds of CPU), and much of pkd only reads
specs, e.g. the app's pages that draw a run's records (class names, image or clip). Importing pkd.data registers
these; MNIST first (the registry's order is the order choices are listed in).
"""

from __future__ import annotations

from pkd.data.clip_specs import CLIP_SETS, moving_mnist_spec, novel_of
from pkd.data.registry import register_builtin
from pkd.data.spec import DatasetSpec

MNIST = register_builtin(DatasetSpec(
    name="mnist",
    sample_shape=(1, 28, 28),
    num_classes=10,
    class_names=tuple(str(d) for d in range(10)),
    mean=(0.1307,),
    std=(0.3081,),
    max_shift=2,
), "pkd.data.mnist:load_mnist")

CIFAR10 = register_builtin(DatasetSpec(
    name="cifar10",
    sample_shape=(3, 32, 32),
    num_classes=10,
    class_names=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
    mean=(0.4914, 0.4822, 0.4465),
    std=(0.2470, 0.2435, 0.2616),
    max_shift=4,
    hflip=True,
), "pkd.data.cifar10:load_cifar10")

# Moving MNIST clips (pkd.data.clip_specs.CLIP_SETS): moving_mnist, moving_mnist_b2n, moving_mnist_50k,
# moving_mnist_small, moving_mnist_small_b2n, each made by pkd.data.moving_mnist.load_<name>
MOVING_MNIST, MOVING_MNIST_B2N, MOVING_MNIST_50K, MOVING_MNIST_SMALL, MOVING_MNIST_SMALL_B2N = (
    register_builtin(moving_mnist_spec(name, cfg, novel_of(train_classes)), f"pkd.data.moving_mnist:load_{name}")
    for name, (cfg, train_classes) in CLIP_SETS.items()
)

FASHION_MNIST = register_builtin(DatasetSpec(
    name="fashion_mnist",
    sample_shape=(1, 28, 28),
    num_classes=10,
    class_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                 "Ankle boot"),
    mean=(0.2860,),  # of the 60k training pixels in [0, 1]
    std=(0.3530,),
    max_shift=2,
    hflip=True,  # a garment seen in a mirror is the same garment
    photos=True,
), "pkd.data.fashion_mnist:load_fashion_mnist")
