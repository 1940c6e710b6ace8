"""Command handlers for ONNX: `graphc export` and `graphc import`.

Each takes the argparse namespace, calls graphc.tools.onnx_export/onnx_import
with plain values, prints what it wrote and returns the exit status. onnx is
loaded only inside those calls, so other commands never import it.
"""
from __future__ import annotations

from graphc.tools.onnx_export import export_file
from graphc.tools.onnx_import import import_file


def export_command(args) -> int:
    """`graphc export`: write the model as ONNX; return 0."""
    path = export_file(args.file, model=args.model, weights=args.weights, out=args.output, opset=args.opset,
                       loss=True if args.loss else None)
    print(f"wrote {path}")
    return 0


def import_command(args) -> int:
    """`graphc import`: write the ONNX model as a .nn file and its weights .npz; return 0."""
    nn_path, weights_path = import_file(args.file, out=args.output)
    print(f"wrote {nn_path} and {weights_path} (give it to `graphc run` with --weights)")
    return 0
