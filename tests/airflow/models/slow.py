"""A model that takes a minute to load: its deployment stays PENDING for as long as a test needs."""

from __future__ import annotations

import time
from typing import Any

time.sleep(60)


class Identity:
    def predict(self, data: Any) -> Any:
        return data


model = Identity()
