"""Reading a deployment server's or a router's ``GET /metrics`` in tests."""

from __future__ import annotations

import requests
from prometheus_client.parser import text_string_to_metric_families


def scrape(url: str, token: str | None = None) -> dict[str, list]:
    """The samples of each metric family at ``url`` + ``/metrics``, by family name."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    answer = requests.get(url + "/metrics", headers=headers, timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    return {family.name: family.samples for family in text_string_to_metric_families(answer.text)}


def value(samples: list, **labels: str) -> float:
    """The sum of the samples whose labels include ``labels``."""
    return sum(s.value for s in samples if all(s.labels.get(k) == v for k, v in labels.items()))
