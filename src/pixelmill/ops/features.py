"""features ops."""
