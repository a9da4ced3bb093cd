"""Attribution of SAE features to targets: gradient x activation, and the no-backward heuristic.

Gradient: the SAE is spliced into the hook layer as ``x' = W_dec f + b_dec + e`` where the codes
``f`` and the reconstruction error ``e`` are leaves, so ``x' == x`` and the forward is unchanged;
one backward per target gives ``f * df`` (feature nodes) and ``e . de`` (error nodes). Targets:

- encoder: cosine similarity of each completion sentence's mean-pooled embedding to the prompt's;
- causal LM: the logit of each produced token (token granularity, first ``MAX_TOKEN_TARGETS``),
  or their mean per completion sentence (sentence granularity).

Heuristic: ``activation * cos(decoder row, target direction)``, where the direction is the prompt's
mean residual (encoder) or the produced token's unembedding row (causal LM).
"""

from __future__ import annotations

import dataclasses
import logging

import torch
import torch.nn.functional as F

from hif.errors import AttributionError
from hif.explainer.core import lastblock
from hif.explainer.core.decoding import Decoding
from hif.explainer.core.edges import EDGES_PER_NODE, feature_edges
from hif.explainer.core.model import ENCODER, SubjectModel
from hif.explainer.core.sae import TopKSAE, splice
from hif.explainer.core.segments import COMPLETION, PROMPT, Segment
from hif.explainer.plan import GRADIENT, HEURISTIC, Plan

log = logging.getLogger(__name__)

MAX_TOKEN_TARGETS = 16
MAX_EDGE_TARGETS = 16  # upper-layer nodes whose incoming feature edges are computed (one backward each)
MAX_ROW_TOKENS = 8192  # batched attribution: most targets x jobs x padded tokens in one pass
PAD_WASTE = 1.5  # batched attribution: padded work within 1.5x of the work the jobs need


@dataclasses.dataclass(frozen=True, slots=True)
class Target:
    label: str
    ctx_idx: int  # token position or segment index the target belongs to
    positions: tuple[int, ...]  # token positions whose state defines it
    token: int | None = None  # produced token id (causal LM)
    value: float = 0.0
    prob: float | None = None  # causal LM: the target token's probability (mean over a sentence's tokens)


@dataclasses.dataclass(slots=True)
class Attribution:
    method: str  # GRADIENT | HEURISTIC
    targets: list[Target]
    node_scores: torch.Tensor  # [n_nodes, n_targets], nodes in Decoding.nodes order
    error_scores: dict[int, torch.Tensor]  # layer -> [n_ctx, n_targets] (ctx = token or segment)
    feature_edges: list[tuple[int, int, float]] = dataclasses.field(default_factory=list)

    @property
    def influence(self) -> torch.Tensor:
        """Each node's total signed effect on all targets."""
        return self.node_scores.sum(-1)


# --- targets -----------------------------------------------------------------------------------


def target_specs(decoding: Decoding, kind: str) -> list[Target]:
    segs, ids = decoding.segments, decoding.tokens
    completion = [s for s in segs if s.role == COMPLETION]
    if kind == ENCODER:
        chosen = completion or segs
        return [Target(f"sim(sentence {s.index}, prompt)", s.index, s.positions) for s in chosen]
    produced = [p for s in completion for p in s.positions if p >= 1]
    if decoding.granularity == "token" or not completion:
        picked = produced[:MAX_TOKEN_TARGETS] or [len(ids)]  # len(ids): the next token after the text
        return [Target(f"logit@{p}", p, (p,), ids[p] if p < len(ids) else None) for p in picked]
    return [
        Target(f"mean logit(sentence {s.index})", s.index, tuple(p for p in s.positions if p >= 1))
        for s in completion
        if any(p >= 1 for p in s.positions)
    ]


def _reference_positions(segs: list[Segment]) -> list[int]:
    prompt = [p for s in segs if s.role == PROMPT for p in s.positions]
    return prompt or [p for s in segs for p in s.positions]


