"""W1: MLP 784-512-512-10, ReLU, cross-entropy, batch 128, SGD momentum 0.9."""
import numpy as np

from .adapter import Workload, train_step

NAME, DESC = "W1", "MLP 784-512-512-10 train step, b128, SGD m0.9"


def build(fw, quick=False):
    rng = np.random.default_rng(0)
    x = fw.tensor(rng.standard_normal((128, 784), dtype=np.float32))
    y = fw.tensor(rng.integers(0, 10, 128).astype(np.int64))
    fw.manual_seed(0)
    nn = fw.nn
    model = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10))
    opt = fw.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    return Workload(train_step(fw, model, opt, fw.F.cross_entropy, x, y), "train", items=128)
