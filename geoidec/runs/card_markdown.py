"""A :class:`~geoidec.runs.card.Card` as Markdown (``RUN/model_card.md``: GitHub-flavoured,
colour squares as inline HTML), and the pipe tables of :mod:`geoidec.runs.reports` read back
as card tables."""

from __future__ import annotations

import re

from geoidec.runs.card import Block, Card, Cell, Code, Fields, Image, Swatch, Table


def table_from_markdown(text: str) -> Table:
    """A pipe table (as :mod:`geoidec.runs.reports` writes them) as a :class:`Table`;
    :func:`card_markdown` renders it back to the same text."""
    lines = [line.strip() for line in text.strip().splitlines()]

    def cells(line: str) -> list[str]:
        return [c.strip().replace("\\|", "|") for c in
                re.split(r"(?<!\\)\|", line.strip().strip("|"))]

    header, rule, rows = cells(lines[0]), cells(lines[1]), [cells(x) for x in lines[2:]]
    right = tuple(i for i, r in enumerate(rule) if r.endswith(":"))
    return Table(header, [list(r) for r in rows], right=right)


def _md_cell(cell: Cell) -> str:
    if isinstance(cell, Swatch):
        return (f'<span style="background:{cell.hex}">&nbsp;&nbsp;&nbsp;&nbsp;</span> '
                f"`{cell.hex}`")
    return cell.replace("|", "\\|")


def _md_block(block: Block) -> str:
    if isinstance(block, Fields):
        return "\n".join(f"- **{k}**: {v}" for k, v in block.items)
    if isinstance(block, Table):
        head = "| " + " | ".join(block.header) + " |"
        rule = "|" + "|".join("---:" if i in block.right else "---"
                              for i in range(len(block.header))) + "|"
        rows = ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.rows]
        return "\n".join([head, rule, *rows])
    if isinstance(block, Code):
        return f"```bash\n{block.text}\n```"
    if isinstance(block, Image):
        return f"![{block.alt}]({block.path})"
    return block.text


def card_markdown(card: Card) -> str:
    """Render a card as Markdown (GitHub-flavoured; colour squares as inline HTML)."""
    parts = [f"# {card.title}", ""]
    for section in card.sections:
        parts += [f"## {section.title}", ""]
        for block in section.blocks:
            parts += [_md_block(block), ""]
    return "\n".join(parts)


__all__ = ["card_markdown", "table_from_markdown"]
