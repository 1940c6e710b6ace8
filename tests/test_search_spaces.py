"""Search spaces in the language: every distribution, its diagnostics, check at every value, run's refusal, --set.

The spaces live in graphc/language/spaces.py; `graphc check` on a file with
spaces compiles the model at every choice's options and every range's ends
(graphc/search/variants.py).
"""
from __future__ import annotations

import subprocess
import sys

import pytest

from graphc.diagnostics import Diagnostics, GraphcError
from graphc.language.fmt import format_source
from graphc.language.parse import parse_program
from graphc.language.spaces import all_spaces, fill, find_spaces
from graphc.program import check_source
from graphc.search.variants import check_spaces

HEAD = """\
model m {
  input x: [8]
  label y: class[3]
"""


def spaces_of(text: str):
    diagnostics = Diagnostics()
    spaces = find_spaces(parse_program(text=text, name="s.nn"), diagnostics)
    return spaces, [d.message for d in diagnostics.items]


def model(body: str, train: str = "data = xor; validation = 0.2") -> str:
    return HEAD + body + "\n  loss = cross_entropy(logits, y)\n}\ntrain { " + train + " }\n"


# ---- every distribution: what it reads as -----------------------------------------------------------

@pytest.mark.parametrize("text, kind, low, high, step, log", [
    ("loguniform(1e-6, 1e-2)", "loguniform", 1e-6, 1e-2, None, True),
    ("uniform(0.1, 0.5)", "uniform", 0.1, 0.5, None, False),
    ("uniform(0, 1, step=0.25)", "uniform", 0, 1, 0.25, False),
    ("int(50, 200, step=50)", "int", 50, 200, 50, False),
    ("int(1, 4)", "int", 1, 4, None, False),
    ("loguniform(10 ** -6, 1 / 100)", "loguniform", 1e-6, 0.01, None, True),
])
def test_each_numeric_distribution_reads_its_bounds(text, kind, low, high, step, log):
    spaces, errors = spaces_of(model(f"  units = {text}\n  logits = linear(x, 3)"))
    assert errors == []
    [space] = spaces
    assert (space.name, space.kind, space.step, space.log) == ("units", kind, step, log)
    assert space.low == pytest.approx(low) and space.high == pytest.approx(high)


def test_choice_of_names_numbers_and_calls_records_labels():
    text = model("  logits = x -> linear(int(4, 8)) -> choice(relu, tanh, sigmoid) -> linear(3)",
                 "data = xor; init = choice(xavier, he, normal(std=0.01)); batch = choice(32, 64)")
    spaces, errors = spaces_of(text)
    assert errors == []
    by_name = {s.name: s for s in spaces}
    assert by_name["logits"].labels == ("relu", "tanh", "sigmoid") and by_name["logits"].link
    assert by_name["init"].labels == ("xavier", "he", "normal")
    assert by_name["batch"].labels == ("32", "64")
    assert by_name["logits.linear"].kind == "int"


def test_a_choice_holds_spaces_sampled_only_with_its_option():
    text = model("  logits = linear(x, 3)",
                 "data = xor; optimizer = choice(sgd(lr=loguniform(1e-3, 1e-1)), adam(lr=loguniform(1e-4, 1e-2)))")
    spaces, errors = spaces_of(text)
    assert errors == []
    [opt] = spaces
    assert [s.name for group in opt.nested for s in group] == ["optimizer.sgd.lr", "optimizer.adam.lr"]
    asked = []
    modules = parse_program(text=text, name="s.nn")

    def choose(space):
        asked.append(space.name)
        return 1 if space.kind == "choice" else space.low
    fill(modules, spaces, choose)
    assert asked == ["optimizer", "optimizer.adam.lr"]   # sgd's lr is never sampled when adam is chosen


# ---- diagnostics, each at its span -------------------------------------------------------------------

@pytest.mark.parametrize("space, message", [
    ("loguniform(0, 1)", "`loguniform` needs LOW > 0, got 0"),
    ("loguniform(-1, 1)", "`loguniform` needs LOW > 0"),
    ("uniform(1, 0.5)", "`uniform` needs LOW < HIGH, got 1 and 0.5"),
    ("int(5, 5)", "`int` needs LOW < HIGH"),
    ("int(1.5, 4)", "`int` takes whole-number bounds and step"),
    ("int(0, 10, step=3)", "10 is not reached from 0 in steps of 3"),
    ("uniform(0, 1, step=-1)", "`step` must be > 0"),
    ("loguniform(1e-3)", "`loguniform` takes two bounds, got 1"),
    ("loguniform(1e-3, 1, step=2)", "`loguniform` takes no keyword `step`"),
    ("uniform(0, n)", "a bound of `uniform` must be a number"),
    ("choice()", "`choice` needs at least one option"),
    ("choice(1, relu)", "the options of a `choice` must all be numbers, or all names or calls"),
])
def test_malformed_spaces_are_diagnostics_at_their_span(space, message):
    text = model(f"  units = {space}\n  logits = linear(x, 3)")
    with pytest.raises(GraphcError) as caught:
        check_spaces(parse_program(text=text, name="s.nn"))
    first = caught.value.diagnostics[0]
    assert message in first.message
    line = text.splitlines()[first.span.line - 1]
    assert "units =" in line


