"""The one config loader of every trainer here: defaults <- YAML file <- ``extra`` dict <- ``--set KEY=VALUE``.

Strict: a key that the defaults do not have is an error naming it (a typo in a config must not be silently
ignored), except below the *open* keys a trainer names (e.g. ``model``, whose keys depend on the architecture,
or a loss's ``kwargs``), where anything goes. Overrides use dotted paths; list items by index::

    load_config(DEFAULTS, "configs/qf-gray.yaml", ["train.steps=2", "data.train.0.path=/x"])

Values of ``--set`` are parsed as YAML, numbers first (YAML 1.1 reads ``1e-3`` as a string). Every problem
raises :class:`recon.errors.InputError` naming the file (or ``--set``) and the key.
"""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Iterable

from recon.errors import InputError


def _is_open(where: str, open_keys: Iterable[str]) -> bool:
    return any(where == k or where.startswith(k + ".") for k in open_keys)


def merge(base: dict, override: dict | None, *, open_keys: Iterable[str] = (), where: str = "") -> dict:
    """``base`` with ``override`` merged in, recursively for dicts; unknown keys raise unless open."""
    open_keys = tuple(open_keys)
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        path = f"{where}.{key}" if where else str(key)
        if key not in base and not (where and _is_open(where, open_keys)) and not _is_open(path, open_keys):
            known = ", ".join(sorted(map(str, base))) or "none"
            raise InputError(None, f"unknown config key {path!r} (known at this level: {known})")
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            out[key] = merge(base[key], value, open_keys=open_keys, where=path)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_value(text: str) -> Any:
    """A ``--set`` value: int, else float, else YAML, else the text itself."""
    import yaml

    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(cfg: dict, overrides: Iterable[str] | None, *, open_keys: Iterable[str] = ()) -> dict:
    """``cfg`` with each ``KEY=VALUE`` set (dotted keys; integers index lists); unknown keys raise unless open."""
    open_keys = tuple(open_keys)
    cfg = copy.deepcopy(cfg)
    for item in overrides or []:
        if "=" not in item:
            raise InputError("--set", f"expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        parts = key.strip().split(".")
        node: Any = cfg
        for depth, part in enumerate(parts):
            here = ".".join(parts[:depth])
            last = depth == len(parts) - 1
            if isinstance(node, list):
                try:
                    index = int(part)
                    node[index]
                except (ValueError, IndexError):
                    raise InputError("--set", f"{key}: {part!r} is not an index of the list {here!r}") from None
                if last:
                    node[index] = parse_value(value)
                else:
                    node = node[index]
                continue
            if not isinstance(node, dict):
                raise InputError("--set", f"{key}: {here!r} is not a mapping")
            if part not in node and not (here and _is_open(here, open_keys)) \
                    and not _is_open(".".join(parts[:depth + 1]), open_keys):
                known = ", ".join(sorted(map(str, node))) or "none"
                raise InputError("--set", f"unknown config key {key!r} (known at {here or 'top level'}: {known})")
            if last:
                node[part] = parse_value(value)
            else:
                node = node.setdefault(part, {})
    return cfg


def read_yaml(path: str | os.PathLike) -> dict:
    """A YAML mapping from ``path``; a missing file, bad YAML or a non-mapping raise ``InputError``."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise InputError(p, "config file not found")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise InputError(p, f"not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise InputError(p, "config must be a YAML mapping")
    return data


#: the training keys every trainer reads the same way, and the least each may be: steps 0 (export or calibrate
#: without training), a learning rate of 0 (frozen), at least one sample a batch
LOWER_BOUNDS = {"train.steps": 0, "train.lr": 0, "train.batch": 1, "train.batch_size": 1}


def check_numbers(cfg: dict, defaults: dict, where: str = "") -> None:
    """Every value whose default is a number must be one (``'abc'`` for ``train.steps`` met ``int()`` deep in a
    trainer, as a traceback); a string that reads as a number (YAML 1.1 reads ``1e-3`` as one) becomes that
    number, in place. The keys of :data:`LOWER_BOUNDS` must not be below their bound. InputError naming the key."""
    for key, default in defaults.items():
        path = f"{where}.{key}" if where else str(key)
        value = cfg.get(key)
        if isinstance(default, dict) and isinstance(value, dict):
            check_numbers(value, default, path)
            continue
        if value is None or isinstance(default, bool) or not isinstance(default, (int, float)):
            continue
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise InputError(None, f"config key {path!r} must be a number, got {cfg[key]!r}") from None
            cfg[key] = int(value) if isinstance(default, int) and value.is_integer() else value
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InputError(None, f"config key {path!r} must be a number, got {value!r}")
        if path in LOWER_BOUNDS and not cfg[key] >= LOWER_BOUNDS[path]:
            raise InputError(None, f"config key {path!r} must be >= {LOWER_BOUNDS[path]}, got {cfg[key]!r}")


def load_config(defaults: dict, path: str | os.PathLike | dict | None = None,
                overrides: Iterable[str] | None = None, extra: dict | None = None, *,
                open_keys: Iterable[str] = ()) -> dict:
    """``defaults`` <- YAML file at ``path`` (or a dict) <- ``extra`` <- ``KEY=VALUE`` overrides, strictly
    (unknown keys; numbers where the defaults have numbers: :func:`check_numbers`)."""
    source = None
    if isinstance(path, dict):
        user = path
    elif path is not None:
        source = Path(path)
        user = read_yaml(source)
    else:
        user = {}
    try:
        cfg = merge(defaults, user, open_keys=open_keys)
    except InputError as exc:
        raise InputError(source, exc.problem) from None
    cfg = merge(cfg, extra or {}, open_keys=open_keys)
    cfg = apply_overrides(cfg, overrides, open_keys=open_keys)
    try:
        check_numbers(cfg, defaults)
    except InputError as exc:
        raise InputError(source if source is not None and not overrides else None, exc.problem) from None
    return cfg


def build_from_config(factory, config, what: str = "model"):
    """``factory(config)``, a model's constructor refusing a setting (``ValueError`` / ``TypeError``, e.g. a width
    of 0 or an unknown key) becoming one InputError line that names the config section ``what``."""
    try:
        return factory(config)
    except (ValueError, TypeError) as exc:
        raise InputError(None, f"config section {what!r}: {exc}") from None
