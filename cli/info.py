"""`geoidec info`: what a run folder or a checkpoint holds, as rich tables (thin; the content
is built by geoidec.runs.model_card, the same as the run's model_card.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer


def _cell(cell: Any) -> Any:
    """A card cell as a rich renderable (plain text, never markup; colours as squares)."""
    from rich.text import Text

    from geoidec.runs.card import Swatch

    if isinstance(cell, Swatch):
        return Text.assemble(("    ", f"on {cell.hex}"), f" {cell.hex}")
    return Text(str(cell))


def render_card(card: Any, console: Any) -> None:
    """Print a :class:`geoidec.runs.card.Card` with rich."""
    from rich.table import Table
    from rich.text import Text

    from geoidec.runs.card import Code, Fields, Image
    from geoidec.runs.card import Table as CardTable

    console.print(Text(card.title, style="bold"))
    for section in card.sections:
        console.print()
        console.print(Text(section.title, style="bold underline"))
        for block in section.blocks:
            if isinstance(block, Fields):
                grid = Table.grid(padding=(0, 2))
                grid.add_column(style="bold")
                grid.add_column()
                for key, value in block.items:
                    grid.add_row(Text(key), Text(value))
                console.print(grid)
            elif isinstance(block, CardTable):
                table = Table(show_lines=False)
                for i, name in enumerate(block.header):
                    table.add_column(Text(name), justify="right" if i in block.right else "left",
                                     overflow="fold")
                for row in block.rows:
                    table.add_row(*(_cell(c) for c in row))
                console.print(table)
            elif isinstance(block, Code):
                console.print(Text("  " + block.text, style="bold cyan"))
            elif isinstance(block, Image):
                where = card.base / block.path if card.base is not None else Path(block.path)
                missing = "" if where.is_file() else " (not drawn yet)"
                console.print(Text(f"{block.alt}: {where}{missing}"))
            else:
                console.print(Text(block.text))


def info(
    path: Annotated[Path, typer.Argument(help="Run folder or checkpoint (step_N.pt).")],
) -> None:
    """Show what a trained model is: classes and colours, bands, normalisation, tile size,
    method and settings, training data, metrics per step (the run's model card).

    Example: `geoidec info runs/demo` or `geoidec info runs/demo/checkpoints/step_1.pt`
    """
    from rich.console import Console

    from geoidec.runs.model_card import describe

    card = describe(path)
    console = Console(highlight=False)
    if not console.is_terminal:  # pipes and files: no wrapping of long names
        console = Console(highlight=False, width=max(console.width, 160))
    render_card(card, console)
