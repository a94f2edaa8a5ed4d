"""Run profiles: one place that says how big every experiment is.

``smoke``: seconds per notebook, for tests and CI only; its numbers mean nothing.
``cpu``: the reference run on a laptop-class 2-core CPU (each model within about an hour).
``full``: paper scale on one GPU.

A profile is a flat mapping of parameter names to values. Notebooks and the command line take a
profile name plus overrides; unknown names are errors that list the valid ones.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

_BASE: dict[str, Any] = {
    # every run
    "seed": 0,
    # chapter 1: data and the forward process
    "forward_timesteps": 1000,      # T of the linear and cosine schedules shown
    "forward_vp_timesteps": 4,      # T of DDGAN's discrete VP schedule shown
    "forward_examples": 8,          # images shown per row of the noising figure
    "forward_snr_points": 200,      # points of the SNR curve
    # evaluation
    "fid_samples": 10_000,          # generated images per FID/KID/PR evaluation
    "classifier_epochs": 12,        # feature-extractor training (metrics)
}

PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {
        **_BASE,
        "forward_timesteps": 50,
        "forward_examples": 4,
        "forward_snr_points": 20,
        "fid_samples": 256,
        "classifier_epochs": 1,
    },
    "cpu": {**_BASE, "fid_samples": 2_000},
    "full": {**_BASE, "fid_samples": 10_000},
}

DESCRIPTIONS = {
    "smoke": "seconds per notebook; tests and CI only, numbers meaningless",
    "cpu": "reference run on a 2-core CPU; small networks, FID on a few thousand samples",
    "full": "paper scale on one GPU (about ten minutes on an H200)",
}


def get_profile(name: str, **overrides: Any) -> dict[str, Any]:
    """Return a copy of profile ``name`` with ``overrides`` applied.

    ``None`` overrides are ignored (a notebook parameter left at ``None`` means "from the
    profile"). An unknown profile or parameter name raises ``ValueError`` listing the valid ones;
    an override of the wrong type (e.g. a string for an integer) is converted or rejected.
    """
    if name not in PROFILES:
        raise ValueError(f"profile={name!r} is unknown; valid profiles: {sorted(PROFILES)}")
    config = copy.deepcopy(PROFILES[name])
    apply_overrides(config, {k: v for k, v in overrides.items() if v is not None})
    config["profile"] = name
    return config


def apply_overrides(config: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Apply ``overrides`` in place, checking names and coercing to the default's type."""
    unknown = sorted(set(overrides) - set(config))
    if unknown:
        raise ValueError(
            f"unknown parameter name(s) {unknown}; valid names: {sorted(config)}"
        )
    for key, value in overrides.items():
        config[key] = _coerce(key, value, config[key])
    return config


def parse_assignments(items: list[str] | None) -> dict[str, Any]:
    """Parse ``["key=value", ...]`` from the command line (values parsed as JSON when possible)."""
    import json

    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"--set {item!r}: expected key=value")
        key, raw = item.split("=", 1)
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out


def _coerce(key: str, value: Any, default: Any) -> Any:
    """Convert ``value`` to the type of ``default`` (papermill and ``--set`` pass strings)."""
    kind = type(default)
    try:
        if default is None or (type(value) is kind):
            return value
        if kind is bool and str(value).lower() in {"true", "false", "1", "0"}:
            return str(value).lower() in {"true", "1"}
        if kind is int and not isinstance(value, bool) and float(value) == int(float(value)):
            return int(float(value))
        if kind is float and not isinstance(value, bool):
            return float(value)
        if kind in (list, tuple) and isinstance(value, (list, tuple)):
            return kind(value)
        if kind is str:
            return str(value)
    except (TypeError, ValueError):
        pass
    raise ValueError(
        f"parameter {key}={value!r} has the wrong type; expected {kind.__name__} "
        f"like the default {default!r}"
    )


def describe() -> str:
    """A table of every profile's parameters (``python -m ddgan_core profiles``)."""
    names = sorted(PROFILES)
    keys = sorted(_BASE)
    width = max(len(k) for k in keys)
    lines = [f"{'parameter':<{width}}  " + "  ".join(f"{n:>10}" for n in names)]
    for key in keys:
        lines.append(
            f"{key:<{width}}  " + "  ".join(f"{PROFILES[n][key]!s:>10}" for n in names)
        )
    lines.append("")
    lines += [f"{n}: {DESCRIPTIONS[n]}" for n in names]
    return "\n".join(lines)
