"""Feature cards: what one SAE latent is, read from its featureset's files (torch-free, for the gateway).

A card gathers, for latent ``index`` of the SAE at ``layer``, what ``labels.json`` next to the SAE
weights holds: the label, the label's score on held-out text where the labelling step stored one
(``score``; ``null`` marks an unscored label), the top activating contexts with the activating
token marked (``[[token]]`` in the stored text), and an activation histogram where one is stored::

    card = FeatureCards(registry).card("sae-minilm-l6-res4-4k", 4, 17)
    card["label"], card["contexts"][0]["before"], card["contexts"][0]["token"]
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

from hif.errors import NotFoundError
from hif.explainer.featureset import FeaturesetInfo, Registry

LABELS_FILE = "labels.json"
_MARK = re.compile(r"\[\[(.*?)\]\]")


def layer_folder(info: FeaturesetInfo, layer: int) -> Path | None:
    """Where the SAE of ``layer`` lives: sae_path itself (one layer), else sae_path/layer_<L>/."""
    if info.sae_path is None:
        return None
    return info.sae_path if len(info.layers) == 1 else info.sae_path / f"layer_{layer}"


def _context(text: str) -> dict[str, str]:
    """Split a stored context at its marked token: before, token, after (plain text, unescaped)."""
    match = _MARK.search(text)
    if match is None:
        return {"before": text, "token": "", "after": ""}
    return {"before": text[: match.start()], "token": match.group(1), "after": text[match.end() :]}


class FeatureCards:
    """Cards for the featuresets of one registry; each layer's labels file is read once."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._labels = functools.lru_cache(maxsize=8)(self._read)

    @staticmethod
    def _read(folder: Path) -> dict[str, Any]:
        try:
            return dict(json.loads((folder / LABELS_FILE).read_text()))
        except (OSError, ValueError):
            return {}

    def card(self, name: str, layer: int, index: int) -> dict[str, Any]:
        """The card, or NotFoundError when the featureset, layer or latent does not exist here."""
        info = self.registry.featuresets.get(name)
        if info is None or not info.available:
            raise NotFoundError(f"no featureset {name!r} is served here", code="featureset_not_found")
        folder = layer_folder(info, layer)
        if layer not in info.layers or folder is None:
            raise NotFoundError(f"featureset {name!r} has no layer {layer}", code="feature_not_found")
        if not 0 <= index < info.latents:
            raise NotFoundError(f"featureset {name!r} has no latent {index}", code="feature_not_found")
        entry = self._labels(folder).get(str(index)) or {}
        histogram = entry.get("histogram")
        return {
            "object": "feature",
            "featureset": name,
            "layer": layer,
            "index": index,
            "label": entry.get("label") or None,
            "label_score": entry.get("score"),
            "max_activation": entry.get("max_activation"),
            "contexts": [_context(str(c)) for c in entry.get("contexts") or []],
            "histogram": histogram if isinstance(histogram, dict) else None,
        }


__all__ = ["FeatureCards", "layer_folder"]
