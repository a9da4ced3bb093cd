"""Upstream LLMs behind the gateway: the built-in simulator and any OpenAI-compatible URL."""

from __future__ import annotations

from hif.upstream.base import Upstream
from hif.upstream.client import OpenAIUpstream
from hif.upstream.simulator import Simulator

__all__ = ["OpenAIUpstream", "Simulator", "Upstream"]
