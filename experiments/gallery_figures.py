"""The gallery's own drawings (those `graphc plot` and `graphc inspect` do not make) and its README table.

Each function takes values or run folders and writes one small PNG (a 256-colour palette, ~100 KB or less).
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

import graphc


def _pyplot():
    # matplotlib is slow to import; only the drawing steps need it.
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path: Path) -> None:
    from PIL import Image
    plt = _pyplot()
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=80)
    plt.close(fig)
    image = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB").quantize(colors=256)
    image.save(path, format="PNG", optimize=True)


def xor_regions(models: Path, runs: Path, path: Path) -> None:
    """Draw the decision regions of the trained perceptron and hidden-layer net over the unit square."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(7.5, 3.6))
    points = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
    labels = np.array([0, 1, 1, 0])
    grid = np.linspace(-0.25, 1.25, 151, dtype=np.float32)
    gx, gy = np.meshgrid(grid, grid)
    for ax, name in zip(axes, ("perceptron", "hidden")):
        prog = graphc.compile_file(models / f"{name}.nn")
        prog.load(runs / name / "weights.npz")
        p1 = prog.run({"x": np.c_[gx.ravel(), gy.ravel()]})["p"][:, 1].reshape(gx.shape)
        ax.contourf(gx, gy, p1, levels=np.linspace(0, 1, 11), cmap="RdBu_r", alpha=0.75)
        ax.contour(gx, gy, p1, levels=[0.5], colors="black", linewidths=1.2)
        wrong = prog.run({"x": points})["p"].argmax(1) != labels
        for (x, y), label, bad in zip(points, labels, wrong):
            ax.scatter(x, y, s=120, marker="o" if label else "s", c="#b71c1c" if label else "#0d47a1",
                       edgecolors="yellow" if bad else "white", linewidths=2.5 if bad else 1.2, zorder=3)
        ax.set_title(f"{'single perceptron' if name == 'perceptron' else 'one hidden layer (4 tanh)'}: "
                     f"{int(wrong.sum())} of 4 wrong", fontsize=9)
        ax.set_xlabel("x1", fontsize=8)
        ax.set_ylabel("x2", fontsize=8)
        ax.set_aspect("equal")
    fig.suptitle("XOR: P(class 1) and the 0.5 boundary (circles: class 1, squares: class 0, yellow rim: wrong)",
                 fontsize=9)
    _save(fig, path)


def activation_histograms(layers: dict, path: Path) -> None:
    """Draw one row of five layer histograms per (activation, init), as the textbook's figures 6-10 .. 6-14."""
    plt = _pyplot()
    fig, axes = plt.subplots(len(layers), 5, figsize=(9, 1.45 * len(layers) + 0.4), sharey="row")
    for row, ((act, init), values) in zip(axes, layers.items()):
        for i, (ax, a) in enumerate(zip(row, values)):
            edges = (0, 1) if act == "sigmoid" else (0, max(float(values[0].max()), 1e-12))
            ax.hist(a.ravel(), bins=30, range=edges, color="#1565c0")
            ax.tick_params(labelsize=6)
            ax.set_yticks([])
            if i == 0:
                ax.set_ylabel(f"{act}\n{init}", fontsize=7)
            ax.set_title(f"layer {i + 1}", fontsize=7)
    fig.suptitle("activation histograms, 1000 samples x 100 units (ReLU rows: bins over layer 1's range)", fontsize=9)
    _save(fig, path)


