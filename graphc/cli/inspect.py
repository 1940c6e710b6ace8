"""`graphc inspect`: one batch through a model -> activation, filter and gradient statistics and a picture;
with `--regions`, the decision regions of a classifier with a 2-D input (tools/regions.py).

The batch is a dataset's first samples, or seeded standard-normal inputs
(`--data random`, or a model without a train section); the weights are
loaded (`--weights`) or freshly initialised (`--init`). Activations and
gradients are those of training mode (batch statistics, dropout: what a
training step sees and minimises) unless `--eval-mode` asks for inference mode.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from graphc.diagnostics import GraphcError
from graphc.program import Program, check_file
from graphc.runtime.feeds import random_feeds
from graphc.tools.inspection import activation_stats, activation_table, draw_panels, first_conv_filters, gradient_stats
from graphc.tools.regions import check_plane_classifier, decision_regions, draw_regions, point_classes, predict_classes
from graphc.training.batching import TrainData
from graphc.training.checkpoint import load_weights
from graphc.training.config import train_config
from graphc.training.optim import format_call


def inspect_command(args) -> int:
    """`graphc inspect`: compute what was asked on one batch, print a summary, write the picture; return 0."""
    graph = check_file(args.file, args.model)
    if args.batch < 1:
        raise GraphcError(f"--batch must be at least 1, got {args.batch}")
    use_random = args.data == "random" or (graph.train is None and args.data is None)
    overrides = list(args.set) + ([f"init={args.init}"] if args.init else [])
    cfg = train_config(graph, overrides, seed=args.seed, data="random" if use_random else args.data)
    program = Program(graph, seed=cfg.seed, init=cfg.init)
    if args.weights:
        load_weights(program, args.weights)
    if getattr(args, "regions", False):
        return regions_command(program, cfg, args, use_random)
    wanted = [k for k in ("activations", "filters", "gradients") if getattr(args, k)]
    if wanted == ["filters"]:
        # Filters are weights: drawing them needs no data (and must not download a dataset).
        feeds, source = {}, "no data (filters only)"
    elif use_random:
        feeds, source = random_feeds(program.graph, args.batch, cfg.seed), f"{args.batch} seeded standard-normal samples"
    else:
        data = TrainData.load(program, cfg, limit=args.batch)
        feeds = {name: a[:args.batch] for name, a in data.train.items()}   # every input and label it binds
        source = f"{min(args.batch, data.size('train'))} samples of {data.name}"
    if not wanted:
        wanted = ["activations", "gradients"] + (["filters"] if first_conv_filters(program) else [])
    init = format_call(*cfg.init)
    mode = "eval mode" if args.eval_mode else "training mode"
    title = (f"{graph.model}: " + (f"weights {os.path.basename(args.weights)}" if args.weights else f"init {init}")
             + f", {source}" + (f", {mode}" if {"activations", "gradients"} & set(wanted) else ""))
    panels = []
    print(title)
    if "activations" in wanted:
        stats = activation_stats(program, feeds, train=not args.eval_mode)
        print(activation_table(stats))
        panels.append(("activations", stats))
    if "filters" in wanted:
        found = first_conv_filters(program)
        if found is None:
            raise GraphcError(f"model `{graph.model}` has no conv layer, so no filters to draw")
        panels.append(("filters", found))
    if "gradients" in wanted:
        if graph.objective is None:
            raise GraphcError(f"model `{graph.model}` has no objective, so no gradients",
                              help="declare `loss = ...`, or drop --gradients")
        grads = gradient_stats(program, feeds, train=not args.eval_mode)
        for name, g in grads.items():
            print(f"  mean |grad| {name:<20} {g:.3e}")
        panels.append(("gradients", grads))
    out = Path(args.output or f"{graph.model}-inspect.png")
    draw_panels(panels, out, title)
    print(f"wrote {out}")
    return 0


def regions_command(program, cfg, args, use_random: bool) -> int:
    """`graphc inspect --regions`: the classes a 2-D classifier predicts over the training points' range,
    the points on top; print how many points it classifies right and write the picture; return 0."""
    graph = program.graph
    others = [f"--{k}" for k in ("activations", "filters", "gradients") if getattr(args, k)]
    if others:
        raise GraphcError(f"--regions draws its own picture; it does not go with {' and '.join(others)}",
                          help="run graphc inspect twice, once with --regions")
    name, _ = check_plane_classifier(graph)   # before loading data: a 784-input model is refused at once
    points = labels = None
    source = "no data: the unit square"
    if not use_random:
        data = TrainData.load(program, cfg, limit=args.batch)
        points = data.train[name][:args.batch].reshape(-1, 2)
        labels = data.train[graph.labels[0]][:args.batch] if graph.labels else None
        source = f"{len(points)} training points of {data.name}"
    regions = decision_regions(program, points)
    truth = point_classes(graph, labels, len(points)) if points is not None else None
    shown = f"weights {os.path.basename(args.weights)}" if args.weights else f"init {format_call(*cfg.init)}"
    title = f"{graph.model}: {shown}"
    print(f"{title}, {source}")
    if truth is not None:
        right = int(np.sum(predict_classes(program, points)[0] == truth))
        print(f"training points on the side of their class: {right}/{len(points)}")
        title += f"\n{right}/{len(points)} training points on their class's side"
    out = Path(args.output or f"{graph.model}-regions.png")
    draw_regions(regions, points, truth, out, title)
    print(f"wrote {out}")
    return 0
