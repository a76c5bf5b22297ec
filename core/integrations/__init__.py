"""Pipeline integrations: ``deployflow.integrations.prefect`` and ``deployflow.integrations.airflow``."""
