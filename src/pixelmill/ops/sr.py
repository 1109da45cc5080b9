"""Super-resolution ops (the ``super_resolve`` op is declared here; models live in pixelmill.sr)."""
