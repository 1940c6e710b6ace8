"""Train configuration: a model's train section plus command-line overrides.

Input: the resolved train settings of a Graph and the `graphc run` options
(`--set KEY=VALUE`, `--epochs`, `--batch`, `--seed`, `--data`). Output: a
`TrainConfig` with plain values. An override is parsed and checked exactly
like a line of the train section, so a bad value gets the same diagnostic.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from graphc.diagnostics import Diagnostics, GraphcError
from graphc.language import syntax as S
from graphc.language.parse import parse
from graphc.source import SourceFile
from graphc.training.settings import DEFAULTS, check_setting


@dataclass
class TrainConfig:
    """Everything the training loop needs to know, as plain values."""

    data: str
    data_dir: str | None
    batch: int
    epochs: int
    optimizer: tuple[str, dict]
    init: tuple[str, dict]
    weight_decay: float
    l1: float
    schedule: tuple[str, dict]
    validation: float
    seed: int
    early_stop: int
    scale: str

    def fingerprint(self) -> dict:
        """Return the settings that must match for a checkpoint to be resumed."""
        return {"data": self.data, "batch": self.batch, "optimizer": [self.optimizer[0], self.optimizer[1]],
                "init": [self.init[0], self.init[1]], "weight_decay": self.weight_decay, "l1": self.l1,
                "schedule": [self.schedule[0], self.schedule[1]], "validation": self.validation,
                "seed": self.seed, "scale": self.scale}


def train_config(graph, overrides: list[str] = (), *, epochs=None, batch=None, seed=None,
                 data=None) -> TrainConfig:
    """Return the train configuration of a graph with overrides applied (GraphcError if any is bad)."""
    values = {key: s.value for key, s in (graph.train or {}).items()}
    for key, value in DEFAULTS.items():
        values.setdefault(key, value)
    diagnostics = Diagnostics()
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise GraphcError(f"--set {item!r} is not KEY=VALUE", help="e.g. --set optimizer=adam(lr=0.001)")
        source = SourceFile(f"--set {key}", f"train {{ {key} = {text.strip()} }}\n")
        try:
            module = parse(source)
        except GraphcError as error:
            raise GraphcError(f"--set {key}: cannot read the value `{text.strip()}`",
                              help=error.diagnostics[0].help) from None
        trains = [i for i in module.items if isinstance(i, S.Train)]
        if len(trains) != 1 or len(trains[0].settings) != 1:
            raise GraphcError(f"--set {item!r} is not KEY=VALUE")
        setting = trains[0].settings[0]
        value = check_setting(setting.key, setting.value, diagnostics, setting.key_span)
        if value is not None:
            values[setting.key] = value
    diagnostics.raise_if_errors()
    for key, value, minimum in (("epochs", epochs, 1), ("batch", batch, 1), ("seed", seed, 0)):
        if value is not None:
            if value < minimum:
                raise GraphcError(f"--{key} must be at least {minimum}, got {value}")
            values[key] = value
    data_dir = None
    if data is not None:
        if os.path.isdir(data):
            data_dir = data
        else:
            values["data"] = data
    if "data" not in values:
        raise GraphcError(f"model `{graph.model}` has no `data` setting", span=graph.train_span,
                          help="add `data = mnist` (or digits, xor, spiral, a .npz/.csv path) or pass --data")
    return TrainConfig(data=values["data"], data_dir=data_dir, batch=values["batch"], epochs=values["epochs"],
                       optimizer=values["optimizer"], init=values["init"],
                       weight_decay=values["weight_decay"], l1=values["l1"], schedule=values["schedule"],
                       validation=values["validation"], seed=values["seed"], early_stop=values["early_stop"],
                       scale=values["scale"])
