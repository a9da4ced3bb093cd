"""``hif featureset`` flags map onto the training settings (one definition: flag, env, file key)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hif.config import build
from hif.errors import ConfigError
from hif.explainer.training.cli import parser
from hif.explainer.training.settings import BuildSettings, EvalSettings


def test_build_flags_become_recipe_overrides() -> None:
    args = parser().parse_args(["build", "fs", "--epochs", "2", "--train-tokens", "500", "--out", "/tmp/x"])
    settings = build(BuildSettings, cli=args, env={})
    assert args.name == "fs" and settings.out == Path("/tmp/x")
    assert settings.recipe_overrides() == {"epochs": 2, "max_train_tokens": 500}


def test_env_names_do_not_collide_with_the_load_runner() -> None:
    args = parser().parse_args(["build"])
    settings = build(BuildSettings, cli=args, env={"HIF_SEED": "7", "HIF_FEATURESET_SEED": "3"})
    assert settings.seed == 3


def test_eval_defaults_and_bad_values() -> None:
    settings = build(EvalSettings, cli=parser().parse_args(["eval", "--json"]), env={})
    assert settings.json and settings.heldout_tokens == 10_000 and settings.store  # per held-out domain
    with pytest.raises(ConfigError, match="heldout_tokens"):
        build(EvalSettings, cli=parser().parse_args(["eval", "--heldout-tokens", "0"]), env={})
    assert settings.turns == 20
    assert build(EvalSettings, cli=parser().parse_args(["eval", "--turns", "6"]), env={}).turns == 6
    with pytest.raises(ConfigError, match="turns"):
        build(EvalSettings, cli=parser().parse_args(["eval"]), env={"HIF_FEATURESET_TURNS": "0"})
