"""The subject model: a Hugging Face encoder or causal LM read from local disk, with block hooks.

Layer ``L`` means the residual stream *after* transformer block ``L`` (0-based), which is
``hidden_states[L + 1]`` in transformers' numbering and SAELens' ``blocks.L.hook_resid_post``.
Hooks on the block modules read (``capture``) or rewrite (``run_replaced``) that stream; a read
stops the forward pass after the deepest hooked block, so extraction never pays for the rest.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hif.errors import FeaturesetError
from hif.explainer.core import lastblock
from hif.explainer.featureset import PACKAGE_PREFIX

ENCODER = "encoder"
CAUSAL_LM = "causal-lm"
DEFAULT_MAX_TOKENS = 256


def resolve_model_path(model: str) -> Path:
    """A local model folder: ``package:<pypi name>`` is looked up inside the installed package."""
    if not model.startswith(PACKAGE_PREFIX):
        return Path(model)
    module_name = model.removeprefix(PACKAGE_PREFIX).replace("-", "_")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise FeaturesetError(f"subject model package {module_name!r} is not installed") from exc
    getter = getattr(module, "get_model_path", None)
    return Path(getter()) if callable(getter) else Path(module.__file__ or "").parent / "model"


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@dataclasses.dataclass(frozen=True, slots=True)
class Encoded:
    """One job's text as tokens: ids, character offsets, which are special, where the completion starts."""

    text: str
    input_ids: list[int]
    offsets: list[tuple[int, int]]
    special: list[bool]
    completion_char: int  # index in ``text`` where the completion starts
    trimmed_prompt_tokens: int = 0  # prompt tokens cut from the head to fit the completion in

    @property
    def completion_positions(self) -> list[int]:
        start = self.completion_char
        return [i for i, (s, _) in enumerate(self.offsets) if not self.special[i] and s >= start]


def _fit(
    ids: list[int], offsets: list[tuple[int, int]], special: list[bool], completion_char: int, limit: int
) -> tuple[list[int], list[tuple[int, int]], list[bool], int]:
    """Keep the special tokens at both ends and every completion token, then as many of the
    prompt's last tokens as fit; a completion over the limit by itself keeps its head."""
    content = [i for i, sp in enumerate(special) if not sp]
    head = [i for i in range(len(ids)) if special[i] and (not content or i < content[0])]
    tail = [i for i in range(len(ids)) if special[i] and content and i > content[-1]]
    room = max(limit - len(head) - len(tail), 0)
    prompt = [i for i in content if offsets[i][0] < completion_char]
    answer = [i for i in content if offsets[i][0] >= completion_char]
    if len(answer) >= room:
        keep, trimmed = answer[:room], len(prompt)
    else:
        kept_prompt = prompt[len(prompt) - (room - len(answer)) :]
        keep, trimmed = kept_prompt + answer, len(prompt) - len(kept_prompt)
    order = head + keep + tail
    return [ids[i] for i in order], [offsets[i] for i in order], [special[i] for i in order], trimmed


class _StopForwardError(Exception):
    """Raised from a hook once the deepest requested layer ran: the rest of the model is skipped."""


