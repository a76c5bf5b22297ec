"""deployflow: deploy models, wait until they serve, and score data against them."""
