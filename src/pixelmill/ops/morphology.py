"""morphology ops."""
