"""Data layer: the renal phantom, ingest (decode once into a uint8 cache), validation and splits."""
