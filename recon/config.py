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


def load_config(defaults: dict, path: str | os.PathLike | dict | None = None,
                overrides: Iterable[str] | None = None, extra: dict | None = None, *,
                open_keys: Iterable[str] = ()) -> dict:
    """``defaults`` <- YAML file at ``path`` (or a dict) <- ``extra`` <- ``KEY=VALUE`` overrides, strictly."""
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
    return apply_overrides(cfg, overrides, open_keys=open_keys)
