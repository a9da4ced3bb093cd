"""HIF: prove that an LLM gateway with an interpretability sidecar holds its SLOs under load, soak, chaos."""

__version__ = "0.1.0"
