"""A dataset's classes as users see them: :class:`ClassInfo` (name, display colour, code) and
the parsing of colours written in dataset YAML files."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from geoidec.errors import DataError


@dataclass(frozen=True)
class ClassInfo:
    """A class as users see it: a name, an RGB display colour and, optionally, its code.

    ``code`` is the pixel value of the class in predicted class maps (a user's own label
    code, e.g. forest = 5, from a dataset YAML); ``None`` means the model's output index is
    the code (ISPRS, VOC, ADE20K).
    """

    name: str
    color: tuple[int, int, int]
    code: int | None = None

    def hex(self) -> str:
        """Colour as ``#rrggbb``."""
        return "#{:02x}{:02x}{:02x}".format(*self.color)


def parse_color(value: str | Sequence[int], where: str) -> tuple[int, int, int]:
    """``"#1b7837"`` or ``[27, 120, 55]`` to an RGB tuple."""
    if isinstance(value, str):
        text = value.strip().lstrip("#")
        if len(text) == 6:
            try:
                return (int(text[0:2], 16), int(text[2:4], 16), int(text[4:6], 16))
            except ValueError:
                pass
    elif len(value) == 3 and all(isinstance(v, int) and 0 <= v <= 255 for v in value):
        return (int(value[0]), int(value[1]), int(value[2]))
    raise DataError(f"{where}: colour {value!r} is not '#rrggbb' or [r, g, b]")
