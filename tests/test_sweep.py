"""`graphc run FILE --sweep KEY=V1,V2,...`: one run per value (a grid for several), each exactly `--set KEY=V`."""
from __future__ import annotations

import json

import numpy as np
import pytest
from paths import MODELS

from graphc.cli import main
from graphc.cli.sweep import folder_name, plan_sweep, split_values

XOR = str(MODELS / "xor.nn")


@pytest.mark.parametrize("text,values", [
    ("normal(std=0.01),xavier,he", ["normal(std=0.01)", "xavier", "he"]),
    ("0.1, 0.01", ["0.1", "0.01"]),
    ("adam(lr=0.3, betas=[0.9, 0.99]),sgd", ["adam(lr=0.3, betas=[0.9, 0.99])", "sgd"]),
    ('"a,b.npz",xor', ['"a,b.npz"', "xor"]),
])
def test_values_split_at_top_level_commas_only(text, values):
    assert split_values(text) == values


def test_folder_names_are_filesystem_safe():
    assert folder_name([("init", "normal(std=0.01)")]) == "init=normal_std=0.01"
    assert folder_name([("data", "../x y/z.npz")]) == "data=.._x_y_z.npz"
    assert folder_name([("lr", "0.1"), ("batch", "2")]) == "lr=0.1,batch=2"


def test_several_sweeps_form_the_grid_in_option_order():
    keys, runs = plan_sweep(["lr=0.1,0.5", "batch=2,4,8"])
    assert keys == ["lr", "batch"] and len(runs) == 6
    assert runs[0] == [("lr", "0.1"), ("batch", "2")] and runs[-1] == [("lr", "0.5"), ("batch", "8")]


def test_a_sweep_is_one_run_per_value_each_the_same_as_set(tmp_path):
    out = tmp_path / "sweep"
    assert main(["run", XOR, "--epochs", "3", "--sweep", "init=normal(std=0.01),xavier,he", "--out", str(out),
                 "--quiet"]) == 0
    sweep = json.loads((out / "sweep.json").read_text())
    assert sweep["key"] == "init" and [r["value"] for r in sweep["runs"]] == ["normal(std=0.01)", "xavier", "he"]
    assert all(r["finished"] for r in sweep["runs"])
    inits = [json.loads((out / r["name"] / "metrics.json").read_text())["settings"]["init"] for r in sweep["runs"]]
    assert inits == [["normal", {"std": 0.01}], ["xavier", {}], ["he", {}]]
    # The xavier run is exactly `graphc run --set init=xavier`.
    single = tmp_path / "single"
    assert main(["run", XOR, "--epochs", "3", "--set", "init=xavier", "--out", str(single), "--quiet"]) == 0
    swept = np.load(sweep["runs"][1]["dir"] + "/weights.npz")
    alone = np.load(single / "weights.npz")
    assert all(np.array_equal(swept[k], alone[k]) for k in alone.files if k != "__meta__")


def test_an_optimizer_keyword_grid(tmp_path, capsys):
    out = tmp_path / "grid"
    assert main(["run", XOR, "--epochs", "2", "--sweep", "lr=0.1,0.5", "--sweep", "batch=2,4", "--out", str(out),
                 "--quiet"]) == 0
    sweep = json.loads((out / "sweep.json").read_text())
    assert sweep["key"] == ["lr", "batch"] and len(sweep["runs"]) == 4
    run = sweep["runs"][3]
    assert run["value"] == ["0.5", "4"] and run["settings"] == {"lr": "0.5", "batch": "4"}
    settings = json.loads((out / run["name"] / "metrics.json").read_text())["settings"]
    assert settings["optimizer"] == ["sgd", {"lr": 0.5}] and settings["batch"] == 4
    said = capsys.readouterr().out
    assert f"graphc plot {out}/*/" in said and f"{out / run['name']}/" in said


@pytest.mark.parametrize("sweep,says", [
    ("lr", "is not KEY=V1,V2"),
    ("lr=0.1,,0.2", "is not KEY=V1,V2"),
    ("lr=0.1,0.1", "a value is given twice"),
    ("lr=0.1,-1", "`lr` of `sgd` must be a number >= 0, got -1"),
    ("epoch=1,2", "did you mean `epochs`"),
])
def test_a_bad_sweep_is_a_diagnostic_before_any_run(tmp_path, capsys, sweep, says):
    out = tmp_path / "bad"
    assert main(["run", XOR, "--epochs", "1", "--sweep", sweep, "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err
    assert not out.exists()   # nothing trained, not even the good values before the bad one


def test_a_sweep_does_not_go_with_feed_or_eval(tmp_path, capsys):
    assert main(["run", XOR, "--sweep", "lr=0.1,0.2", "--eval", "--out", str(tmp_path / "o")]) == 1
    assert "does not go with --eval" in capsys.readouterr().err


def test_a_search_space_of_the_file_is_swept_like_its_set(tmp_path):
    model = tmp_path / "units.nn"
    model.write_text((MODELS / "xor.nn").read_text().replace(
        "h = linear(x, 4)", "units = int(2, 8, step=2)\n  h = linear(x, units)"))
    out = tmp_path / "sweep"
    assert main(["run", str(model), "--epochs", "2", "--sweep", "units=2,8", "--out", str(out), "--quiet"]) == 0
    counts = [json.loads((out / f"units={u}" / "metrics.json").read_text())["parameters"] for u in (2, 8)]
    # h: 2*u + u weights and biases, logits: u*2 + 2
    assert counts == [2 * u + u + 2 * u + 2 for u in (2, 8)]
