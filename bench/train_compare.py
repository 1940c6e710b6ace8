"""Train a reference model in graphc and in PyTorch, alternating epoch by epoch, in one process.

    python -m bench.train_compare lenet5 [--epochs 5] [--limit N]

The machine is shared and noisy, so the two frameworks' epochs are
interleaved (graphc epoch 1, PyTorch epoch 1, graphc epoch 2, ...): each
pair ran under the same load. Both use the model's train section (optimizer,
batch, epochs), start from the same initial weights (graphc's, copied), and
read the same MNIST files in the same shuffled order. Prints per-epoch seconds and test accuracy for both.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from bench.compare import MODELS, copy_weights, torch_model, torch_optimizer
from graphc.program import Program, check_file
from graphc.training.batching import TrainData
from graphc.training.config import train_config
from graphc.training.trainer import Trainer, evaluate_split

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    """Train both, interleaved; print one line per epoch and the final accuracies."""
    ap = argparse.ArgumentParser()
    ap.add_argument("model", choices=MODELS)
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--limit", type=int)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    graph = check_file(ROOT / "models" / f"{args.model}.nn")
    cfg = train_config(graph, epochs=args.epochs)
    program = Program(graph, seed=cfg.seed, init=cfg.init)
    data = TrainData.load(program, cfg, limit=args.limit)
    # The step `graphc run --threads N` takes: each batch split across the threads.
    trainer = Trainer(program, cfg, data, Path("/tmp/graphc-train-compare"), threads=args.threads)

    torch.set_num_threads(args.threads)
    net = torch_model(args.model)
    copy_weights(program, net)
    shape = (-1, *graph.node(graph.inputs[0]).declared.shape)
    x = torch.from_numpy(data.x_train.reshape(shape))
    y = torch.from_numpy(data.y_train)
    xt = torch.from_numpy(data.x_test.reshape(shape))
    yt = torch.from_numpy(data.y_test)
    opt = torch_optimizer(cfg.optimizer[0], cfg.optimizer[1], net.parameters())
    loss_fn = torch.nn.CrossEntropyLoss()

    print(f"{args.model}: {len(x):,} training samples, batch {cfg.batch}, {cfg.epochs} epochs, "
          f"{args.threads} threads (graphc: {'batch split in ' + str(trainer.parts) if trainer.parts > 1 else 'serial step'}), "
          f"torch {torch.__version__}")
    print(f"{'epoch':>5}  {'graphc s':>9}  {'torch s':>8}  {'ratio':>6}  {'graphc acc':>10}  {'torch acc':>9}")
    g_times, t_times = [], []
    for epoch in range(cfg.epochs):
        record = trainer.epoch(epoch)
        g_acc = evaluate_split(program, data.x_test, data.y_test)["accuracy"]

        order = torch.from_numpy(np.random.default_rng([cfg.seed, epoch]).permutation(len(x)))
        net.train()
        started = time.perf_counter()
        for i in range(0, len(x), cfg.batch):
            idx = order[i:i + cfg.batch]
            opt.zero_grad()
            loss_fn(net(x[idx]), y[idx]).backward()
            opt.step()
        t_seconds = time.perf_counter() - started
        net.eval()
        with torch.no_grad():
            t_acc = (net(xt).argmax(1) == yt).float().mean().item()
        g_times.append(record["seconds"])
        t_times.append(t_seconds)
        print(f"{epoch + 1:>5}  {record['seconds']:>9.1f}  {t_seconds:>8.1f}  "
              f"{t_seconds / record['seconds']:>6.2f}  {100 * g_acc:>9.2f}%  {100 * t_acc:>8.2f}%", flush=True)
    print(f"median epoch: graphc {np.median(g_times):.1f} s, torch {np.median(t_times):.1f} s "
          f"(graphc/torch speed {np.median(t_times) / np.median(g_times):.2f}); "
          f"final test accuracy: graphc {100 * g_acc:.2f}%, torch {100 * t_acc:.2f}%")
    print(f"total training seconds: graphc {sum(g_times):.1f}, torch {sum(t_times):.1f}")
    trainer.close()


if __name__ == "__main__":
    main()
