"""renalmae: ultrasound MAE pretraining and renal anomaly classification as a reproducible pipeline."""

__version__ = "0.1.0"
