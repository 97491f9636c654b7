"""Layer 5: scoring reconstructions on held-out views (metrics, error maps)."""
