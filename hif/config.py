"""Frozen settings, built once at start-up.

One definition per option serves as CLI flag, ``HIF_*`` environment variable and config-file key
(as Locust does). Precedence: CLI > env > file > default. A bad value fails at start-up with a
:class:`~hif.errors.ConfigError` naming its key.

>>> from hif.gateway.settings import GatewaySettings
>>> s = build(GatewaySettings, cli={"port": 9000}, env={"HIF_METRICS_PORT": "9191"})
>>> (s.port, s.metrics_port)
(9000, 9191)

Each settings class is a frozen, keyword-only dataclass whose fields are declared with
:func:`option`. ``add_options(parser, GatewaySettings, StoreSettings)`` adds their flags to an
argparse parser (deduplicating shared names); ``build(cls, cli=ns, file=path)`` makes the object.
The config file is TOML: keys at top level, or under a table named by the class's ``SECTION``.
Each component keeps its settings class beside it (``hif/gateway/settings.py``, ...); this module
holds only the machinery and the few constants several components share.

Why not pydantic-settings: it would replace ``_convert`` and the env lookup (about 60 lines), but
not the argparse side, which is what every command needs (flags generated from the same fields,
repeatable options such as ``--slo`` and ``--results-dir``, boolean ``--x/--no-x`` pairs, shared
flags deduplicated across classes); its CLI support parses into the model alone and would not
keep the runbook's flags byte for byte.
``tests/unit/harness/test_runbook_commands.py`` holds every runbook command line to its settings,
so a later switch cannot silently change a flag.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import os
import socket
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from hif.errors import ConfigError, PortInUseError

T = TypeVar("T")
ENV_PREFIX = "HIF_"
_MISSING = object()


def option(
    default: Any,
    *,
    help: str,
    flag: str | None = None,
    env: str | None = None,
    choices: typing.Sequence[Any] | None = None,
) -> Any:
    """Declare one setting: its default, its help text, and optional flag/env overrides."""
    return dataclasses.field(
        default=default,
        metadata={"help": help, "flag": flag, "env": env, "choices": tuple(choices) if choices else None},
    )


_KEEP = object()


def same_option(cls: type, name: str, default: Any = _KEEP) -> Any:
    """``cls``'s option ``name`` (help, choices, flag, env var), optionally with another default: an
    option two commands share is defined once, in the class that owns it.

    >>> from hif.harness.load.settings import LoadSettings
    >>> @dataclasses.dataclass(frozen=True, kw_only=True)
    ... class Demo:
    ...     concurrency: int = same_option(LoadSettings, "concurrency", 8)
    >>> Demo().concurrency
    8
    """
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    return dataclasses.field(default=f.default if default is _KEEP else default, metadata=f.metadata)


def flag_name(f: dataclasses.Field[Any]) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def env_name(f: dataclasses.Field[Any]) -> str:
    return f.metadata.get("env") or ENV_PREFIX + f.name.upper()


def _fields(cls: type) -> list[dataclasses.Field[Any]]:
    return [f for f in dataclasses.fields(cls) if "help" in f.metadata]


def _base_type(tp: Any) -> tuple[Any, bool]:
    """Strip ``X | None`` to ``(X, True)``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _convert(key: str, raw: Any, tp: Any) -> Any:
    base, optional = _base_type(tp)
    if raw is None or (optional and isinstance(raw, str) and raw == ""):
        if optional:
            return None
        raise ConfigError(key, "a value is required")
    try:
        if base is bool:
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"not a boolean: {raw!r}")
        if base is Path:
            return Path(os.path.expanduser(str(raw)))
        if base in (int, float, str):
            if base is int and isinstance(raw, float) and not raw.is_integer():
                raise ValueError(f"not an integer: {raw!r}")
            return base(raw)
        if typing.get_origin(base) is tuple:
            items = raw.split(",") if isinstance(raw, str) else list(raw)
            return tuple(str(i).strip() for i in items if str(i).strip())
    except (TypeError, ValueError) as exc:
        raise ConfigError(key, f"cannot read {raw!r} as {getattr(base, '__name__', base)}: {exc}") from exc
    return raw


