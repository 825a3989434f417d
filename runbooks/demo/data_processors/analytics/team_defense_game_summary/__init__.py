"""Team defense game summary (phase 3)."""