def target_values(
    out: torch.Tensor, targets: list[Target], decoding: Decoding, kind: str
) -> list[torch.Tensor]:
    """Scalar target tensors from the model output (last hidden state or logits)."""
    if kind == ENCODER:
        ref = out[_reference_positions(decoding.segments)].mean(0)
        return [F.cosine_similarity(out[list(t.positions)].mean(0), ref, dim=0) for t in targets]
    ids = torch.tensor(decoding.tokens, device=out.device)
    values = []
    for t in targets:
        if t.token is None:  # next token after the text: the model's own choice
            values.append(out[-1].max())
            continue
        pos = torch.tensor(t.positions, device=out.device)
        values.append(out[pos - 1, ids[pos]].mean())
    return values


def target_probs(out: torch.Tensor, targets: list[Target], decoding: Decoding) -> list[float]:
    """Causal LM: each target's token probability under teacher forcing (a sentence's mean)."""
    probs = out.detach().float().softmax(-1)
    ids = decoding.tokens
    found = []
    for t in targets:
        if t.token is None and len(t.positions) == 1 and t.positions[0] >= len(ids):
            found.append(float(probs[-1].max()))  # the model's own next-token choice
            continue
        pos = [p for p in t.positions if 1 <= p < len(ids)]
        found.append(float(sum(probs[p - 1, ids[p]] for p in pos) / len(pos)) if pos else 0.0)
    return found


def readout(subject: SubjectModel, decoding: Decoding, targets: list[Target]) -> list[Target]:
    """The targets with their values (and causal-LM probabilities) from one plain forward pass."""
    ids = torch.tensor([decoding.tokens], device=subject.device)
    with torch.inference_mode():
        out = subject.run_replaced(ids, {})
        values = [float(v) for v in target_values(out, targets, decoding, subject.kind)]
        probs = target_probs(out, targets, decoding) if subject.kind != ENCODER else [None] * len(targets)
    return [dataclasses.replace(t, value=v, prob=p) for t, v, p in zip(targets, values, probs, strict=True)]


# --- aggregation -------------------------------------------------------------------------------


def _groups(decoding: Decoding) -> torch.Tensor:
    """Per token: its ctx index (itself at token granularity, its segment otherwise; -1 = none)."""
    n = len(decoding.tokens)
    if decoding.granularity == "token":
        group = torch.arange(n)
        group[~decoding.content.cpu()] = -1
        return group
    group = torch.full((n,), -1, dtype=torch.long)
    for seg in decoding.segments:
        group[list(seg.positions)] = seg.index
    return group


def segment_sum(values: torch.Tensor, indices: torch.Tensor, segs: list[Segment], d_sae: int) -> torch.Tensor:
    """Per segment, per latent: summed activation over the segment's tokens -> [n_seg, d_sae]."""
    out = values.new_zeros(len(segs), d_sae)
    for seg in segs:
        pos = list(seg.positions)
        out[seg.index].index_add_(0, indices[pos].flatten(), values[pos].flatten())
    return out


def _node_scores(
    per_token: torch.Tensor,
    indices: torch.Tensor,
    group: torch.Tensor,
    d_sae: int,
    want: torch.Tensor,
) -> torch.Tensor:
    """Sum [n_t, T, k] contributions into nodes keyed ``ctx * d_sae + feature`` (``want``, [n]) ->
    [n, n_t]."""
    n_t = per_token.shape[0]
    if want.numel() == 0:
        return per_token.new_zeros(0, n_t).cpu()
    keep = group >= 0
    keys = (group[keep][:, None] * d_sae + indices[keep].cpu()).flatten()
    contrib = per_token[:, keep].reshape(n_t, -1).cpu()
    uniq, inverse = torch.unique(keys, return_inverse=True)
    summed = contrib.new_zeros(n_t, len(uniq)).index_add_(1, inverse, contrib)
    where = torch.searchsorted(uniq, want).clamp_max(len(uniq) - 1)
    found = uniq[where] == want
    return (summed[:, where] * found).t()


