"""Fake services on 127.0.0.1 that follow the public APIs deployflow's HTTP targets talk to.

* :mod:`fakes.databricks`: Databricks Model Serving (serving-endpoints REST API, asynchronous state
  transitions, Databricks error bodies, invocations with streaming, and the workspace's OAuth side:
  OIDC discovery and the ``/oidc/v1/token`` client-credentials grant that service principals use);
* :mod:`fakes.gateway`: the MLflow deployments server / AI gateway (paginated endpoint listing, queries,
  streaming);
* :mod:`fakes.openai`: an OpenAI-compatible server, with Azure OpenAI's routes (chat, completions,
  embeddings, models, streaming);
* :mod:`fakes.scoring`: a model server speaking MLflow's scoring protocol (``/ping``, ``/invocations``),
  optionally behind a bearer token, for the ``serving`` target's credential tests.

Each is a real HTTP server (``ThreadingHTTPServer`` in a background thread on port 0), never a patch of
deployflow's own code. :mod:`fakes.base` has the machinery they share: request log, injected faults
(status, body, ``Retry-After``), JSON and server-sent-event answers.
"""
