"""`geoidec export`: a step's checkpoint as an ONNX model for QGIS Deepness (thin; the work is
in geoidec.export)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from geoidec.cli.options import completer

from geoidec.errors import UsageError
from geoidec.files import refuse_existing


def export(
    model: Annotated[Path, typer.Argument(
        help="A run folder (its last step, or --step) or a step_N.pt checkpoint.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The model file to write (.onnx).")],
    format: Annotated[str, typer.Option(  # noqa: A002 - the option's name
        "--format", metavar="<onnx>", autocompletion=completer(lambda: ["onnx"]),
        help="Only onnx for now.")] = "onnx",
    step: Annotated[int | None, typer.Option(help="Step of a run folder (default: last).")
                    ] = None,
    opset: Annotated[int, typer.Option(help="ONNX opset.")] = 17,
    stac: Annotated[bool, typer.Option(
        "--stac", help="Also write MODEL.stac.json: a STAC Item with the Machine Learning "
        "Model extension (input bands and shape, output classes, checkpoint digest).")
                    ] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing file.")] = False,
) -> None:
    """Export a checkpoint to ONNX with QGIS Deepness metadata (normalisation built in).

    Example: `geoidec export runs/demo --format onnx --out demo.onnx`
    """
    from geoidec.export import FORMATS, export_onnx

    if format.lower() not in FORMATS:
        raise UsageError(f"--format {format} is not supported; formats: {', '.join(FORMATS)}")
    if stac:
        from geoidec.inference.stac import stac_path

        refuse_existing(stac_path(out), overwrite=overwrite)
    result = export_onnx(model, out, step=step, opset=opset, overwrite=overwrite)
    if stac:
        from geoidec.checkpoint import load_checkpoint, resolve_checkpoint
        from geoidec.files import file_digest
        from geoidec.inference.stac import write_model_item

        source = resolve_checkpoint(model, step)
        write_model_item(result.path, load_checkpoint(source), file_digest(source),
                         result.tile_size)
    check = ("" if result.max_difference is None
             else f"; onnxruntime matches PyTorch within {result.max_difference:.1e}")
    typer.echo(f"wrote {result.path}: input (N, {result.bands}, {result.tile_size}, "
               f"{result.tile_size}) band values / 255, output softmax probabilities of "
               f"{len(result.classes)} classes ({', '.join(result.classes)}){check}"
               + (f"; STAC item {result.path.with_suffix('.stac.json').name}" if stac else ""))