def _error_scores(per_token: torch.Tensor, group: torch.Tensor, n_ctx: int) -> torch.Tensor:
    """Sum [n_t, T] error contributions per ctx -> [n_ctx, n_t]."""
    keep = group >= 0
    out = per_token.new_zeros(per_token.shape[0], n_ctx).cpu()
    out.index_add_(1, group[keep], per_token[:, keep].cpu())
    return out.t()


def _assemble(
    method: str,
    decoding: Decoding,
    targets: list[Target],
    per_layer: dict[int, tuple[torch.Tensor, torch.Tensor]],
    d_sae: dict[int, int],
) -> Attribution:
    group = _groups(decoding)
    n_ctx = len(decoding.tokens) if decoding.granularity == "token" else len(decoding.segments)
    scores = torch.zeros(len(decoding.nodes), len(targets))
    errors = {}
    nodes = decoding.nodes
    for layer, (feat_tok, err_tok) in per_layer.items():
        mine = nodes.at_layer(layer)
        if mine.numel():
            want = nodes.ctx_idx[mine] * d_sae[layer] + nodes.feature[mine]
            scores[mine] = _node_scores(feat_tok, decoding.codes[layer].indices, group, d_sae[layer], want)
        # Error nodes hold the SAE's reconstruction error only. Every active latent is a node here
        # (a sentence node per latent firing in the sentence), so what the graph later prunes is
        # still a feature's effect, reported as pruned rather than passed off as SAE error.
        errors[layer] = _error_scores(err_tok, group, n_ctx)
    return Attribution(method, targets, scores, errors)


# --- gradient ----------------------------------------------------------------------------------


def gradient_layer(
    subject: SubjectModel, sae: TopKSAE, decoding: Decoding, layer: int, targets: list[Target]
) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    codes = decoding.codes[layer]
    ids = torch.tensor([decoding.tokens], device=subject.device)
    leaves: dict[str, torch.Tensor] = {}
    rewrite = splice(sae, codes.values.clone(), codes.indices.clone(), leaves)
    with torch.enable_grad():
        out = subject.run_replaced(ids, {layer: rewrite})
        values = target_values(out, targets, decoding, subject.kind)
        feat, err = [], []
        for i, value in enumerate(values):
            g_codes, g_err = torch.autograd.grad(
                value, [leaves["codes"], leaves["error"]], retain_graph=i + 1 < len(values)
            )
            feat.append(leaves["codes"].detach() * g_codes)
            err.append((leaves["error"].detach() * g_err).sum(-1))
    return torch.stack(feat), torch.stack(err), [float(v.detach()) for v in values]


def gradient(subject: SubjectModel, saes: dict[int, TopKSAE], decoding: Decoding, plan: Plan) -> Attribution:
    """Gradient x activation; each layer is spliced in its own forward pass (its total effect)."""
    trace_id = decoding.extraction.job.trace_id
    try:
        targets = target_specs(decoding, subject.kind)
        if not targets:
            raise AttributionError("no target to attribute to", trace_id=trace_id)
        job = _Job(decoding, plan, targets)
        for layer in plan.layers:
            feat, err, job.values = gradient_layer(subject, saes[layer], decoding, layer, targets)
            job.per_layer[layer] = (feat, err)
        return _finish(subject, saes, job)
    except AttributionError:
        raise
    except (RuntimeError, ValueError, IndexError, KeyError) as exc:
        raise AttributionError(f"gradient attribution failed: {exc}", trace_id=trace_id) from exc


