"""Train and measure a TopK SAE on a subject model's residual stream (``hif featureset build``).

Deterministic: a fixed seed, a fixed corpus order (its SHA-256 is recorded) and a fixed number of
steps, so two builds on the same CPython and torch give the same weights. The loss is OpenAI's:
reconstruction MSE plus the AuxK term, which makes latents that stopped firing reconstruct the
residual error, keeping dead latents rare on a small corpus.

>>> [result] = build_featureset(info, out_dir)      # doctest: +SKIP
>>> result.metrics["fvu"] <= 0.15                    # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from hif.errors import FeaturesetError
from hif.explainer.core.model import CAUSAL_LM, SubjectModel, resolve_model_path
from hif.explainer.core.sae import TopKSAE, fvu
from hif.explainer.featureset import FeaturesetInfo
from hif.explainer.training import corpus
from hif.explainer.training.labels import label_latents, score_summary

log = logging.getLogger(__name__)

WINDOW_TOKENS = 64  # the size of a typical explained chat turn
LABELS_FILE = "labels.json"
METRICS_FILE = "metrics.json"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class TrainConfig:
    seed: int = 0
    epochs: int = 3
    batch_tokens: int = 1024
    lr: float = 1e-3
    aux_k: int = 256
    aux_coef: float = 1 / 32
    dead_after_tokens: int = 100_000  # a latent silent this long counts as dead for AuxK
    max_train_tokens: int = 1_000_000
    max_heldout_tokens: int = 10_000  # per held-out domain (the label split gets this per domain too)


@dataclasses.dataclass(slots=True)
class Activations:
    """Residual-stream vectors at one layer, one row per non-special token, with where each came from."""

    x: torch.Tensor  # [N, d] float16 (halves memory; training upcasts each batch)
    token_ids: torch.Tensor  # [N]
    window: torch.Tensor  # [N] index into ``windows``
    position: torch.Tensor  # [N] token index inside its window
    windows: list[list[int]]


@dataclasses.dataclass(frozen=True, slots=True)
class BuildResult:
    sae: TopKSAE
    metrics: dict[str, Any]
    folder: Path


def token_windows(subject: SubjectModel, docs: Sequence[str], max_tokens: int) -> list[list[int]]:
    """Documents cut into windows of WINDOW_TOKENS content tokens, each wrapped in the model's specials."""
    tok = subject.tokenizer
    wrap = tok("")["input_ids"]  # what the tokenizer adds around text: [CLS, SEP] for BERT, [] for GPT-2
    prefix, suffix = wrap[:1], wrap[1:]
    windows: list[list[int]] = []
    total = 0
    for doc in docs:
        ids = tok(doc, add_special_tokens=False, truncation=False, verbose=False)["input_ids"]
        for start in range(0, len(ids), WINDOW_TOKENS):
            piece = ids[start : start + WINDOW_TOKENS]
            if len(piece) < 4:
                continue
            windows.append([*prefix, *piece, *suffix])
            total += len(piece)
            if total >= max_tokens:
                return windows
    return windows


@torch.inference_mode()
def collect(subject: SubjectModel, windows: list[list[int]], layer: int, batch: int = 64) -> Activations:
    """Run the windows through the model (sorted by length, so batches barely pad) and keep ``layer``."""
    order = sorted(range(len(windows)), key=lambda i: len(windows[i]))
    xs, ids, wins, pos = [], [], [], []
    special = set(subject.tokenizer.all_special_ids)
    for start in range(0, len(order), batch):
        chunk = order[start : start + batch]
        padded, mask = subject.pad([windows[i] for i in chunk])
        hidden = subject.capture(padded, mask, [layer])[layer]
        for row, w in enumerate(chunk):
            keep = [p for p, t in enumerate(windows[w]) if t not in special]
            xs.append(hidden[row, keep].to("cpu", torch.float16))
            ids.append(torch.tensor([windows[w][p] for p in keep]))
            wins.append(torch.full((len(keep),), w))
            pos.append(torch.tensor(keep))
    return Activations(torch.cat(xs), torch.cat(ids), torch.cat(wins), torch.cat(pos), windows)


def _selected_pre(
    x: torch.Tensor, w_enc_t: torch.Tensor, b_enc: torch.Tensor, idx: torch.Tensor
) -> torch.Tensor:
    """Pre-activations of the chosen latents only, with gradients: k gathers instead of a dense matmul."""
    return torch.einsum("nd,nkd->nk", x, F.embedding(idx, w_enc_t)) + b_enc[idx]