@pytest.mark.parametrize("where", [
    "block b(x) {\n  return linear(x, int(2, 4))\n}\n",
    "search { trials = choice(1, 2) }\n",
])
def test_spaces_outside_a_model_body_or_train_section_are_refused(where):
    text = model("  logits = linear(x, 3)") + where
    _, errors = spaces_of(text)
    assert errors and all("a search space may not stand here" in e for e in errors)


def test_check_finds_a_shape_error_only_one_choice_causes_at_that_choice():
    # 8 values reshape into [4, 2] but not into [5, 2]: only the second option breaks the model.
    text = model("  units = choice(4, 5)\n  h = reshape(linear(x, 8), [units, 2])\n"
                 "  logits = linear(flatten(h), 3)")
    with pytest.raises(GraphcError) as caught:
        check_spaces(parse_program(text=text, name="s.nn"))
    [error] = caught.value.diagnostics
    assert "with `units` = 5, the model does not check" in error.message
    assert text[error.span.start:error.span.end] == "5"
    assert text.splitlines()[error.span.line - 1].strip() == "units = choice(4, 5)"


def test_check_tries_both_ends_of_an_integer_range():
    text = model("  units = int(1, 9)\n  logits = linear(x, 10 - units) -> linear(3)")
    with pytest.raises(GraphcError) as caught:    # 10 - 9 = 1 works; now make the high end break it
        check_spaces(parse_program(text=text.replace("10 - units", "9 - units"), name="s.nn"))
    assert "with `units` = 9" in caught.value.diagnostics[0].message
    graph, spaces, config, notes = check_spaces(parse_program(text=text, name="s.nn"))
    assert graph.node("logits").type.shape == (3,) and "checked 2 variants" in notes[0]


def test_search_section_settings_are_checked():
    text = model("  units = int(2, 4)\n  logits = linear(x, units) -> linear(3)") + \
        "search { trials = 0; sampler = bayes; metirc = val_acc }\n"
    with pytest.raises(GraphcError) as caught:
        check_spaces(parse_program(text=text, name="s.nn"))
    messages = [d.message for d in caught.value.diagnostics]
    assert "bad value for `trials`: `0`" in messages
    assert "bad value for `sampler`: `bayes`" in messages
    assert "unknown search setting `metirc`" in messages


def test_validation_metric_needs_a_validation_split():
    text = model("  units = int(2, 4)\n  logits = linear(x, units) -> linear(3)", "data = xor")
    assert check_spaces(parse_program(text=text, name="s.nn"))[2].metric == "train_acc"   # the default without one
    with pytest.raises(GraphcError, match="holds out no validation data"):
        check_spaces(parse_program(text=text + "search { metric = val_acc }\n", name="s.nn"))
    text += "search { metric = train_loss }\n"
    assert check_spaces(parse_program(text=text, name="s.nn"))[2].direction == "minimize"


# ---- what other commands do with a file that has spaces ----------------------------------------------

def test_compiling_a_file_with_spaces_says_how_to_search_or_fix_them():
    text = model("  units = int(2, 4)\n  logits = linear(x, units) -> linear(3)")
    with pytest.raises(GraphcError) as caught:
        check_source(text, "s.nn")
    error = caught.value.diagnostics[0]
    assert "search spaces without a value: `units` = int(2, 4)" in error.message
    assert "graphc search s.nn" in error.help and "--set units=2" in error.help


def test_run_with_set_fixes_spaces_and_trains(tmp_path):
    nn = tmp_path / "m.nn"
    nn.write_text(model("  units = int(2, 4)\n  logits = linear(x, units) -> choice(relu, tanh) -> linear(3)",
                        "data = xor; epochs = 2; optimizer = sgd(lr=loguniform(1e-3, 1))").replace("class[3]", "class[2]")
                  .replace("[8]", "[2]").replace("linear(3)", "linear(2)"))
    run = [sys.executable, "-m", "graphc", "run", str(nn), "--quiet", "--out", str(tmp_path / "r")]
    refused = subprocess.run(run, capture_output=True, text=True)
    assert refused.returncode == 1 and "graphc search" in refused.stderr and "Traceback" not in refused.stderr
    done = subprocess.run(run + ["--set", "units=3", "--set", "logits=tanh", "--set", "optimizer.lr=0.1"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "r" / "weights.npz").is_file()
    bad = subprocess.run(run + ["--set", "units=3x", "--set", "logits=tanh", "--set", "optimizer.lr=0.1"],
                         capture_output=True, text=True)
    assert bad.returncode == 1 and "cannot read the value `3x`" in bad.stderr


def test_fmt_keeps_search_sections_and_spaces():
    text = model("  units = int(50, 200, step=50)\n  logits = linear(x, units) -> linear(3)",
                 "data = xor; validation = 0.2; weight_decay = loguniform(1e-8, 1e-4)") + \
        "search {trials=100; sampler=random}\n"
    formatted = format_source(text, "s.nn")
    assert "search {\n  trials  = 100\n  sampler = random\n}" in formatted
    assert "int(50, 200, step=50)" in formatted and "loguniform(1e-8, 1e-4)" in formatted
    assert format_source(formatted, "s.nn") == formatted
    names = [s.name for s in all_spaces(spaces_of(formatted)[0])]
    assert names == ["units", "weight_decay"]


def test_uniform_with_keywords_is_still_the_initialiser():
    text = model("  logits = linear(x, 3)", "data = xor; init = uniform(low=-0.1, high=0.1)")
    assert spaces_of(text) == ([], [])
    check_source(text, "s.nn")