# --- gradient, batched across jobs -------------------------------------------------------------
#
# Jobs share one padded batch: row b holds job b's hook-layer codes and error as leaves and runs
# only the blocks above the hook layer (``run_from``, from the residual stream extraction already
# captured). Rows never mix (attention is per row and masked to its own tokens) and each target
# reads only its own row's outputs, so the sum over jobs of their j-th targets has, in row b, the
# gradient of job b's j-th target alone. One forward and n_t backward passes (n_t: the most
# targets of a job in the batch) give every job's every target: the numbers ``gradient`` gets
# from a full forward per job and a backward per target per job.
#
# Where the only block above the hook layer is a BERT encoder's last one (the shipped featuresets'
# layer 4), it runs written out instead (``lastblock``): rows packed without padding, and each
# target's backward only on the rows it reads (its sentence and the prompt), all targets in one
# stacked pass. Same numbers (tests compare the two); 1.6x less CPU on the bench's mix
# (bench/explainer_stages.py).


@dataclasses.dataclass(slots=True, eq=False)
class _Job:
    decoding: Decoding
    plan: Plan
    targets: list[Target]
    per_layer: dict[int, tuple[torch.Tensor, torch.Tensor]] = dataclasses.field(default_factory=dict)
    values: list[float] = dataclasses.field(default_factory=list)


def _padded(rows: list[torch.Tensor], width: int, fill: float | int = 0) -> torch.Tensor:
    out = rows[0].new_full((len(rows), width, *rows[0].shape[1:]), fill)
    for r, row in enumerate(rows):
        out[r, : len(row)] = row
    return out


def gradient_rows(
    subject: SubjectModel, sae: TopKSAE, layer: int, jobs: list[_Job], *, written_out: bool = True
) -> None:
    """One forward for ``jobs`` at ``layer`` and one backward per target index, shared by the jobs;
    through the written-out last block where it applies (``written_out``), else through autograd."""
    block = _written_out(subject, layer) if written_out else None
    if block is not None:
        _written_rows(sae, layer, jobs, block)
        return
    lengths = [len(job.decoding.tokens) for job in jobs]
    width = max(lengths)
    codes = [job.decoding.codes[layer] for job in jobs]
    values = _padded([c.values for c in codes], width)
    indices = _padded([c.indices for c in codes], width)
    x = _padded([job.decoding.extraction.hidden[layer] for job in jobs], width)
    ids = _padded([torch.tensor(job.decoding.tokens, device=subject.device) for job in jobs], width)
    mask = (
        torch.arange(width, device=subject.device)[None]
        < torch.tensor(lengths, device=subject.device)[:, None]
    ).long()
    n_t = max(len(job.targets) for job in jobs)
    with torch.enable_grad():
        leaf = values.clone().requires_grad_(True)
        flat = F.embedding_bag(
            indices.flatten(0, 1), sae.W_dec, per_sample_weights=leaf.flatten(0, 1), mode="sum"
        )
        x_hat = flat.view(x.shape) + sae.b_dec
        error = (x - x_hat).detach().requires_grad_(True)
        out = subject.run_from(layer, x_hat + error, ids.masked_fill(mask == 0, subject.pad_id), mask)
        per_job = [
            target_values(out[b, :n], job.targets, job.decoding, subject.kind)
            for b, (job, n) in enumerate(zip(jobs, lengths, strict=True))
        ]
        # Target j of every job, summed: row b's share of its gradient is job b's target j alone.
        summed = torch.stack(
            [sum((v[j] for v in per_job if j < len(v)), out.new_zeros(())) for j in range(n_t)]
        )
        # One backward per target index over the whole batch. (A vmapped backward, is_grads_batched,
        # gives the same numbers but measured slower on CPU; see bench/explainer_stages.py.)
        grads = [torch.autograd.grad(summed[j], [leaf, error], retain_graph=j + 1 < n_t) for j in range(n_t)]
    g_codes, g_err = torch.stack([g[0] for g in grads]), torch.stack([g[1] for g in grads])
    feat, err = leaf.detach() * g_codes, (error.detach() * g_err).sum(-1)  # [n_t, B, T, k], [n_t, B, T]
    for b, (job, n) in enumerate(zip(jobs, lengths, strict=True)):
        m = len(job.targets)
        job.per_layer[layer] = (feat[:m, b, :n], err[:m, b, :n])
        job.values = [float(v.detach()) for v in per_job[b]]


