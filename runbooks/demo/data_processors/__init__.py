"""Simulated processors of the demo NBA analytics pipeline."""
