"""A model file that cannot be imported: the local target's server fails to start with it.

It fails a few seconds into loading, as a real model whose weights are fetched first would, so a sensor
that starts right after the create sees the deployment PENDING before it sees it FAILED.
"""

import time

time.sleep(3)
raise RuntimeError("model weights missing: churn-v7.bin was never uploaded")
