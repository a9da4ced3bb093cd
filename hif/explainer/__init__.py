"""The explainer: attribution graphs for chat completions, computed off the request path.

This package's root holds the torch-free contracts that the gateway and the explainer service share
(importing it never imports torch):

- :mod:`~hif.explainer.featureset`: the featureset registry (which model, layers and SAE a name means);
- :mod:`~hif.explainer.plan`: a job's :class:`Plan`, the degradation ladder's rungs and the
  :class:`Pipeline` protocol the service drives;
- :mod:`~hif.explainer.settings`: the ``hif explainer`` settings and the explanation budgets.

The rest is reached through its sub-packages: ``core`` (subject model, TopK SAE, attribution, graph,
the pipeline; torch), ``service`` (queue consumer, job handler, supervisor, backpressure; ``hif
explainer``) and ``training`` (SAE training and evaluation; ``hif featureset``).

>>> from hif.explainer import load_registry
>>> load_registry().default
'sae-minilm-l6-res4-4k'
"""

from hif.explainer.featureset import FeaturesetInfo, Registry, load_registry
from hif.explainer.plan import (
    CAP_NODES,
    DOWNGRADE_GRANULARITY,
    EXPIRE_EARLY,
    GRADIENT,
    HEURISTIC,
    HEURISTIC_ATTRIBUTION,
    LADDER,
    REDUCE_LAYERS,
    REDUCE_TOPK,
    SHED,
    Pipeline,
    Plan,
)
from hif.explainer.settings import DEFAULT_PIPELINE_LOADER, ExplainerSettings, FeaturesetSettings, SlaSettings

__all__ = [
    "CAP_NODES",
    "DEFAULT_PIPELINE_LOADER",
    "DOWNGRADE_GRANULARITY",
    "EXPIRE_EARLY",
    "GRADIENT",
    "HEURISTIC",
    "HEURISTIC_ATTRIBUTION",
    "LADDER",
    "REDUCE_LAYERS",
    "REDUCE_TOPK",
    "SHED",
    "ExplainerSettings",
    "FeaturesetInfo",
    "FeaturesetSettings",
    "Pipeline",
    "Plan",
    "Registry",
    "SlaSettings",
    "load_registry",
]