def _written_out(subject: SubjectModel, layer: int) -> lastblock.BertBlock | None:
    """The block above ``layer`` written out, when it is the model's last and a plain BERT block."""
    if subject.kind != ENCODER or layer != subject.n_layers - 2:
        return None
    if not lastblock.is_last(subject.model, subject.blocks[-1]):
        return None
    return subject.written_block(subject.n_layers - 1)


def _written_rows(sae: TopKSAE, layer: int, jobs: list[_Job], block: lastblock.BertBlock) -> None:
    """``gradient_rows`` through the written-out last block: the jobs' rows packed (no padding), each
    target's backward only on the rows it reads (see :mod:`hif.explainer.core.lastblock`)."""
    lengths = [len(job.decoding.tokens) for job in jobs]
    codes = [job.decoding.codes[layer] for job in jobs]
    with torch.no_grad():
        saved = lastblock.forward(
            block, torch.cat([j.decoding.extraction.hidden[layer] for j in jobs]), lengths
        )
    grads, per_job_values = _pooled_cosine_grads(saved.out, jobs, saved.spans)
    with torch.no_grad():
        dx = lastblock.backward(block, saved, grads)  # [n_t, N, d]
    # x' = W_dec f + b_dec + e: d target / d f[t, s] = W_dec[index] . dx[t], d target / d e = dx.
    # embedding_bag's backward takes those dot products without gathering the rows ([N, k, d]).
    values = torch.cat([c.values for c in codes])
    leaf = values.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        x_hat = F.embedding_bag(
            torch.cat([c.indices for c in codes]), sae.W_dec, per_sample_weights=leaf, mode="sum"
        )
        g_codes = [torch.autograd.grad(x_hat, leaf, d, retain_graph=True)[0] for d in dx]
    feat = values * torch.stack(g_codes)  # [n_t, N, k]
    err = (torch.cat([c.error for c in codes]) * dx).sum(-1)
    for job, (lo, hi), v in zip(jobs, saved.spans, per_job_values, strict=True):
        m = len(job.targets)
        job.per_layer[layer] = (feat[:m, lo:hi], err[:m, lo:hi])
        job.values = v


def _pooled_cosine_grads(
    out: torch.Tensor, jobs: list[_Job], spans: list[tuple[int, int]]
) -> tuple[torch.Tensor, list[list[float]]]:
    """The encoder targets of ``target_values`` (each sentence's mean-pooled output, cosine to the
    prompt's) for every job at once: ([n_t, N, d] each target index's gradient with respect to the
    packed output, per job its target values). One pooling product for all jobs instead of a few
    small ops per target keeps the autograd graph a handful of nodes."""
    n_t = max(len(job.targets) for job in jobs)
    pool_rows: list[int] = []  # the pooling matrix's entries: row, column (packed output row), weight
    pool_cols: list[int] = []
    pool_w: list[float] = []
    target_of: list[int] = []  # per target: its pooled row, its reference's, its index in its job
    ref_of: list[int] = []
    index: list[int] = []
    first = 0  # a job's first pooled row: its targets', then its reference's
    for job, (lo, _) in zip(jobs, spans, strict=True):
        groups = [list(t.positions) for t in job.targets] + [_reference_positions(job.decoding.segments)]
        for r, group in enumerate(groups):
            pool_rows += [first + r] * len(group)
            pool_cols += [lo + p for p in group]
            pool_w += [1.0 / len(group)] * len(group)
        target_of += range(first, first + len(job.targets))
        ref_of += [first + len(job.targets)] * len(job.targets)
        index += range(len(job.targets))
        first += len(groups)
    pool = out.new_zeros(len(target_of) + len(jobs), out.shape[0])
    pool[pool_rows, pool_cols] = torch.tensor(pool_w, dtype=out.dtype, device=out.device)
    leaf = out.detach().requires_grad_(True)
    with torch.enable_grad():
        pooled = pool @ leaf
        cos = F.cosine_similarity(pooled[target_of], pooled[ref_of], dim=-1)
        # Target j of every job, summed: a job's rows receive only its own j-th target's gradient.
        summed = cos.new_zeros(n_t).index_add(0, torch.tensor(index, device=out.device), cos)
        one_hot = torch.eye(n_t, dtype=out.dtype, device=out.device)
        grads = torch.stack(
            [
                torch.autograd.grad(summed, leaf, grad_outputs=one_hot[j], retain_graph=j + 1 < n_t)[0]
                for j in range(n_t)
            ]
        )
    flat = cos.detach().tolist()
    values, at = [], 0
    for job in jobs:
        values.append(flat[at : at + len(job.targets)])
        at += len(job.targets)
    return grads, values


