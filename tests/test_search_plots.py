"""The search plots (graphc/search/plots.py) on in-memory Optuna studies laid out as `graphc search` writes them:
the four PNGs are written, best_curves.png shows the best finished trials (pruned ones only by value, failed and
running ones never), and a plot that cannot be drawn is skipped with a note instead of failing.
"""
from __future__ import annotations

import math
import struct

import pytest

optuna = pytest.importorskip("optuna")
pytest.importorskip("matplotlib")

from graphc.search.plots import best_trials, draw_search_plots, short_params  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
EPOCHS = 6
SPACE = {
    "optimizer.lr": optuna.distributions.FloatDistribution(1e-6, 1e-2, log=True),
    "weight_decay": optuna.distributions.FloatDistribution(1e-8, 1e-4, log=True),
    "units": optuna.distributions.IntDistribution(50, 200, step=50),
    "init": optuna.distributions.CategoricalDistribution(["xavier", "he"]),
}
MOMENTUM = optuna.distributions.FloatDistribution(0.5, 0.99)   # a conditional parameter: only some trials have it


def _curves(final_acc: float, epochs: int) -> dict[str, list[float]]:
    """Per-epoch curves climbing to final_acc (training a little above validation), as the trainer records them."""
    val_acc = [final_acc * (e / epochs) ** 0.5 for e in range(1, epochs + 1)]
    train_acc = [min(1.0, a + 0.03) for a in val_acc]
    return {"train_loss": [2.3 * (1 - a) for a in train_acc], "val_loss": [2.3 * (1 - a) + 0.05 for a in val_acc],
            "train_acc": train_acc, "val_acc": val_acc}


def _study(metric: str = "val_acc", states: list[str] | None = None):
    """An in-memory study of 12 trials in graphc's layout: mostly completed, three pruned, one failed, one running."""
    maximize = "acc" in metric
    study = optuna.create_study(direction="maximize" if maximize else "minimize")
    study.set_user_attr("metric", metric)
    study.set_user_attr("direction", "maximize" if maximize else "minimize")
    study.set_user_attr("source", "/abs/model.nn")
    states = states or ["COMPLETE"] * 3 + ["PRUNED", "COMPLETE", "FAIL", "PRUNED"] + ["COMPLETE"] * 3 + ["PRUNED"]
    for i, state in enumerate(states):
        # Accuracies spread without ties; trial 3 (pruned) ranks high by the value where it stopped.
        acc = 0.97 if i == 3 else 0.2 + 0.055 * ((i * 7) % 12)
        curves = _curves(acc, 2 if state == "PRUNED" else EPOCHS)   # pruned: stopped after epoch 2
        params = {"optimizer.lr": 10 ** (-6 + 4 * ((i * 5) % 12) / 11), "weight_decay": 10 ** (-8 + 4 * i / 11),
                  "units": 50 * (1 + i % 4), "init": ["xavier", "he"][i % 2]}
        distributions = dict(SPACE)
        if i % 3 == 0:
            params["momentum"] = 0.5 + 0.04 * i
            distributions["momentum"] = MOMENTUM
        value = curves[metric][-1]
        study.add_trial(optuna.trial.create_trial(
            params=params, distributions=distributions, state=optuna.trial.TrialState[state],
            value=None if state == "FAIL" else value,
            intermediate_values={} if state == "FAIL" else {e + 1: v for e, v in enumerate(curves[metric])},
            user_attrs={"curves": curves}))
    study.ask(fixed_distributions=SPACE)   # a trial still running: drawn nowhere
    return study


def _png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, f"{path.name} is not a PNG"
    return struct.unpack(">II", data[16:24])


def _expected_best(study, top: int) -> list[int]:
    finished = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    sign = -1 if study.direction.name == "MAXIMIZE" else 1
    return [t.number for t in sorted(finished, key=lambda t: (sign * t.value, t.number))][:top]


@pytest.fixture(scope="module")
def accuracy_study_plots(tmp_path_factory):
    study = _study("val_acc")
    out = tmp_path_factory.mktemp("plots")
    return study, out, draw_search_plots(study, out, top=5)


def test_writes_the_four_pngs_atomically(accuracy_study_plots):
    _, out, result = accuracy_study_plots
    assert [p.name for p in result.paths] == ["history.png", "importances.png", "parallel.png", "best_curves.png"]
    assert result.notes == []
    for path in result.paths:
        assert path.parent == out
        width, height = _png_size(path)
        assert width > 300 and height > 200
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in result.paths), "temporary files left behind"


def test_best_curves_shows_the_best_finished_trials_by_value(accuracy_study_plots):
    study, _, result = accuracy_study_plots
    assert result.best_trials == _expected_best(study, 5)
    by_number = {t.number: t for t in study.trials}
    assert by_number[result.best_trials[0]].state.name == "PRUNED", "a pruned trial among the best by value is shown"
    shown_states = {by_number[n].state.name for n in result.best_trials}
    assert shown_states <= {"COMPLETE", "PRUNED"}
    values = [by_number[n].value for n in result.best_trials]
    assert values == sorted(values, reverse=True)


def test_a_loss_metric_ranks_the_lowest_first(tmp_path, accuracy_study_plots):
    study = _study("val_loss")
    result = draw_search_plots(study, tmp_path, top=20)
    finished = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert result.best_trials == _expected_best(study, 20)
    assert len(result.best_trials) == len(finished) < len(study.trials)
    values = [study.trials[n].value for n in result.best_trials]
    assert values == sorted(values)
    assert best_trials(study, 3) == [study.trials[n] for n in result.best_trials[:3]]
    # 10 panels take two rows of five: taller than the one row of the top-5 figure.
    assert _png_size(result.paths[-1])[1] > _png_size(accuracy_study_plots[2].paths[-1])[1]


def test_importances_are_skipped_with_a_note_when_they_cannot_be_computed(tmp_path):
    study = _study("val_acc", states=["COMPLETE", "PRUNED", "FAIL"])
    result = draw_search_plots(study, tmp_path)
    names = [p.name for p in result.paths]
    assert names == ["history.png", "parallel.png", "best_curves.png"]
    assert len(result.notes) == 1 and result.notes[0].startswith("no importances.png: ")
    assert "at least 2 completed trials" in result.notes[0]
    assert not (tmp_path / "importances.png").exists()
    assert result.best_trials == _expected_best(study, 20) and len(result.best_trials) == 2


def test_nothing_is_drawn_before_a_trial_finishes(tmp_path):
    study = _study("val_acc", states=["FAIL"])
    result = draw_search_plots(study, tmp_path / "out")
    assert result.paths == [] and result.best_trials == []
    assert result.notes and "no trial has finished" in result.notes[0]
    assert list((tmp_path / "out").iterdir()) == []


def test_short_params_read_like_the_textbook():
    assert short_params({"optimizer.lr": 0.0092, "weight_decay": 3.86e-07}) == "lr=0.0092, wd=3.9e-07"
    assert short_params({"units": 150, "init": "he"}) == "init=he, units=150"
    # Two names that would shorten alike keep their full names.
    both = short_params({"encoder.lr": 0.1, "decoder.lr": 0.2})
    assert both == "decoder.lr=0.2, encoder.lr=0.1"
    assert math.isclose(float(short_params({"lr": 1 / 3}).split("=")[1]), 0.33)
