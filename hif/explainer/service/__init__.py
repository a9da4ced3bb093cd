"""``hif explainer``: the supervisor, its worker processes, each worker's queue consumer and job handler,
backpressure, the chaos fault wrappers and the metric events workers send to the supervisor."""
