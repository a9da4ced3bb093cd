"""``hif featureset list|build|eval``: the registry, SAE training and its quality gates.

    hif featureset list
    hif featureset build [NAME] [--out DIR] [--epochs N] [--train-tokens N] [--seed N] [--cache FILE]
                         [--corpus PATH] [--model DIR --out DIR [--layer L] [--latents N] [--k K]]
    hif featureset eval [NAME] [--heldout-tokens N] [--turns N] [--json]

``eval`` exits 1 when a goal is missed; any HifError is one ``hif: <message>`` line and exit 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path
from typing import Any

from hif.config import add_options, build
from hif.errors import HifError
from hif.explainer.featureset import Registry, load_registry
from hif.explainer.settings import FeaturesetSettings
from hif.explainer.training.settings import BuildSettings, EvalSettings

NAME_HELP = "featureset (default: the registry's default)"


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="hif featureset", description="build / evaluate / list featuresets")
    sub = root.add_subparsers(dest="action", required=True)
    listing = sub.add_parser("list", help="print the registry")
    b = sub.add_parser("build", help="train a featureset's TopK SAE on the offline corpus")
    b.add_argument("name", nargs="?", help=NAME_HELP)
    add_options(b, BuildSettings)
    e = sub.add_parser("eval", help="held-out FVU, dead latents and the ablation test; exit 1 on a miss")
    e.add_argument("name", nargs="?", help=NAME_HELP)
    add_options(e, EvalSettings)
    for p in (root, b, e, listing):
        add_options(p, FeaturesetSettings)
    return root


def _list(registry: Registry) -> int:
    for info in registry.list():
        mark = "*" if info.name == registry.default else " "
        state = "available" if info.available else f"unavailable: {info.reason}"
        print(f"{mark} {info.name:<24} layers={list(info.layers)} latents={info.latents} k={info.k}  {state}")
        print(f"    {info.description}")
    return 0


def _build(registry: Registry, name: str | None, settings: BuildSettings) -> int:
    from hif.explainer.training.train import TrainConfig, build_featureset, model_featureset

    if settings.model is not None and settings.out is not None:
        if name:
            raise HifError("give a featureset NAME or --model DIR, not both")
        info = model_featureset(
            settings.model, layer=settings.layer, latents=settings.latents, k=settings.k, out=settings.out
        )
    else:
        info = registry.get(name or registry.default)
    # Registry-declared unavailable (e.g. sae-gpt4-2m, no sae_path): never fake its features.
    # "Weights not built yet" is exactly what a build is for.
    if info.reason and (info.sae_path is None or "not built" not in info.reason):
        raise HifError(f"featureset {info.name!r} cannot be built here: {info.reason}")
    config = dataclasses.replace(TrainConfig(), **settings.recipe_overrides())
    results = build_featureset(
        info,
        settings.out,
        config=config,
        cache=settings.cache,
        user_corpus=settings.corpus,
        relabel=settings.relabel,
    )
    for result in results:
        _print_build(info.name, result.folder, result.metrics)
    return 0


def _print_build(name: str, folder: Path, m: dict[str, Any]) -> None:
    print(f"built {name} layer {m['layer']} in {folder}")
    by_domain = "  ".join(f"{d} {v:.4f}" for d, v in m["fvu_by_domain"].items())
    print(
        f"  held-out FVU {by_domain}  dead latents {m['dead_latents_pct']:.2f}%  mean L0 {m['mean_l0']:.1f}"
    )
    labels = m["labels"]
    if labels.get("latents"):
        print(
            f"  label score median {labels['median']:.3f} (p25 {labels['p25']:.3f}, p75 {labels['p75']:.3f});"
            f" {labels['labelled_pct']:.1f}% at or above {labels['threshold']}"
        )
    if "labels_corpus_sha256" in m:
        print(f"  relabelled on corpus sha256 {m['labels_corpus_sha256'][:16]}; weights unchanged")
        return
    print(
        f"  {m['train_tokens']} train tokens, collect {m['collect_seconds']}s,"
        f" train {m['train_seconds']}s, seed {m['seed']}, corpus sha256 {m['corpus_sha256'][:16]}"
    )


def _eval(registry: Registry, name: str | None, settings: EvalSettings) -> int:
    from hif.explainer.core.pipeline import load_pipeline
    from hif.explainer.training.evaluate import evaluate, store

    info = registry.resolve(name)
    pipeline = load_pipeline(info, device="cpu")
    result = evaluate(pipeline, heldout_tokens=settings.heldout_tokens, turns=settings.turns)
    if settings.json:
        print(json.dumps({"featureset": info.name, **result.as_dict()}, indent=2))
    else:
        _print_eval(info.name, result)
    if settings.store:
        print(f"stored in {store(pipeline, result)}", file=sys.stderr)
    return 0 if all(result.goals().values()) else 1


def _print_eval(name: str, result: Any) -> None:
    print(f"featureset {name}")
    for domain, fvu in result.fvu_by_domain.items():
        print(f"  held-out FVU {domain:<9} {fvu:.4f}   ({result.heldout_tokens_by_domain[domain]} tokens)")
    print(f"  dead latents        {result.dead_latents_pct:.2f}%")
    print(f"  mean L0             {result.mean_l0:.1f}")
    labels = result.labels
    if labels.get("scored"):
        print(
            f"  label score         median {labels['median']:.3f}  p10 {labels['p10']:.3f}"
            f"  p90 {labels['p90']:.3f}  labelled {labels['labelled_pct']:.1f}% (>= {labels['threshold']})"
        )
    else:
        print("  label score         not scored (labels.json predates scoring)")
    print("  faithfulness (sentence graphs; mean |change of summed targets| after zeroing 5 nodes)")
    print(
        f"    {'text':<9} {'top5-attr':>10} {'top5-|attr|':>11} {'rand5-act':>10} {'top5-act':>10}"
        f" {'rand5-graph':>11} {'attr/act':>9} {'|attr|/act':>10} {'attr/rand':>9}"
    )
    for domain, row in result.faithfulness.items():
        if row:
            print(
                f"    {domain:<9} {row['top5_attributed']:>10.5f} {row['top5_attributed_abs']:>11.5f}"
                f" {row['random5_active']:>10.5f} {row['top5_activation']:>10.5f}"
                f" {row['random5_graph']:>11.5f} {row['ratio_vs_activation']:>8.2f}x"
                f" {row['ratio_abs_vs_activation']:>9.2f}x {row['ratio_vs_random_active']:>8.2f}x"
            )
    print("  attribution mass (error: SAE reconstruction error; pruned: features the node cap left out)")
    print(
        f"    {'text':<9} {'turns':>5} {'error %':>8} {'error % shown':>14} {'pruned %':>9}"
        f" {'replace':>8} {'complete':>8}"
    )
    for domain, row in result.faithfulness.items():
        if row:
            print(
                f"    {domain:<9} {row['turns']:>5} {row['error_mass_pct']:>8.1f}"
                f" {row['error_mass_graph_pct']:>14.1f} {row['pruned_mass_pct']:>9.1f}"
                f" {_score(row.get('replacement_score')):>8} {_score(row.get('completeness_score')):>8}"
            )
    for goal, ok in result.goals().items():
        print(f"  [{'ok' if ok else 'MISS'}] {goal}")


def _score(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    try:
        registry = load_registry(build(FeaturesetSettings, cli=args).featuresets)
        if args.action == "list":
            return _list(registry)
        if args.action == "build":
            return _build(registry, args.name, build(BuildSettings, cli=args))
        return _eval(registry, args.name, build(EvalSettings, cli=args))
    except HifError as exc:
        print(f"hif: {exc}", file=sys.stderr)
        return 2
