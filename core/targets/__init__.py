"""Built-in deployment targets. Each is found through :mod:`deployflow.registry`, never imported directly."""
