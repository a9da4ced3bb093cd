"""The last block of a BERT encoder, written out: a forward over jobs packed row after row that keeps
what the backward needs, and an exact backward for several targets at once.

Why: an encoder's sentence target reads the output rows of its own sentence and of the prompt only.
Autograd's backward through the block costs every row for every target; written out, the row-wise
parts (output LayerNorm, feed-forward, attention output, queries) run only on the rows a target
reads, and only keys and values, which mix rows, need all of them. The targets of all jobs run as
one stack of (row, target) pairs, so each weight matrix is used by one matrix product per pass,
not one per target, and no row is padded (attention runs per job, on its own rows).

The maths is the block's own (``BertLayer`` in transformers: self-attention, dense + residual +
LayerNorm, GELU feed-forward, dense + residual + LayerNorm); ``block_of`` accepts a block only when
its structure and configuration say it computes exactly that. The tests compare every score with
autograd's through the real module.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn


@dataclasses.dataclass(frozen=True, slots=True)
class BertBlock:
    """A BERT block's weights (transformers' ``BertLayer``), as the written-out passes use them."""

    heads: int
    w_qkv: torch.Tensor  # [3d, d]: query, key, value stacked
    b_qkv: torch.Tensor
    w_o: torch.Tensor
    b_o: torch.Tensor
    ln1: nn.LayerNorm
    w_in: torch.Tensor  # [d_ff, d]
    b_in: torch.Tensor
    w_out: torch.Tensor  # [d, d_ff]
    b_out: torch.Tensor
    ln2: nn.LayerNorm


def block_of(model: nn.Module, block: nn.Module) -> BertBlock | None:
    """``block`` written out when it is a plain BERT encoder block whose output is the model's output
    (a ``BertModel``'s last block, GELU, absolute positions, no cross-attention); None otherwise."""
    return plain_block(model, block) if is_last(model, block) else None


def is_last(model: nn.Module, block: nn.Module) -> bool:
    """Whether ``block`` is a ``BertModel``'s last block: its output is the model's only then."""
    return type(model).__name__ == "BertModel" and block is model.encoder.layer[-1]


def plain_block(model: nn.Module, block: nn.Module) -> BertBlock | None:
    """Any block of a ``BertModel`` written out, when it computes exactly what ``BertLayer`` does
    (GELU, absolute positions, no cross-attention); None otherwise."""
    config = getattr(model, "config", None)
    if type(model).__name__ != "BertModel" or type(block).__name__ != "BertLayer" or config is None:
        return None
    plain = (
        getattr(config, "hidden_act", None) == "gelu"
        and not getattr(config, "is_decoder", False)
        and not getattr(config, "add_cross_attention", False)
        and getattr(config, "position_embedding_type", "absolute") == "absolute"
        and getattr(block.attention.self, "is_causal", False) is False
    )
    if not plain:
        return None
    att, inter, out = block.attention, block.intermediate, block.output
    return BertBlock(
        heads=int(att.self.num_attention_heads),
        w_qkv=torch.cat([att.self.query.weight, att.self.key.weight, att.self.value.weight]),
        b_qkv=torch.cat([att.self.query.bias, att.self.key.bias, att.self.value.bias]),
        w_o=att.output.dense.weight,
        b_o=att.output.dense.bias,
        ln1=att.output.LayerNorm,
        w_in=inter.dense.weight,
        b_in=inter.dense.bias,
        w_out=out.dense.weight,
        b_out=out.dense.bias,
        ln2=out.LayerNorm,
    )


@dataclasses.dataclass(slots=True)
class Saved:
    """One packed forward: its output and the activations its backward reads."""

    out: torch.Tensor  # [N, d] the block's output, jobs' rows one after another
    spans: list[tuple[int, int]]  # each job's rows
    q: torch.Tensor  # [N, d] (query, key, value after their biases)
    k: torch.Tensor
    v: torch.Tensor
    probs: list[torch.Tensor]  # per job: [heads, T, T] attention weights
    xhat1: torch.Tensor  # [N, d] normalised input of the first LayerNorm
    rstd1: torch.Tensor  # [N, 1]
    gelu_grad: torch.Tensor  # [N, d_ff] GELU's derivative at the feed-forward's pre-activation
    xhat2: torch.Tensor
    rstd2: torch.Tensor


def _layer_norm(x: torch.Tensor, ln: nn.LayerNorm) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(output, normalised input, 1/std): the same kernel as the module's, with its statistics."""
    out, mean, rstd = torch.native_layer_norm(x, ln.normalized_shape, ln.weight, ln.bias, ln.eps)
    return out, (x - mean) * rstd, rstd


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    return x.view(x.shape[0], heads, -1).transpose(0, 1)  # [T, d] -> [heads, T, d_head]


def forward(block: BertBlock, x: torch.Tensor, lengths: list[int]) -> Saved:
    """The block over ``x`` ([N, d]: jobs of ``lengths`` rows, packed), each job attending to its own rows."""
    d = x.shape[1]
    q, k, v = F.linear(x, block.w_qkv, block.b_qkv).split(d, dim=1)
    spans, probs, ctx = [], [], torch.empty_like(x)
    start = 0
    for n in lengths:
        rows = slice(start, start + n)
        qh, kh, vh = (_heads(t[rows], block.heads) for t in (q, k, v))
        p = torch.softmax((qh @ kh.transpose(1, 2)) / math.sqrt(qh.shape[-1]), dim=-1)
        ctx[rows] = (p @ vh).transpose(0, 1).reshape(n, d)
        spans.append((start, start + n))
        probs.append(p)
        start += n
    h1, xhat1, rstd1 = _layer_norm(F.linear(ctx, block.w_o, block.b_o) + x, block.ln1)
    pre = F.linear(h1, block.w_in, block.b_in)
    # The exact (erf) GELU is u Phi(u); its derivative Phi(u) + u phi(u) is shared by every target.
    cdf = torch.erf(pre * (1.0 / math.sqrt(2.0))).add_(1.0).mul_(0.5)
    gelu_grad = torch.exp(pre * pre * -0.5).mul_(1.0 / math.sqrt(2.0 * math.pi)).mul_(pre).add_(cdf)
    out, xhat2, rstd2 = _layer_norm(F.linear(pre * cdf, block.w_out, block.b_out) + h1, block.ln2)
    return Saved(out, spans, q, k, v, probs, xhat1, rstd1, gelu_grad, xhat2, rstd2)


def forward_plain(block: BertBlock, x: torch.Tensor, spans: list[tuple[int, int]]) -> torch.Tensor:
    """The block's output over packed rows (each job attending to its own ``spans``), saving nothing:
    the blocks below the hook layer, where extraction needs values, not gradients."""
    d = x.shape[1]
    q, k, v = F.linear(x, block.w_qkv, block.b_qkv).split(d, dim=1)
    ctx = torch.empty_like(x)
    for lo, hi in spans:
        qh, kh, vh = (_heads(t[lo:hi], block.heads) for t in (q, k, v))
        ctx[lo:hi] = (
            F.scaled_dot_product_attention(qh[None], kh[None], vh[None])[0]
            .transpose(0, 1)
            .reshape(hi - lo, d)
        )
    h1 = F.layer_norm(
        F.linear(ctx, block.w_o, block.b_o) + x,
        block.ln1.normalized_shape,
        block.ln1.weight,
        block.ln1.bias,
        block.ln1.eps,
    )
    ff = F.linear(F.gelu(F.linear(h1, block.w_in, block.b_in)), block.w_out, block.b_out)
    return F.layer_norm(ff + h1, block.ln2.normalized_shape, block.ln2.weight, block.ln2.bias, block.ln2.eps)


def embed(model: nn.Module, ids: list[list[int]]) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """A ``BertModel``'s embeddings of several texts packed row after row, each with positions from 0
    and token type 0 (what ``BertEmbeddings`` computes for an unpadded text): ([N, d], spans)."""
    emb = model.embeddings
    device = emb.word_embeddings.weight.device
    flat = torch.tensor([t for seq in ids for t in seq], dtype=torch.long, device=device)
    positions = torch.cat([torch.arange(len(seq), device=device) for seq in ids])
    x = emb.word_embeddings(flat) + emb.token_type_embeddings.weight[0] + emb.position_embeddings(positions)
    x = emb.LayerNorm(x)
    spans, start = [], 0
    for seq in ids:
        spans.append((start, start + len(seq)))
        start += len(seq)
    return x, spans


def _layer_norm_back(
    g: torch.Tensor, xhat: torch.Tensor, rstd: torch.Tensor, ln: nn.LayerNorm
) -> torch.Tensor:
    gx = g * ln.weight
    return rstd * (gx - gx.mean(-1, keepdim=True) - xhat * (gx * xhat).mean(-1, keepdim=True))


def backward(block: BertBlock, saved: Saved, grads: torch.Tensor) -> torch.Tensor:
    """d target / d input for each target: ``grads`` [n_t, N, d] are the targets' gradients with
    respect to the output (rows a target does not read are zero); returns [n_t, N, d]."""
    n_t, n, d = grads.shape
    read = grads.abs().sum(-1) > 0  # [n_t, N]: the rows each target reads
    which, rows = read.nonzero(as_tuple=True)  # (target, row) pairs, by target then row
    g = grads.view(n_t * n, d).index_select(0, which * n + rows)
    # Row-wise part, only on the (row, target) pairs: output LayerNorm, feed-forward, residual,
    # first LayerNorm, attention output projection.
    dz2 = _layer_norm_back(g, saved.xhat2.index_select(0, rows), saved.rstd2.index_select(0, rows), block.ln2)
    dh1 = ((dz2 @ block.w_out) * saved.gelu_grad.index_select(0, rows)) @ block.w_in + dz2
    dz1 = _layer_norm_back(
        dh1, saved.xhat1.index_select(0, rows), saved.rstd1.index_select(0, rows), block.ln1
    )
    dq, dkv = _attention_back(block, saved, which, rows, dz1 @ block.w_o, n_t)
    dx = (dkv.view(n_t * n, 2 * d) @ block.w_qkv[d:]).view(n_t, n, d)
    dx.index_put_((which, rows), dz1 + dq @ block.w_qkv[:d], accumulate=True)
    return dx


def _attention_back(
    block: BertBlock, saved: Saved, which: torch.Tensor, rows: torch.Tensor, dctx: torch.Tensor, n_t: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Self-attention's backward per job and target, from the context gradient on the (row, target)
    pairs: ([pairs, d] query gradients, [n_t, N, 2d] key and value gradients on every row)."""
    n, d = saved.q.shape
    dq = torch.empty_like(dctx)
    dkv = dctx.new_zeros(n_t, n, 2 * d)
    bounds = torch.tensor([end for _, end in saved.spans], device=dctx.device)
    job_of = torch.searchsorted(bounds, rows, right=True)
    scale = 1.0 / math.sqrt(d // block.heads)
    runs = which * len(saved.spans) + job_of  # pairs come sorted by target, then job
    keys, counts = torch.unique_consecutive(runs, return_counts=True)
    cut = 0
    for key, count in zip(keys.tolist(), counts.tolist(), strict=True):
        t, b = divmod(key, len(saved.spans))
        lo, hi = saved.spans[b]
        mine = slice(cut, cut + count)
        p = saved.probs[b][:, rows[mine] - lo]  # [heads, r, T]
        dc, qh = _heads(dctx[mine], block.heads), _heads(saved.q[rows[mine]], block.heads)
        kh, vh = _heads(saved.k[lo:hi], block.heads), _heads(saved.v[lo:hi], block.heads)
        dp = dc @ vh.transpose(1, 2)
        ds = p * (dp - (dp * p).sum(-1, keepdim=True)) * scale
        dq[mine] = (ds @ kh).transpose(0, 1).reshape(count, d)
        dkv[t, lo:hi, :d] = (ds.transpose(1, 2) @ qh).transpose(0, 1).reshape(hi - lo, d)
        dkv[t, lo:hi, d:] = (p.transpose(1, 2) @ dc).transpose(0, 1).reshape(hi - lo, d)
        cut += count
    return dq, dkv