def _chunks(jobs: list[_Job], max_row_tokens: int, *, packed: bool = False) -> list[list[_Job]]:
    """Length-sorted groups whose padded work (most targets x jobs x longest text) stays within
    ``max_row_tokens`` and within ``PAD_WASTE`` times the work the jobs need (targets x their length).
    ``packed`` (the written-out path): rows are not padded, so only the target count pads the work."""
    chunks: list[list[_Job]] = []
    for job in sorted(jobs, key=lambda j: (len(j.decoding.tokens), len(j.targets))):
        trial = [*chunks[-1], job] if chunks else []
        rows = sum(len(j.decoding.tokens) for j in trial) if packed else len(trial) * len(job.decoding.tokens)
        padded = max((len(j.targets) for j in trial), default=0) * rows
        needed = sum(len(j.targets) * len(j.decoding.tokens) for j in trial)
        if trial and padded <= max_row_tokens and padded <= PAD_WASTE * needed:
            chunks[-1].append(job)
        else:
            chunks.append([job])
    return chunks


def gradient_batch(
    subject: SubjectModel,
    saes: dict[int, TopKSAE],
    decodings: list[Decoding],
    plans: list[Plan],
    *,
    max_row_tokens: int = MAX_ROW_TOKENS,
    written_out: bool = True,
) -> list[Attribution | AttributionError]:
    """``gradient`` for several jobs, sharing forward and backward passes; per job, its attribution
    or the AttributionError it would have raised alone. A batch that fails is retried job by job, so
    one bad job cannot take its batchmates to the fallback."""
    results: list[Attribution | AttributionError | None] = [None] * len(decodings)
    jobs: dict[int, _Job] = {}
    for i, (decoding, plan) in enumerate(zip(decodings, plans, strict=True)):
        targets = target_specs(decoding, subject.kind)
        if targets:
            jobs[i] = _Job(decoding, plan, targets)
        else:
            results[i] = AttributionError(
                "no target to attribute to", trace_id=decoding.extraction.job.trace_id
            )
    retry: set[int] = set()
    for layer in sorted({layer for job in jobs.values() for layer in job.plan.layers}):
        members = [job for i, job in jobs.items() if layer in job.plan.layers and i not in retry]
        packed = written_out and _written_out(subject, layer) is not None
        for chunk in _chunks(members, max_row_tokens, packed=packed):
            try:
                gradient_rows(subject, saes[layer], layer, chunk, written_out=written_out)
            except (RuntimeError, ValueError, IndexError, KeyError) as exc:
                # Logged: a batch that always fails still gives the right numbers, only slowly.
                log.warning(
                    "batched attribution of %d jobs failed (%s); one at a time instead", len(chunk), exc
                )
                retry |= {i for i, job in jobs.items() if any(job is c for c in chunk)}
    for i, job in jobs.items():
        results[i] = _batched(subject, saes, job) if i not in retry else _alone(subject, saes, job)
    return [r for r in results if r is not None]


