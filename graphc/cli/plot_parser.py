"""`graphc plot`'s options, apart from its handler (cli/plot.py) so building the parser imports no matplotlib,
trainer or compiler: cli/__init__.py builds every command's parser on each start."""
from __future__ import annotations


def add_plot_parser(sub) -> None:
    """Add the `plot` subcommand and its options to the subparsers `sub`; returns None."""
    help_text = "draw runs' curves (overlaid, or a grid of small multiples) or traced parameter paths"
    c = sub.add_parser("plot", help=help_text, description=help_text)
    c.add_argument("runs", nargs="+", metavar="RUN_DIR",
                   help="folders written by `graphc run --out` (a sweep's folder stands for all its runs)")
    c.add_argument("-o", "--output", required=True, metavar="FIG.png", help="the picture (.png, .svg or .pdf)")
    c.add_argument("--metric", default="loss", help="loss or acc (default loss)")
    c.add_argument("--split", default="train", choices=["train", "val", "test", "sample_train", "sample_test"],
                   help="which data the metric is of (sample_*: the first N samples each epoch, `eval_samples = N`)")
    c.add_argument("--per", default="epoch", choices=["epoch", "step"], help="x axis: epochs, or training steps")
    c.add_argument("--smooth", type=int, metavar="N",
                   help="smooth with the textbook's smooth_curve: a Kaiser-window (beta 2) moving average of N points")
    c.add_argument("--grid", action="store_true",
                   help="one small panel per run (runs differing only in their model share a panel)")
    c.add_argument("--trace", metavar="X,Y", help="draw the traced values of two parameters over the loss's contour")
    c.add_argument("--title", help="the figure's title")
