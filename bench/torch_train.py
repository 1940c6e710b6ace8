"""Train the reference models in PyTorch with graphc's settings, for issue-4 comparisons.

    python bench/torch_train.py lenet5 [--epochs 5] [--limit N]

Reads the same MNIST files graphc does (graphc.data), builds the same network
(He-normal weights, zero biases, same layer sizes), trains with the same
optimizer, batch size and shuffling seed, and prints per-epoch wall time and
the final test accuracy. PyTorch is a test/benchmark dependency only.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch import nn

from graphc.data import load_dataset


def lenet5() -> nn.Module:
    """Return LeNet-5 as in models/lenet5.nn."""
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))


def simple_convnet() -> nn.Module:
    """Return the book's SimpleConvNet as in models/simple_convnet.nn."""
    return nn.Sequential(nn.Conv2d(1, 30, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(30 * 12 * 12, 100), nn.ReLU(), nn.Linear(100, 10))


def mlp() -> nn.Module:
    """Return the 784-256-256-10 MLP as in models/mlp.nn."""
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                         nn.Linear(256, 10))


MODELS = {"lenet5": (lenet5, lambda p: torch.optim.SGD(p, lr=0.01, momentum=0.9), 5, 1),
          "simple_convnet": (simple_convnet, lambda p: torch.optim.Adam(p, lr=0.001), 20, 0),
          "mlp": (mlp, lambda p: torch.optim.Adam(p, lr=0.001), 5, 0)}


def main() -> None:
    """Train one model and print its epoch times and test accuracy."""
    ap = argparse.ArgumentParser()
    ap.add_argument("model", choices=sorted(MODELS))
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--limit", type=int)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    build, make_opt, epochs, seed = MODELS[args.model]
    epochs = args.epochs or epochs
    torch.manual_seed(seed)
    torch.set_num_threads(args.threads)
    net = build()
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.zeros_(m.bias)
    ds = load_dataset("mnist")
    x = torch.from_numpy(ds.x_train.reshape(-1, 1, 28, 28))
    y = torch.from_numpy(ds.y_train)
    if args.limit:
        x, y = x[:args.limit], y[:args.limit]
    xt = torch.from_numpy(ds.x_test.reshape(-1, 1, 28, 28))
    yt = torch.from_numpy(ds.y_test)
    opt = make_opt(net.parameters())
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(epochs):
        order = torch.from_numpy(np.random.default_rng([seed, epoch]).permutation(len(x)))
        net.train()
        started = time.perf_counter()
        for i in range(0, len(x), 100):
            idx = order[i:i + 100]
            opt.zero_grad()
            loss = loss_fn(net(x[idx]), y[idx])
            loss.backward()
            opt.step()
        seconds = time.perf_counter() - started
        net.eval()
        with torch.no_grad():
            acc = (net(xt).argmax(1) == yt).float().mean().item()
        print(f"epoch {epoch + 1}/{epochs}  {seconds:.1f} s ({len(x) / seconds:,.0f} samples/s)  "
              f"test acc {100 * acc:.2f}%", flush=True)


if __name__ == "__main__":
    main()