def _step_loss(
    sae: TopKSAE, w_enc_t: torch.Tensor, x: torch.Tensor, dead: torch.Tensor, config: TrainConfig
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, normalised mse, fired latent ids) for one batch.

    The dense encoder matmul runs without autograd just to pick the top-k latents; gradients flow
    through the k gathered columns only. That is the same gradient as the dense graph (TopK passes
    gradient to the selected latents alone) at a fraction of the cost on a CPU.
    """
    xc = x - sae.b_dec
    with torch.no_grad():
        pre = xc @ w_enc_t.t() + sae.b_enc
        idx = pre.topk(sae.k, dim=-1, sorted=False).indices
    values = _selected_pre(xc, w_enc_t, sae.b_enc, idx).relu()
    x_hat = F.embedding_bag(idx, sae.W_dec, per_sample_weights=values, mode="sum") + sae.b_dec
    variance = (x - x.mean(0)).pow(2).sum(-1).mean()
    mse = (x_hat - x).pow(2).sum(-1).mean() / variance
    loss = mse
    n_dead = int(dead.sum())
    if n_dead:  # AuxK: the top dead latents reconstruct what the live ones missed
        with torch.no_grad():
            aux_idx = pre.masked_fill(~dead, float("-inf")).topk(min(config.aux_k, n_dead), dim=-1).indices
        aux_vals = _selected_pre(xc, w_enc_t, sae.b_enc, aux_idx).relu()
        err_hat = F.embedding_bag(aux_idx, sae.W_dec, per_sample_weights=aux_vals, mode="sum")
        err = (x - x_hat).detach()
        aux = (err_hat - err).pow(2).sum(-1).mean() / err.pow(2).sum(-1).mean().clamp_min(1e-8)
        loss = loss + config.aux_coef * aux
    return loss, mse.detach(), idx[values > 0].unique()


def train_sae(acts: torch.Tensor, *, d_sae: int, k: int, config: TrainConfig) -> TopKSAE:
    """Fit a TopK SAE to ``acts`` [N, d]: Adam, decoder renormalised after every step.

    Bitwise deterministic per seed: multi-threaded embedding_bag backward otherwise sums in a
    varying order, and the 1e-7 differences grow over hundreds of steps.
    """
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        return _train(acts, d_sae=d_sae, k=k, config=config)
    finally:
        torch.use_deterministic_algorithms(previous)


def _train(acts: torch.Tensor, *, d_sae: int, k: int, config: TrainConfig) -> TopKSAE:
    gen = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    sae = TopKSAE(d_in=acts.shape[1], d_sae=d_sae, k=k)
    sae.reset_parameters(generator=gen)
    with torch.no_grad():
        sae.b_dec.copy_(acts[:50_000].float().mean(0))
    # Training keeps the encoder transposed ([d_sae, d_in]) so the per-latent gathers read contiguous rows.
    w_enc_t = torch.nn.Parameter(sae.W_enc.detach().t().contiguous())
    opt = torch.optim.Adam([w_enc_t, sae.W_dec, sae.b_enc, sae.b_dec], lr=config.lr)
    last_fired = torch.zeros(d_sae, dtype=torch.long)
    seen = 0
    steps_per_epoch = max(1, acts.shape[0] // config.batch_tokens)
    total_steps = steps_per_epoch * config.epochs
    for step in range(total_steps):
        if step % steps_per_epoch == 0:
            perm = torch.randperm(acts.shape[0], generator=gen)
        rows = perm[(step % steps_per_epoch) * config.batch_tokens :][: config.batch_tokens]
        dead = (seen - last_fired) > config.dead_after_tokens
        loss, mse, fired = _step_loss(sae, w_enc_t, acts[rows].float(), dead, config)
        seen += len(rows)
        last_fired[fired] = seen
        opt.zero_grad(set_to_none=True)
        loss.backward()
        for group in opt.param_groups:  # linear decay over the last fifth: a stabler final FVU
            group["lr"] = config.lr * min(1.0, 5 * (total_steps - step) / total_steps)
        opt.step()
        sae.normalize_decoder()
        if step % 50 == 0:
            log.info("step %d/%d fvu %.4f dead %d", step, total_steps, float(mse), int(dead.sum()))
    with torch.no_grad():
        sae.W_enc.copy_(w_enc_t.t())
    return sae.eval().requires_grad_(False)


@torch.inference_mode()
def heldout_metrics(sae: TopKSAE, acts: torch.Tensor, chunk: int = 8192) -> dict[str, float]:
    """FVU, dead-latent % (never fired on held-out tokens) and mean L0 over ``acts``."""
    fired = torch.zeros(sae.d_sae, dtype=torch.bool)
    hats, l0 = [], 0.0
    for start in range(0, acts.shape[0], chunk):
        x = acts[start : start + chunk].float()
        values, indices = sae.topk(sae.pre_acts(x))
        fired[indices[values > 0]] = True
        l0 += float((values > 0).sum())
        hats.append(sae.decode_sparse(values, indices))
    x_all = acts.float()
    return {
        "fvu": round(fvu(x_all, torch.cat(hats)), 5),
        "dead_latents_pct": round(100.0 * float((~fired).sum()) / sae.d_sae, 3),
        "mean_l0": round(l0 / max(1, acts.shape[0]), 3),
    }


def _context(acts: Activations, row: int, subject: SubjectModel, before: int = 8, after: int = 3) -> str:
    window = acts.windows[int(acts.window[row])]
    pos = int(acts.position[row])
    tok = subject.tokenizer
    special = set(tok.all_special_ids)
    left = [t for t in window[max(0, pos - before) : pos] if t not in special]
    right = [t for t in window[pos + 1 : pos + 1 + after] if t not in special]
    text = f"{tok.decode(left)} [[{tok.decode([window[pos]])}]] {tok.decode(right)}"
    return text.strip()


@dataclasses.dataclass(slots=True)
class CorpusActivations:
    train: Activations
    label_split: Activations  # training sources, not trained on: labels are scored here
    heldout: dict[str, Activations]  # domain -> activations of sources outside the training mix
    sha256: str
    documents: int
    sources: list[str]


def _collect_corpus(
    subject: SubjectModel, layer: int, config: TrainConfig, cache: Path | None, user_corpus: Path | None
) -> CorpusActivations:
    """Activations of every split; ``cache`` skips the forward passes on a rebuild."""
    if cache is not None and cache.is_file():
        saved = torch.load(cache, weights_only=False)
        if isinstance(saved, CorpusActivations):
            return saved
        raise FeaturesetError(f"activation cache {cache} is from an older build: delete it")
    docs = corpus.load_corpus(user_corpus)
    n = config.max_heldout_tokens

    def acts(texts: list[str], tokens: int) -> Activations:
        return collect(subject, token_windows(subject, texts, tokens), layer)

    result = CorpusActivations(
        train=acts(docs.train, config.max_train_tokens),
        label_split=acts(docs.label_split, n * len(docs.heldout)),
        heldout={domain: acts(texts, n) for domain, texts in docs.heldout.items()},
        sha256=docs.sha256,
        documents=docs.documents,
        sources=docs.sources,
    )
    if cache is not None:
        torch.save(result, cache)
    return result


def domain_metrics(sae: TopKSAE, data: CorpusActivations) -> dict[str, Any]:
    """FVU per held-out domain (``fvu`` is the worst of them) and dead/L0 over all held-out tokens."""
    per_domain = {d: heldout_metrics(sae, a.x) for d, a in data.heldout.items() if len(a.x)}
    pooled = heldout_metrics(sae, torch.cat([data.label_split.x, *(a.x for a in data.heldout.values())]))
    return {
        "fvu": max((m["fvu"] for m in per_domain.values()), default=pooled["fvu"]),
        "fvu_by_domain": {d: m["fvu"] for d, m in per_domain.items()},
        "heldout_tokens_by_domain": {d: len(a.x) for d, a in data.heldout.items()},
        "dead_latents_pct": pooled["dead_latents_pct"],
        "mean_l0": pooled["mean_l0"],
    }


def build_featureset(
    info: FeaturesetInfo,
    out_dir: Path | None = None,
    *,
    config: TrainConfig | None = None,
    cache: Path | None = None,
    user_corpus: Path | None = None,
    relabel: bool = False,
) -> list[BuildResult]:
    """Train one SAE per hook layer of ``info`` on the corpus mix (or ``user_corpus``); one result per layer.

    ``relabel``: keep the SAE already in the folder; derive and score its labels and measure it on
    the held-out domains again (metrics.json keeps the training record it had).

    One layer: cfg/weights/metrics/labels go to ``out_dir`` (default: the featureset's sae_path).
    Several: each layer's SAE goes to ``<out_dir>/layer_<L>/``, the layout the pipeline loads.
    """
    config = config or TrainConfig()
    folder = out_dir or info.sae_path
    if folder is None:
        raise ValueError(f"featureset {info.name!r} has no sae_path to build into")
    subject = SubjectModel(resolve_model_path(info.model), info.model_kind, device="cpu")
    layers = [
        (layer, folder if len(info.layers) == 1 else folder / f"layer_{layer}") for layer in info.layers
    ]
    return [
        _build_layer(
            info,
            subject,
            layer,
            where,
            config,
            cache if len(layers) == 1 else _layer_cache(cache, layer),
            user_corpus,
            relabel,
        )
        for layer, where in layers
    ]


def model_featureset(model_dir: Path, *, layer: int, latents: int, k: int, out: Path) -> FeaturesetInfo:
    """An ad-hoc featureset for a user's own local causal LM (``hif featureset build --model DIR``)."""
    if not (model_dir / "config.json").is_file():
        raise FeaturesetError(f"--model {model_dir} is not a Hugging Face model folder (no config.json)")
    return FeaturesetInfo(
        name=f"{model_dir.name}-res{layer}",
        description=f"TopK SAE ({latents} latents, k={k}) after block {layer} of {model_dir}",
        model=str(model_dir),
        model_kind=CAUSAL_LM,
        layers=(layer,),
        latents=latents,
        k=k,
        sae_path=out,
    )


def _layer_cache(cache: Path | None, layer: int) -> Path | None:
    return None if cache is None else cache.with_name(f"{cache.stem}.layer{layer}{cache.suffix}")


def _build_layer(
    info: FeaturesetInfo,
    subject: SubjectModel,
    layer: int,
    folder: Path,
    config: TrainConfig,
    cache: Path | None,
    user_corpus: Path | None,
    relabel: bool = False,
) -> BuildResult:
    torch.manual_seed(config.seed)
    started = time.perf_counter()
    cached = cache is not None and cache.is_file()
    data = _collect_corpus(subject, layer, config, cache, user_corpus)
    collected = time.perf_counter()
    log.info("layer %d: collected %d train tokens in %.1fs", layer, len(data.train.x), collected - started)
    if relabel:
        return _relabel(subject, folder, data)
    sae = train_sae(data.train.x, d_sae=info.latents, k=info.k, config=config)
    trained = time.perf_counter()
    sae.cfg = {
        "model_name": str(info.model),
        "hook_name": f"blocks.{layer}.hook_resid_post",
        "hook_layer": layer,
        "context_size": WINDOW_TOKENS,
        "prepend_bos": True,
        "featureset": info.name,
    }
    folder.mkdir(parents=True, exist_ok=True)
    sae.save(folder, dtype=torch.float16)
    sae = TopKSAE.load(folder)  # measure what was written (fp16), not the fp32 copy in memory
    labels = label_latents(
        sae, data.train, data.label_split, subject.tokenizer, lambda r: _context(data.label_split, r, subject)
    )
    metrics = {
        **domain_metrics(sae, data),
        "labels": score_summary(labels),
        "featureset": info.name,
        "layer": layer,
        "d_sae": info.latents,
        "k": info.k,
        "corpus_sha256": data.sha256,
        "corpus_documents": data.documents,
        "corpus_sources": data.sources,
        "train_tokens": len(data.train.x),
        "label_split_tokens": len(data.label_split.x),
        "seed": config.seed,
        "config": dataclasses.asdict(config),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "collect_seconds": round(collected - started, 1),
        "activations_from_cache": cached,
        "train_seconds": round(trained - collected, 1),
    }
    (folder / METRICS_FILE).write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    (folder / LABELS_FILE).write_text(json.dumps(labels, separators=(",", ":"), ensure_ascii=False) + "\n")
    return BuildResult(sae=sae, metrics=metrics, folder=folder)


def _relabel(subject: SubjectModel, folder: Path, data: CorpusActivations) -> BuildResult:
    sae = TopKSAE.load(folder)
    labels = label_latents(
        sae, data.train, data.label_split, subject.tokenizer, lambda r: _context(data.label_split, r, subject)
    )
    path = folder / METRICS_FILE
    metrics = json.loads(path.read_text()) if path.is_file() else {}
    metrics.update(
        {
            **domain_metrics(sae, data),
            "labels": score_summary(labels),
            "labels_corpus_sha256": data.sha256,
            "labels_corpus_sources": data.sources,
            "label_split_tokens": len(data.label_split.x),
        }
    )
    metrics.setdefault("train_tokens", 0)
    path.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    (folder / LABELS_FILE).write_text(json.dumps(labels, separators=(",", ":"), ensure_ascii=False) + "\n")
    return BuildResult(sae=sae, metrics=metrics, folder=folder)
