"""W2: small ResNet train step, batch 64 of 3x32x32, Adam."""
import numpy as np

from .adapter import Workload, train_step

NAME, DESC = "W2", "ResNet-ish CNN train step, b64 3x32x32, Adam"


def build(fw, quick=False):
    nn = fw.nn

    def cbr(cin, cout, stride=1, relu=True):
        layers = [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout)]
        return nn.Sequential(*(layers + [nn.ReLU()] if relu else layers))

    class Res(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.a, self.b = cbr(c, c), cbr(c, c, relu=False)

        def forward(self, x):
            return (x + self.b(self.a(x))).relu()

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(cbr(3, 32), Res(32), Res(32), cbr(32, 64, stride=2), Res(64))
            self.fc = nn.Linear(64, 10)

        def forward(self, x):
            return self.fc(self.body(x).mean((2, 3)))

    rng = np.random.default_rng(0)
    x = fw.tensor(rng.standard_normal((64, 3, 32, 32), dtype=np.float32))
    y = fw.tensor(rng.integers(0, 10, 64).astype(np.int64))
    fw.manual_seed(0)
    model = Net()
    opt = fw.optim.Adam(model.parameters(), lr=1e-3)
    return Workload(train_step(fw, model, opt, fw.F.cross_entropy, x, y), "train", items=64)