class SubjectModel:
    """A frozen Hugging Face model plus its tokenizer, hookable at block outputs."""

    def __init__(self, path: Path, kind: str, *, device: str = "auto") -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        if kind not in (ENCODER, CAUSAL_LM):
            raise FeaturesetError(f"model_kind must be {ENCODER!r} or {CAUSAL_LM!r}, not {kind!r}")
        loader = AutoModel if kind == ENCODER else AutoModelForCausalLM
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
            self.model = loader.from_pretrained(str(path), local_files_only=True)
        except (OSError, ValueError) as exc:
            raise FeaturesetError(f"cannot load subject model from {path}: {exc}") from exc
        self.kind, self.path, self.device = kind, path, pick_device(device)
        self.model.to(self.device)  # type: ignore[arg-type]
        self.model.eval().requires_grad_(False)
        self.blocks = _find_blocks(self.model)
        self.d_model = int(self.model.config.hidden_size)
        limit = int(getattr(self.model.config, "max_position_embeddings", 0) or DEFAULT_MAX_TOKENS)
        self.max_tokens = min(limit, DEFAULT_MAX_TOKENS)
        self.pad_id = int(self.tokenizer.pad_token_id or 0)
        # Whether blocks return a bare tensor (learnt at the first capture): only then can
        # ``run_from`` stand in for the blocks below a layer, since their output format is then known.
        self._bare_blocks: bool | None = None
        self._written: dict[int, lastblock.BertBlock | None] = {}

    @property
    def n_layers(self) -> int:
        return len(self.blocks)

    def encode(self, prompt: str, completion: str, *, max_tokens: int | None = None) -> Encoded:
        """Tokenise ``prompt + "\\n" + completion`` into at most ``max_tokens`` tokens.

        What is explained is the completion, so a text too long keeps the completion and loses
        the prompt's head (the prompt tokens nearest the completion stay, as context); only a
        completion longer than the limit by itself is cut from the right. ``trimmed_prompt_tokens``
        says how many prompt tokens went (the graph's metadata reports it).
        """
        sep = "\n" if prompt and completion else ""
        text = prompt + sep + completion
        limit = max_tokens or self.max_tokens
        # No truncation here (verbose=False: an over-long text is expected, _fit cuts it to size).
        enc = self.tokenizer(
            text, return_offsets_mapping=True, return_special_tokens_mask=True, verbose=False
        )
        ids = list(enc["input_ids"])
        offsets = [(int(s), int(e)) for s, e in enc["offset_mapping"]]
        special = [bool(m) for m in enc["special_tokens_mask"]]
        completion_char = len(prompt) + len(sep)
        trimmed = 0
        if len(ids) > limit:
            ids, offsets, special, trimmed = _fit(ids, offsets, special, completion_char, limit)
        return Encoded(
            text=text,
            input_ids=ids,
            offsets=offsets,
            special=special,
            completion_char=completion_char,
            trimmed_prompt_tokens=trimmed,
        )

    def pad(self, batch: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-padded ids and attention mask on the model's device."""
        width = max(len(ids) for ids in batch)
        ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, seq in enumerate(batch):
            ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
            mask[row, : len(seq)] = 1
        return ids.to(self.device), mask.to(self.device)

    def capture(
        self, ids: torch.Tensor, mask: torch.Tensor, layers: Sequence[int]
    ) -> dict[int, torch.Tensor]:
        """Residual stream after each block in ``layers`` ([batch, tokens, d]); stops after the last one."""
        self._check_layers(layers)
        captured: dict[int, torch.Tensor] = {}
        deepest = max(layers)

        def hook(layer: int) -> Callable[..., None]:
            def read(_m: nn.Module, _i: Any, out: Any) -> None:
                self._bare_blocks = isinstance(out, torch.Tensor)
                captured[layer] = _hidden(out).detach()
                if layer == deepest:
                    raise _StopForwardError

            return read

        with self._hooks({layer: hook(layer) for layer in layers}), suppress(_StopForwardError):
            self.model(input_ids=ids, attention_mask=mask)
        return captured

    def written_block(self, i: int) -> lastblock.BertBlock | None:
        """Block ``i`` written out (``lastblock.plain_block``; None when it cannot be), built once:
        the model is frozen, and gathering the weights each batch cost ~1% of a worker's CPU."""
        if i not in self._written:
            self._written[i] = lastblock.plain_block(self.model, self.blocks[i])
        return self._written[i]

    def capture_packed(
        self, batch: Sequence[Sequence[int]], layers: Sequence[int]
    ) -> list[dict[int, torch.Tensor]] | None:
        """``capture`` for texts of any lengths without padding: per text, layer -> [T, d]. The
        blocks up to the deepest layer run written out (:mod:`hif.explainer.core.lastblock`) over
        the texts' rows packed one after another, so no row is padding (measured ~15% less CPU than
        the padded forward on mixed lengths). None when the model is not a plain BERT encoder: the
        caller then uses ``capture``."""
        self._check_layers(layers)
        deepest = max(layers)
        found = [self.written_block(i) for i in range(deepest + 1)]
        blocks = [b for b in found if b is not None]
        if self.kind != ENCODER or len(blocks) != len(found):
            return None
        x, spans = lastblock.embed(self.model, [list(ids) for ids in batch])
        captured: dict[int, torch.Tensor] = {}
        for i, block in enumerate(blocks):
            x = lastblock.forward_plain(block, x, spans)
            if i in layers:
                captured[i] = x
        return [{layer: captured[layer][lo:hi] for layer in layers} for lo, hi in spans]

    def run_replaced(
        self, ids: torch.Tensor, replace: dict[int, Callable[[torch.Tensor], torch.Tensor]]
    ) -> torch.Tensor:
        """The model's output for one unpadded sequence ([1, T]) with block outputs rewritten.

        Returns the last hidden state [T, d] for an encoder, the logits [T, vocab] for a causal LM.
        """
        if replace:
            self._check_layers(list(replace))

        def hook(fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[..., Any]:
            def rewrite(_m: nn.Module, _i: Any, out: Any) -> Any:
                self._bare_blocks = isinstance(out, torch.Tensor)
                new = fn(_hidden(out))
                return (new, *out[1:]) if isinstance(out, tuple) else new

            return rewrite

        with self._hooks({layer: hook(fn) for layer, fn in replace.items()}):
            out = self.model(input_ids=ids, attention_mask=torch.ones_like(ids))
        return (out.last_hidden_state if self.kind == ENCODER else out.logits)[0]

    def run_from(
        self, layer: int, resid: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """The model's output ([batch, T, d] last hidden state or [batch, T, vocab] logits) when the
        residual stream after block ``layer`` is ``resid`` ([batch, T, d], right-padded per ``mask``).

        The blocks up to ``layer`` are not run: the caller already has their output (extraction
        captured it), so attribution pays only for the blocks above the hook layer.
        """
        self._check_layers([layer])
        if self._bare_blocks:
            replaced = {i: _Replay(resid if i == layer else None) for i in range(layer + 1)}
            context = self._swapped(replaced)
        else:  # unknown output format: run every block and overwrite the hook layer's output
            context = self._hooks({layer: self._overwrite(resid)})
        with context:
            out = self.model(input_ids=ids, attention_mask=mask, use_cache=False)
        return out.last_hidden_state if self.kind == ENCODER else out.logits

    def _overwrite(self, resid: torch.Tensor) -> Callable[..., Any]:
        def hook(_m: nn.Module, _i: Any, out: Any) -> Any:
            # Learnt here too: a packed extraction (capture_packed) never runs the real blocks.
            self._bare_blocks = isinstance(out, torch.Tensor)
            return (resid, *out[1:]) if isinstance(out, tuple) else resid

        return hook

    @contextmanager
    def _swapped(self, modules: dict[int, nn.Module]) -> Iterator[None]:
        original = {i: self.blocks[i] for i in modules}
        try:
            for i, module in modules.items():
                self.blocks[i] = module
            yield
        finally:
            for i, module in original.items():
                self.blocks[i] = module

    def unembed(self, token_ids: torch.Tensor) -> torch.Tensor:
        """Unembedding rows (the logit directions) for ``token_ids``; causal LMs only."""
        head = self.model.get_output_embeddings()
        if head is None:
            raise FeaturesetError(f"model at {self.path} has no output embeddings")
        return head.weight[token_ids]

    @contextmanager
    def _hooks(self, hooks: dict[int, Callable[..., Any]]) -> Iterator[None]:
        handles = [self.blocks[layer].register_forward_hook(fn) for layer, fn in hooks.items()]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    def _check_layers(self, layers: Sequence[int]) -> None:
        bad = [layer for layer in layers if not 0 <= layer < self.n_layers]
        if bad or not layers:
            raise FeaturesetError(f"hook layers {list(layers)} out of range ({self.n_layers} blocks)")


class _Replay(nn.Module):
    """Stands in for a block whose output is already known: ``value``, or its input unchanged."""

    def __init__(self, value: torch.Tensor | None) -> None:
        super().__init__()
        self.value = value

    def forward(self, hidden: torch.Tensor, *_args: Any, **_kwargs: Any) -> torch.Tensor:
        return hidden if self.value is None else self.value


def _hidden(out: Any) -> torch.Tensor:
    return out[0] if isinstance(out, tuple) else out


def _find_blocks(model: nn.Module) -> nn.ModuleList:
    """The transformer's block list: the ModuleList as long as ``num_hidden_layers``."""
    n = int(getattr(model.config, "num_hidden_layers", 0))
    for module in model.modules():
        if isinstance(module, nn.ModuleList) and len(module) == n and n > 0:
            return module
    raise FeaturesetError(f"cannot find the {n} transformer blocks of {type(model).__name__}")