def add_options(parser: argparse.ArgumentParser, *classes: type) -> None:
    """Add every option of ``classes`` as a flag; a name shared by two classes is added once."""
    seen: set[str] = set()
    for cls in classes:
        hints = typing.get_type_hints(cls)
        for f in _fields(cls):
            if f.name in seen:
                continue
            seen.add(f.name)
            base, _ = _base_type(hints[f.name])
            kwargs: dict[str, Any] = {
                "dest": f.name,
                "default": argparse.SUPPRESS,
                "help": f"{f.metadata['help']} (env {env_name(f)}; default {f.default!r})",
            }
            if f.metadata.get("choices"):
                kwargs["choices"] = f.metadata["choices"]
            if base is bool:
                kwargs["action"] = argparse.BooleanOptionalAction
            parser.add_argument(flag_name(f), **kwargs)


def read_file(path: Path | None) -> dict[str, Any]:
    """Read a TOML settings file; a missing or malformed file is a ConfigError."""
    if path is None:
        return {}
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError as exc:
        raise ConfigError("config", f"file not found: {path}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("config", f"{path} is not valid TOML: {exc}") from exc


def build(
    cls: type[T],
    *,
    cli: argparse.Namespace | Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    file: Mapping[str, Any] | Path | None = None,
    **overrides: Any,
) -> T:
    """Build ``cls`` from CLI > env > file > default; ``overrides`` beat everything (for tests)."""
    cli_map = vars(cli) if isinstance(cli, argparse.Namespace) else dict(cli or {})
    env_map = os.environ if env is None else env
    file_map = read_file(file) if isinstance(file, Path) or file is None else dict(file)
    section = getattr(cls, "SECTION", None)
    if section and isinstance(file_map.get(section), dict):
        file_map = {**file_map, **file_map[section]}
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in _fields(cls):
        raw = overrides.get(f.name, _MISSING)
        if raw is _MISSING:
            raw = cli_map.get(f.name, _MISSING)
        if raw is _MISSING and env_name(f) in env_map:
            raw = env_map[env_name(f)]
        if raw is _MISSING:
            raw = file_map.get(f.name, _MISSING)
        if raw is _MISSING:
            continue
        value = _convert(f.name, raw, hints[f.name])
        choices = f.metadata.get("choices")
        if choices and value not in choices:
            raise ConfigError(f.name, f"{value!r} is not one of {', '.join(map(str, choices))}")
        values[f.name] = value
    return cls(**values)


def positive(key: str, value: float, *, allow_zero: bool = False) -> None:
    """Validation helper for ``__post_init__``: reject negative (or zero) numbers."""
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(key, f"must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")


# --- the system under test ---------------------------------------------------------------------

DEFAULT_DATA_DIR = Path("/tmp/hif/data")
DEFAULT_CHAOS_PATH = Path("/tmp/hif/chaos.json")


def chaos_control_path(env: Mapping[str, str] | None = None) -> Path:
    """``CHAOS_CONTROL_PATH`` or ``/tmp/hif/chaos.json``: read by the explainer, written by the injector."""
    env = os.environ if env is None else env
    return Path(env.get("CHAOS_CONTROL_PATH") or DEFAULT_CHAOS_PATH)


SERVERS = ("uvicorn", "granian")


def ensure_port_free(component: str, host: str, port: int, flag: str) -> None:
    """Raise :class:`PortInUseError` when ``host:port`` cannot be listened on (port 0: any is fine).

    Checked before a server starts, so the user reads one line naming the flag that moves the port
    instead of a server library's traceback. The probe sets SO_REUSEADDR as the servers do, so a
    port left in TIME_WAIT by a previous run reads as free, as it is for them.
    """
    if not port:
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        raise PortInUseError(component, host, port, flag, f"unknown host: {exc}") from exc
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            reason = "already in use" if exc.errno == errno.EADDRINUSE else exc.strerror or str(exc)
            raise PortInUseError(component, host, port, flag, reason) from exc
