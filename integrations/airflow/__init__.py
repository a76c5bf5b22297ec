"""An Airflow provider for deployflow (``pip install 'deployflow[airflow]'``)."""
