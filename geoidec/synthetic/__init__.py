"""Procedural ISPRS-Potsdam-like sample scenes, written in the exact layout of the real release.

The generator paints a plausible small urban scene per tile (roads with sidewalks and lane
markings, gabled and flat-roofed buildings with cast shadows, lawns, tree crowns, parked cars
and clutter such as bins, containers and heaps), renders it to R, G, B and near-infrared
bands, and writes the five Potsdam folders::

    out/1_DSM/dsm_potsdam_{rr}_{cc}.tif              float32 surface heights (m)
    out/2_Ortho_RGB/top_potsdam_{r}_{c}_RGB.tif      uint8 R,G,B
    out/3_Ortho_IRRG/top_potsdam_{r}_{c}_IRRG.tif    uint8 IR,R,G
    out/4_Ortho_RGBIR/top_potsdam_{r}_{c}_RGBIR.tif  uint8 R,G,B,IR
    out/5_Labels_all/top_potsdam_{r}_{c}_label.tif   uint8 RGB colour labels

All rasters are north-up in EPSG:32633 on a grid where neighbouring tile names are
neighbours on the ground. Object sizes are in metres (a car is about 4.5 x 2 m) and are
converted to pixels with a floor of a few pixels, so the same code serves 5 cm and 1 m
samples. Generation uses only numpy and rasterio and is deterministic for a given seed.
"""

from geoidec.synthetic.isprs import generate_isprs_sample

__all__ = ["generate_isprs_sample"]
