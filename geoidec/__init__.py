"""geoidec: class-incremental semantic segmentation for remote sensing (IDEC), with GIS-grade outputs."""

__version__ = "0.1.0"
