"""The ``v2`` target: models on a server that speaks the Open Inference Protocol (V2), such as KServe,
Triton, MLServer and Seldon Core 2.

URIs: ``v2+http://host:port`` and ``v2+https://host[:port][/prefix]``, the server's address. The
server holds many models; each is a deployment, named ``"model"`` or ``"model@version"``.

* :meth:`~V2DeploymentClient.predict` posts to ``/v2/models/{model}[/versions/{v}]/infer``. Inputs and
  answers go through :mod:`deployflow.openinference`: a DataFrame travels as one input per column
  (MLServer's ``"pd"`` content type), an array as one tensor of its datatype and shape, a dict of
  arrays as one tensor per key, a V2 request dict as it is; the answer's outputs come back by name.
* :meth:`~V2DeploymentClient.deployment_status` reads the model's ``ready`` route; a model that is
  still loading is PENDING, and so is MLServer's ``400 Model ... is not ready yet.`` answer to a
  request, which is raised as a retryable :class:`~deployflow.errors.TransientError`.
* The server's ``{"error": "..."}`` answers become deployflow errors through the one translator
  (:mod:`deployflow.http_errors`): 400 InvalidInputError, 404 NotFoundError, and so on.
* Create, update and delete load, reload and unload a model through the repository extension
  (``/v2/repository/models/{model}/load|unload``) when the server offers it, and raise
  :class:`~deployflow.errors.NotSupportedError` otherwise.
"""

from __future__ import annotations

from .client import V2DeploymentClient, run_local, target_help

__all__ = ["V2DeploymentClient", "run_local", "target_help"]
