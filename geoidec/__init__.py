"""geoidec: class-incremental segmentation for remote sensing (IDEC), GIS-grade outputs."""

__version__ = "0.1.0"
