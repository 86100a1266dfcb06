"""A model card as plain data: a title and sections of blocks (fields, tables, text, code,
images). :mod:`geoidec.runs.model_card` builds one, :mod:`geoidec.runs.card_markdown` renders
it as ``RUN/model_card.md`` and ``geoidec info`` (cli/info.py) as rich tables, so both say
the same."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Swatch:
    """A class colour (``#rrggbb``), drawn as a small square where the renderer can."""

    hex: str


Cell = str | Swatch


@dataclass
class Fields:
    """``name: value`` lines."""

    items: list[tuple[str, str]]


@dataclass
class Table:
    """A table; ``right`` lists the columns aligned right (numbers)."""

    header: list[str]
    rows: list[list[Cell]]
    right: tuple[int, ...] = ()


@dataclass
class Text:
    text: str


@dataclass
class Code:
    text: str


@dataclass
class Image:
    """A figure, ``path`` relative to the run folder."""

    alt: str
    path: str


Block = Fields | Table | Text | Code | Image


@dataclass
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)


@dataclass
class Card:
    """A model card as data: a title, the folder figure paths are relative to, sections."""

    title: str
    sections: list[Section]
    base: Path | None = None


__all__ = ["Block", "Card", "Cell", "Code", "Fields", "Image", "Section", "Swatch", "Table",
           "Text"]
