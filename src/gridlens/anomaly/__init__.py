"""Consumption anomaly detection (seed S3)."""
