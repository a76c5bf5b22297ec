"""Stand-in for the ``mlflow`` package (tests only): just enough for a deployment plugin to import."""