def _finish(subject: SubjectModel, saes: dict[int, TopKSAE], job: _Job) -> Attribution:
    """Per-token scores -> node and error scores, then (token graphs, several layers) feature edges."""
    targets = [dataclasses.replace(t, value=v) for t, v in zip(job.targets, job.values, strict=True)]
    if subject.kind != ENCODER:  # the spliced forward gives logits, not probabilities
        probs = [t.prob for t in readout(subject, job.decoding, targets)]
        targets = [dataclasses.replace(t, prob=p) for t, p in zip(targets, probs, strict=True)]
    result = _assemble(GRADIENT, job.decoding, targets, job.per_layer, {k: s.d_sae for k, s in saes.items()})
    plan = job.plan
    if plan.granularity == "token" and len(plan.layers) > 1:
        budget = max(1, min(MAX_EDGE_TARGETS, plan.max_edges // (4 * EDGES_PER_NODE)))
        result.feature_edges = feature_edges(
            subject, saes, job.decoding, plan.layers, result.influence, budget
        )
    return result


def _batched(subject: SubjectModel, saes: dict[int, TopKSAE], job: _Job) -> Attribution | AttributionError:
    try:
        return _finish(subject, saes, job)
    except (RuntimeError, ValueError, IndexError, KeyError) as exc:
        trace_id = job.decoding.extraction.job.trace_id
        return AttributionError(f"gradient attribution failed: {exc}", trace_id=trace_id)


def _alone(subject: SubjectModel, saes: dict[int, TopKSAE], job: _Job) -> Attribution | AttributionError:
    try:
        return gradient(subject, saes, job.decoding, job.plan)
    except AttributionError as exc:
        return exc


# --- heuristic ---------------------------------------------------------------------------------


def _directions(
    subject: SubjectModel, sae: TopKSAE, decoding: Decoding, layer: int, targets: list[Target]
) -> tuple[torch.Tensor, torch.Tensor]:
    """([n_t, d] unit target directions, [n_t, T] which token positions may affect each target)."""
    n = len(decoding.tokens)
    mask = torch.zeros(len(targets), n, dtype=torch.bool, device=subject.device)
    if subject.kind == ENCODER:
        x = decoding.extraction.hidden[layer]
        ref = _reference_positions(decoding.segments)
        direction = (x[ref].mean(0) - sae.b_dec).expand(len(targets), -1)
        for i, t in enumerate(targets):
            mask[i, list(t.positions) + ref] = True
    else:
        rows = []
        for i, t in enumerate(targets):
            toks = [decoding.tokens[p] for p in t.positions if p < n]
            if toks:
                rows.append(subject.unembed(torch.tensor(toks, device=subject.device)).mean(0))
            else:  # the next token after the text: the last position's own direction stands in
                rows.append(decoding.extraction.hidden[layer][-1] - sae.b_dec)
            mask[i, : min(n, max(t.positions))] = True  # causal: only earlier positions reach it
        direction = torch.stack(rows)
    return F.normalize(direction, dim=-1), mask


def heuristic(subject: SubjectModel, saes: dict[int, TopKSAE], decoding: Decoding, plan: Plan) -> Attribution:
    """activation x cos(decoder row, target direction), masked to the positions that can matter."""
    targets = readout(subject, decoding, target_specs(decoding, subject.kind))
    per_layer = {}
    for layer in plan.layers:
        sae, codes = saes[layer], decoding.codes[layer]
        direction, mask = _directions(subject, sae, decoding, layer, targets)
        rows = F.normalize(sae.W_dec, dim=-1)[codes.indices]  # [T, k, d]
        cos = torch.einsum("tkd,nd->ntk", rows, direction)
        feat = codes.values[None] * cos * mask[:, :, None]
        err = torch.einsum("td,nd->nt", codes.error, direction) * mask
        per_layer[layer] = (feat, err)
    return _assemble(HEURISTIC, decoding, targets, per_layer, {k: s.d_sae for k, s in saes.items()})