def overfit(runs: dict, path: Path) -> None:
    """Draw train (solid) and test (dashed) accuracy per epoch of each run, one panel per run."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(runs), figsize=(3.3 * len(runs), 3.0), sharey=True, squeeze=False)
    for ax, (name, m) in zip(axes[0], runs.items()):
        epochs = [r["epoch"] for r in m["epochs"]]
        ax.plot(epochs, [r["sample_train_acc"] for r in m["epochs"]], color="#1565c0", label="train (300)")
        ax.plot(epochs, [r["sample_test_acc"] for r in m["epochs"]], color="#e65100", linestyle="--", label="test")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("accuracy", fontsize=8)
    axes[0][0].legend(fontsize=8, frameon=False, loc="lower right")
    fig.suptitle("overfitting on 300 images: train vs test accuracy", fontsize=9)
    _save(fig, path)


def losses(scores: list[float], names: list[str], path: Path) -> None:
    """Draw the notes' cat example: the scores, their softmax probabilities and the two losses."""
    plt = _pyplot()
    s = np.array(scores)
    p = np.exp(s - s.max()) / np.exp(s - s.max()).sum()
    margins = np.maximum(0, s - s[0] + 1)
    margins[0] = 0
    fig, axes = plt.subplots(1, 3, figsize=(8.5, 2.6))
    axes[0].bar(names, s, color=["#2e7d32", "#9e9e9e", "#9e9e9e"])
    axes[0].set_title("scores (true class: cat)", fontsize=9)
    axes[1].bar(names, margins, color="#c62828")
    axes[1].set_title(f"hinge terms max(0, s_j - s_cat + 1): sum {margins.sum():.1f}", fontsize=9)
    axes[2].bar(names, p, color="#1565c0")
    axes[2].set_title(f"softmax: P(cat) {p[0]:.2f}, -ln {-np.log(p[0]):.2f}", fontsize=9)
    for ax in axes:
        ax.tick_params(labelsize=8)
    _save(fig, path)


README_HEAD = """# The course's experiments, reproduced with graphc

Every experiment of the course notes' chapters, as `.nn` files plus `graphc` commands (and, for a few, a
short drawing step on the public Python API in `gallery_figures.py`). One command regenerates the gallery:

```
python experiments/run.py            # full sizes (E9's 20 MNIST epochs dominate: 30-60 min on 2 busy cores)
python experiments/run.py --quick    # reduced sizes, asserts each experiment's outcome (the CI form, tests/test_experiments.py)
python experiments/run.py --only e4,e10
```

MNIST is read from `$GRAPHC_DATA` (else `../shared/datasets`). Runs go to `experiments/runs/` (not committed); a
finished run folder is reused unless `--fresh`. The textbook's numbers are from research.md section C: **[book]**
the book's text, **[nb]** one recorded notebook run. This table is written by `run.py` from `results.json`.

"""

README_NOTES = """
## Where graphc's harness differs from the textbook's

- Mini-batches: graphc shuffles and walks each epoch; the book draws each batch with replacement
  (`np.random.choice`). E5 uses 51,200 images so 5 epochs are exactly the book's 2,000 iterations of 128.
- Per-epoch curves on the first N samples (`eval_samples = N`) are the book's `evaluate_sample_num_per_epoch`,
  measured in inference mode; graphc measures after each full epoch, the book also after its first update.
- Dropout is inverted (scaled in training) in graphc, non-inverted in the book: the same model up to a scale.
- E4: the book's AdaGrad/Adam put eps outside the square root with eps 1e-7 and Adam uses the `lr_t` form;
  graphc's `adagrad(eps=1e-7)` and `adam(eps=1e-7, eps_hat=true)` are those forms (PyTorch's defaults differ).
- E10: graphc's `hinge` divides the notes' sum by the number of classes, as torch's `multi_margin_loss`;
  the notes' "0.89" is -log10(0.13): the natural-log cross-entropy is 2.04.
"""


def write_readme(path: Path, table: list[dict]) -> None:
    """Write experiments/README.md: how to run the gallery, the results table and every figure."""
    lines = [README_HEAD, "| experiment | the textbook reports | graphc measured | command |", "|---|---|---|---|"]
    for r in table:
        status = "" if all(c["passed"] for c in r.get("checks", [])) else " **(a check failed)**"
        again = f"`python experiments/run.py --only {r['id'].lower()}`"
        lines.append(f"| {r['id']} {r['title']} | {r['book']} | {r['measured']}{status} | {again}; `{r['command']}` |")
    lines.append(README_NOTES)
    lines.append("## Figures\n")
    for r in table:
        for figure in r.get("figures", []):
            lines.append(f"**{r['id']}** {r['title']}\n\n![{r['id']}](figures/{figure})\n")
    path.write_text("\n".join(lines) + "\n")
