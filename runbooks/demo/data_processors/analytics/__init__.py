"""Phase 3 analytics processors."""
