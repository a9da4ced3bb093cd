"""Upstream LLMs behind the gateway: the built-in simulator and any OpenAI-compatible URL."""

from __future__ import annotations

from hif.config import GatewaySettings, SimulatorSettings
from hif.upstream.base import Upstream
from hif.upstream.client import OpenAIUpstream
from hif.upstream.simulator import Simulator

__all__ = ["OpenAIUpstream", "Simulator", "Upstream", "open_upstream"]


def open_upstream(settings: GatewaySettings, sim: SimulatorSettings) -> Upstream:
    """``--upstream sim`` gives the in-process simulator; a URL gives a pooled HTTP client."""
    if settings.upstream == "sim":
        return Simulator(sim)
    return OpenAIUpstream(
        settings.upstream,
        api_key=settings.upstream_api_key,
        timeout_s=settings.upstream_timeout_s,
        connect_timeout_s=settings.upstream_connect_timeout_s,
        max_connections=settings.upstream_max_connections,
    )
