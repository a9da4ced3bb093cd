"""The OpenAI-compatible gateway: ASGI app (:mod:`hif.gateway.app`), chat and trace routes, RBAC
(:mod:`hif.gateway.auth`), the Interceptor that enqueues explanation jobs
(:mod:`hif.gateway.interceptor`) and the runner (:mod:`hif.gateway.server`; the HTTP server itself
is :mod:`hif.asgi_server`).

``hif gateway`` (:mod:`hif.gateway._cli`) runs it alone; ``hif serve`` runs it with the explainer.
"""
