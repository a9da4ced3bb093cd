"""The ML pipeline behind the worker: subject model -> TopK SAE -> attribution -> graph JSON.

It implements :class:`hif.explainer.plan.Pipeline` (the objects it passes between stages are in
:mod:`hif.explainer.core.decoding`)::

    pipeline = load_pipeline(load_registry().resolve(None))
    plan = pipeline.default_plan("sentence")
    [extraction] = pipeline.extract([job], [plan])     # one forward pass for the batch
    decoding = pipeline.decode(extraction, plan)       # SAE codes, feature nodes per token/sentence
    attribution = pipeline.attribute(decoding, plan)   # gradient x activation (or .heuristic(...))
    graph = pipeline.graph(job, decoding, attribution, plan)

extract/decode run under ``torch.inference_mode``; attribute runs one more forward with the SAE
spliced into the hook layer, so the backward pass only covers the blocks after it.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from hif.errors import AttributionError, FeaturesetError
from hif.explainer.core import attribution as _attr
from hif.explainer.core import graph as _graph
from hif.explainer.core import inputs as _inputs
from hif.explainer.core.decoding import Decoding, Extraction, LayerCodes, NodeTable
from hif.explainer.core.model import SubjectModel, resolve_model_path
from hif.explainer.core.sae import TopKSAE
from hif.explainer.core.segments import Segment, segments
from hif.explainer.featureset import FeaturesetInfo
from hif.explainer.plan import GRADIENT, Plan
from hif.store.base import Job

log = logging.getLogger(__name__)

LABELS_FILE = "labels.json"
PAD_WASTE = 1.5  # a padded sub-batch holds sequences within 1.5x of its shortest one


class SAEPipeline:
    """Pipeline for one featureset: its subject model, its SAE(s) and their feature labels."""

    def __init__(
        self,
        info: FeaturesetInfo,
        subject: SubjectModel,
        saes: dict[int, TopKSAE],
        labels: dict[int, dict[str, Any]],
    ) -> None:
        self.featureset, self.subject, self.saes, self.labels = info, subject, saes, labels
        self._token_text: dict[int, str] = {}

    # --- plan ----------------------------------------------------------------------------------

    def default_plan(self, granularity: str) -> Plan:
        if granularity not in ("sentence", "token"):
            raise FeaturesetError(f"granularity must be 'sentence' or 'token', not {granularity!r}")
        info = self.featureset
        return Plan(
            granularity=granularity,
            top_k=info.k,
            layers=info.layers,
            max_nodes=info.max_nodes,
            max_edges=info.max_edges,
            max_bytes=info.max_graph_bytes,
            embedding_nodes=info.embedding_nodes,
        )

    # --- extract -------------------------------------------------------------------------------

    @torch.inference_mode()
    def extract(self, jobs: Sequence[Job], plans: Sequence[Plan]) -> list[Extraction]:
        """Tokenise every job, then one forward pass for the batch: packed (no padding) through
        written-out blocks when every plan is ``batched`` and the model allows it, else over
        length-sorted, lightly padded sub-batches (the one-job-at-a-time baseline's path). Batched
        plans also get the SAE's top k in one product for the whole batch."""
        encoded = [self.subject.encode(job.prompt, job.completion) for job in jobs]
        layers = sorted({layer for plan in plans for layer in plan.layers})
        hidden = None
        if plans and all(plan.batched for plan in plans):
            hidden = self.subject.capture_packed([e.input_ids for e in encoded], layers)
        if hidden is None:
            hidden = self._capture_padded([e.input_ids for e in encoded], layers)
        done = [
            Extraction(job=job, plan=plan, encoded=enc, hidden={layer: h[layer] for layer in plan.layers})
            for job, plan, enc, h in zip(jobs, plans, encoded, hidden, strict=True)
        ]
        for layer in layers:
            self._encode(layer, [e for e in done if layer in e.hidden and e.plan.batched])
        return done

    def _capture_padded(self, ids: list[list[int]], layers: list[int]) -> list[dict[int, torch.Tensor]]:
        out: list[dict[int, torch.Tensor]] = [{} for _ in ids]
        for group in _length_groups([len(i) for i in ids]):
            padded, mask = self.subject.pad([ids[i] for i in group])
            hidden = self.subject.capture(padded, mask, layers)
            for row, i in enumerate(group):
                out[i] = {layer: hidden[layer][row, : len(ids[i])] for layer in layers}
        return out

    def _encode(self, layer: int, extractions: list[Extraction]) -> None:
        """The SAE's top k at ``layer`` for a batch's jobs in one product: one matrix of all their
        rows costs ~25% less than one per job (on one CPU core); decode takes each job's share."""
        if not extractions:
            return
        sae = self.saes[layer]
        k = max(min(e.plan.top_k, sae.k) for e in extractions)
        values, indices = sae.topk(sae.pre_acts(torch.cat([e.hidden[layer] for e in extractions])), k=k)
        start = 0
        for e in extractions:
            n = len(e.hidden[layer])
            e.topk[layer] = (values[start : start + n], indices[start : start + n])
            start += n

    # --- decode --------------------------------------------------------------------------------

    @torch.inference_mode()
    def decode(self, extraction: Extraction, plan: Plan) -> Decoding:
        """SAE codes at each planned layer; feature nodes per token or summed per sentence."""
        enc = extraction.encoded
        content = ~torch.tensor(enc.special, dtype=torch.bool, device=self.subject.device)
        segs = segments(enc.text, enc.completion_char, enc.offsets, enc.special)
        codes, tables = {}, []
        for layer in plan.layers:
            sae = self.saes[layer]
            x = extraction.hidden[layer]
            # reduce-topk encodes with the smaller k: the latents it drops land in the error term,
            # so x == W_dec f + b_dec + error still holds and attribution has fewer codes to score.
            k = min(plan.top_k, sae.k)
            batch = extraction.topk.get(layer)
            if batch is not None and batch[0].shape[1] >= k:  # sorted: its first k are the top k
                values, indices = batch[0][:, :k], batch[1][:, :k]
            else:
                values, indices = sae.topk(sae.pre_acts(x), k=k)
            values = values * content[:, None]
            x_hat = sae.decode_sparse(values, indices) if plan.batched else _gathered(sae, values, indices)
            codes[layer] = LayerCodes(values, indices, x - x_hat)
            if plan.granularity == "token":
                tables.append(_token_nodes(layer, values, indices))
            else:
                tables.append(_segment_nodes(layer, values, indices, segs, sae.d_sae))
        return Decoding(extraction, plan.granularity, segs, codes, NodeTable.concat(tables), content)

    # --- attribution ---------------------------------------------------------------------------

    def attribute(self, decoding: Decoding, plan: Plan) -> _attr.Attribution:
        """Gradient x activation of every node on each target; AttributionError when it cannot run."""
        return _attr.gradient(self.subject, self.saes, decoding, plan)

    def attribute_batch(
        self, decodings: Sequence[Decoding], plans: Sequence[Plan]
    ) -> list[_attr.Attribution | AttributionError]:
        """``attribute`` for several jobs at once (shared forward and backward passes): per job, its
        attribution or the AttributionError that job alone would have raised."""
        return _attr.gradient_batch(self.subject, self.saes, list(decodings), list(plans))

    @torch.inference_mode()
    def heuristic(self, decoding: Decoding, plan: Plan) -> _attr.Attribution:
        """Activation x cos(decoder row, target direction): no backward pass."""
        return _attr.heuristic(self.subject, self.saes, decoding, plan)

    # --- graph ---------------------------------------------------------------------------------

    def graph(
        self, job: Job, decoding: Decoding, attribution: _attr.Attribution, plan: Plan
    ) -> dict[str, Any]:
        """The graph JSON; with gradient attribution, token -> feature edges into the strongest
        ``plan.embedding_nodes`` features first (batched forward and backward passes through the
        blocks below the hook layer, see core/inputs.py)."""
        return _graph.build(
            job,
            decoding,
            attribution,
            plan,
            featureset=self.featureset.name,
            labels=self.labels,
            tokens=self._token_strings(decoding),
            subject=self._subject(),
            embedding=self.embedding_links(decoding, attribution, plan),
        )

    def embedding_links(
        self, decoding: Decoding, attribution: _attr.Attribution, plan: Plan
    ) -> _inputs.EmbeddingLinks | None:
        if attribution.method != GRADIENT or plan.embedding_nodes <= 0 or not decoding.nodes:
            return None
        kept = _graph.kept_nodes(decoding, attribution, plan)
        effect = attribution.influence.tolist()
        try:
            return _inputs.embedding_links(
                self.subject, self.saes, decoding, kept, effect, plan.embedding_nodes
            )
        except (RuntimeError, ValueError, IndexError, KeyError) as exc:
            # The graph is still whole without its input links; it says they failed.
            log.warning("token -> feature links failed for %s: %s", decoding.extraction.job.trace_id, exc)
            return None

    def _subject(self) -> _graph.Subject:
        return _graph.Subject(
            name=self.featureset.model,
            kind=self.subject.kind,
            n_layers=self.subject.n_layers,
            vocab_size=len(self.subject.tokenizer),
        )

    def _token_strings(self, decoding: Decoding) -> list[str]:
        # Decoded text per token (as circuit-tracer writes prompt_tokens), not the vocabulary's spelling.
        # Each id is decoded alone, so its text never changes: the cache (at most the vocabulary)
        # spares the tokenizer's per-call overhead on every graph.
        cache = self._token_text
        for t in decoding.tokens:
            if t not in cache:
                cache[t] = self.subject.tokenizer.decode([t])
        return [cache[t] for t in decoding.tokens]


def _gathered(sae: TopKSAE, values: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """``sae.decode_sparse`` as the one-job-at-a-time path computed it before batching (the k decoder
    rows gathered, then summed): kept so that path, the bench's baseline, is that code's own cost."""
    return torch.einsum("...k,...kd->...d", values, sae.W_dec[indices]) + sae.b_dec


def _length_groups(lengths: Sequence[int]) -> list[list[int]]:
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    groups: list[list[int]] = []
    for i in order:
        if groups and lengths[i] <= PAD_WASTE * lengths[groups[-1][0]]:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def _token_nodes(layer: int, values: torch.Tensor, indices: torch.Tensor) -> NodeTable:
    pos, slot = torch.nonzero(values > 0, as_tuple=True)
    return _table(layer, indices[pos, slot], pos, values[pos, slot])


def _segment_nodes(
    layer: int, values: torch.Tensor, indices: torch.Tensor, segs: list[Segment], d_sae: int
) -> NodeTable:
    """One node per latent that fires in a segment, with its activation summed over the segment's
    tokens. Every one is a candidate: the graph keeps the strongest by attributed effect, not by
    activation, so a weakly active latent that matters is not cut before it is scored."""
    summed = _attr.segment_sum(values, indices, segs, d_sae)  # [n_seg, d_sae]
    seg_idx, latent = torch.nonzero(summed > 0, as_tuple=True)
    return _table(layer, latent, seg_idx, summed[seg_idx, latent])


def _table(layer: int, feature: torch.Tensor, ctx: torch.Tensor, activation: torch.Tensor) -> NodeTable:
    return NodeTable(
        torch.full_like(feature, layer, device="cpu"),
        feature.cpu(),
        ctx.cpu(),
        activation.detach().float().cpu(),
    )


def _sae_folder(info: FeaturesetInfo, layer: int) -> Path:
    if info.sae_path is None:
        raise FeaturesetError(f"featureset {info.name!r} has no SAE path")
    # One layer: the SAE sits in sae_path; several: sae_path/layer_<L>/ each.
    return info.sae_path if len(info.layers) == 1 else info.sae_path / f"layer_{layer}"


def _labels(folder: Path) -> dict[str, Any]:
    try:
        return dict(json.loads((folder / LABELS_FILE).read_text()))
    except (OSError, ValueError):
        return {}  # labels are a nicety: a graph without clerps is still a graph


def _set_threads(threads: int | None) -> None:
    wanted = threads or int(os.environ.get("HIF_TORCH_THREADS") or 0) or min(4, os.cpu_count() or 1)
    if torch.get_num_threads() != wanted:
        torch.set_num_threads(wanted)


def load_pipeline(info: FeaturesetInfo, *, device: str = "auto", threads: int | None = None) -> SAEPipeline:
    """The pipeline serving ``info`` (CUDA when available). FeaturesetError when it cannot be served."""
    if not info.available:
        raise FeaturesetError(f"featureset {info.name!r} is not served here ({info.reason})")
    _set_threads(threads)
    subject = SubjectModel(resolve_model_path(info.model), info.model_kind, device=device)
    saes, labels = {}, {}
    for layer in info.layers:
        folder = _sae_folder(info, layer)
        sae = TopKSAE.load(folder, device=subject.device)
        if sae.d_in != subject.d_model:
            raise FeaturesetError(f"SAE at {folder} has d_in {sae.d_in}, model width is {subject.d_model}")
        saes[layer], labels[layer] = sae, _labels(folder)
    return SAEPipeline(info, subject, saes, labels)


__all__ = ["SAEPipeline", "load_pipeline"]
