"""Training checkpoints and model files: how they are written, read, tagged and refused.

Two kinds of file, each with a format tag (a string ``"ddgan_core.<what>/<version>"``):

* a **training state** (``checkpoint.pt``, resumable): ``torch.save`` of a dict of state dicts
  and plain values with the tag under ``"format"``, read with ``torch.load(weights_only=True)``,
  so loading never runs pickled code. Tags :data:`DDPM_CHECKPOINT`, :data:`DDGAN_CHECKPOINT`.
* a **model file** (the EMA weights that are committed and shared): safetensors, the tensors
  (fp16) plus one metadata entry, ``"ddgan_core"``, that holds JSON with the format tag under
  ``"format"`` and the configuration that rebuilds the network under ``"config"``. One entry,
  not one per field, because safetensors writes its metadata map in a random order: with a
  single entry the same weights always give the same bytes (and the same SHA-256 in a result
  manifest). Tags :data:`DDPM_MODEL` (``model_ema.safetensors``) and :data:`DDGAN_GENERATOR`
  (``generator_ema.safetensors``). The torch files that held them before (``model_ema.pt``:
  weights under ``"model"``; ``generator_ema.pt``: under ``"state_dict"``) are still read, and
  :func:`convert_entry` rewrites a result-cache entry's ones as safetensors, bit for bit.

Every file is written aside and renamed (:func:`ddgan_core.cache.atomic_write_bytes`), so a
reader, a second writer or a ``kill -9`` never sees a torn file. Every failure to read one is a
:class:`CheckpointError` (a ``ValueError``) whose message is one line naming the file and the fix;
a missing file is ``FileNotFoundError``.
"""

from __future__ import annotations

import io
import json
import os
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = [
    "DDGAN_CHECKPOINT",
    "DDGAN_GENERATOR",
    "DDPM_CHECKPOINT",
    "DDPM_MODEL",
    "LEGACY_MODEL_FILES",
    "MODEL_FILES",
    "CheckpointError",
    "convert_entry",
    "find_model_file",
    "half_state_dict",
    "load_checkpoint",
    "model_kind",
    "one_line",
    "read_model_file",
    "remove_stale_temporaries",
    "require_format",
    "save_checkpoint",
    "save_model_file",
]

#: Format tags of the training states and model files of the two models.
DDPM_CHECKPOINT = "ddgan_core.ddpm_checkpoint/1"
DDPM_MODEL = "ddgan_core.ddpm_model_ema/1"
DDGAN_CHECKPOINT = "ddgan_core.ddgan_checkpoint/1"
DDGAN_GENERATOR = "ddgan_core.generator_ema/1"
#: A progressive-distillation student (:mod:`ddgan_core.distillation`), one per round.
DISTILLED_STUDENT = "ddgan_core.distilled_student/1"
#: The model file each trainer writes when it finishes, by model.
MODEL_FILES = {"ddpm": "model_ema.safetensors", "ddgan": "generator_ema.safetensors"}
#: The torch files that held the same weights before, still read.
LEGACY_MODEL_FILES = {"ddpm": "model_ema.pt", "ddgan": "generator_ema.pt"}
_MODEL_FORMATS = {DDPM_MODEL: "ddpm", DDGAN_GENERATOR: "ddgan", DISTILLED_STUDENT: "student"}
_TRAINING_FORMATS = (DDPM_CHECKPOINT, DDGAN_CHECKPOINT)
#: Where the torch model files kept their weights (DDPM, DDGAN).
_LEGACY_WEIGHT_KEYS = ("model", "state_dict")
_METADATA_KEY = "ddgan_core"


class CheckpointError(ValueError):
    """A checkpoint or model file is corrupt, of another kind, or does not fit the network."""


def one_line(err: BaseException, limit: int = 200) -> str:
    """The first line of ``err``'s message, at most ``limit`` characters (for one-line errors)."""
    return (str(err).strip().splitlines() or [""])[0][:limit]


# --------------------------------------------------------------------------------------------
# training states (torch)
# --------------------------------------------------------------------------------------------


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """``torch.save`` of a dict of state dicts and plain values, written atomically.

    The bytes go to a uniquely named hidden temporary file beside ``path`` and replace it in one
    rename (:func:`ddgan_core.cache.atomic_write_bytes`), so a reader, a second writer or a
    ``kill -9`` never leaves a torn file: ``path`` holds either the old or the new checkpoint.
    """
    from .cache import atomic_write_bytes

    path = Path(path)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint written by :func:`save_checkpoint` (tensors only, ``weights_only``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means a bad file
        raise CheckpointError(
            f"checkpoint {path} is corrupt or not a ddgan_core checkpoint ({type(err).__name__}: "
            f"{one_line(err)}); delete it to retrain, or restore it from the result cache or git"
        ) from None


def require_format(state: Any, expected: str, path: str | os.PathLike, what: str,
                   fix: str = "train into another folder or delete it") -> dict:
    """``state`` when it is a dict tagged ``expected``, else a one-line :class:`CheckpointError`
    saying that ``path`` is not ``what`` and ``fix``."""
    found = state.get("format") if isinstance(state, dict) else None
    if found != expected:
        raise CheckpointError(f"{path} is not {what} (format {found!r}, expected {expected!r}); "
                              f"{fix}")
    return state


def remove_stale_temporaries(folder: str | os.PathLike) -> int:
    """Delete the hidden ``.*.tmp`` files a killed writer left in ``folder``; returns the count."""
    removed = 0
    for tmp in Path(folder).glob(".*.tmp"):
        if tmp.is_file():
            tmp.unlink(missing_ok=True)
            removed += 1
    return removed


def half_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """State dict with floating tensors in fp16 (for small committed model files)."""
    return {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}


# --------------------------------------------------------------------------------------------
# model files (safetensors; the torch files of before are read too)
# --------------------------------------------------------------------------------------------


def model_file_bytes(tensors: Mapping[str, torch.Tensor], info: Mapping[str, Any]) -> bytes:
    """The safetensors bytes of a model file: ``tensors`` (on the CPU, contiguous) and ``info``
    (JSON with at least ``"format"``) as the single metadata entry ``"ddgan_core"``."""
    from safetensors.torch import save

    if "format" not in info:
        raise ValueError("a model file's info needs its format tag under 'format'")
    plain = {name: value.detach().cpu().contiguous() for name, value in tensors.items()}
    return save(plain, metadata={_METADATA_KEY: json.dumps(dict(info), sort_keys=True)})


def save_model_file(path: str | os.PathLike, tensors: Mapping[str, torch.Tensor],
                    info: Mapping[str, Any]) -> Path:
    """Write a model file (:func:`model_file_bytes`) atomically; returns ``path``."""
    from .cache import atomic_write_bytes

    path = Path(path)
    atomic_write_bytes(path, model_file_bytes(tensors, info))
    return path


def _looks_like_safetensors(path: Path) -> bool:
    """A safetensors file starts with the little-endian length of a JSON header, then ``{``."""
    with open(path, "rb") as handle:
        head = handle.read(9)
    if len(head) < 9 or head[8:9] != b"{":
        return False
    (length,) = struct.unpack("<Q", head[:8])
    return length <= path.stat().st_size - 8


def read_model_file(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``(tensors, info)`` of a model file: safetensors, or a torch file of before.

    ``tensors`` are on the CPU as stored (fp16); ``info`` holds ``format`` (``None`` for the
    untagged DDPM files of the first version), ``config`` and whatever else was stored. A torch
    file that holds no weights gives ``tensors = {}`` and its values in ``info``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found")
    if not _looks_like_safetensors(path):
        state = load_checkpoint(path)
        if not isinstance(state, dict):
            return {}, {"format": None}
        info = {k: v for k, v in state.items() if k not in _LEGACY_WEIGHT_KEYS}
        weights = next((state[k] for k in _LEGACY_WEIGHT_KEYS if k in state), {})
        return (dict(weights) if isinstance(weights, dict) else {}), {"format": None, **info}
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
        info = json.loads(metadata.get(_METADATA_KEY, "{}"))
    except Exception as err:  # noqa: BLE001 - safetensors and json raise their own types
        raise CheckpointError(
            f"model file {path} is corrupt or not a ddgan_core model file ({type(err).__name__}: "
            f"{one_line(err)}); restore it from the result cache or git, or retrain"
        ) from None
    if not isinstance(info, dict):
        raise CheckpointError(f"model file {path}: its '{_METADATA_KEY}' metadata is not a JSON "
                              "object; restore it from the result cache or git, or retrain")
    return tensors, {"format": None, **info}


def model_kind(path: str | os.PathLike) -> str:
    """``"ddpm"``, ``"ddgan"`` or ``"student"`` (a distilled student): which model the model
    file ``path`` holds (one-line :class:`CheckpointError` for a training state or any other
    file)."""
    _, info = read_model_file(path)
    fmt = info.get("format")
    if fmt in _MODEL_FORMATS:
        return _MODEL_FORMATS[fmt]
    if fmt is None and "config" in info:  # DDPM files written before the format tag
        return "ddpm"
    hint = ""
    if fmt in _TRAINING_FORMATS:
        hint = (f"; it is a training state: sample from {MODEL_FILES['ddgan']} (DDGAN) or "
                f"{MODEL_FILES['ddpm']} (DDPM), written when training finishes")
    raise CheckpointError(f"{path} is not a model file that sample can use (format {fmt!r})"
                          f"{hint}")


def find_model_file(folder: str | os.PathLike, model: str) -> Path:
    """The model file of ``model`` (``"ddpm"`` or ``"ddgan"``) in ``folder``: the safetensors
    file, else the torch file of before; ``FileNotFoundError`` naming both when neither is
    there."""
    folder = Path(folder)
    for name in (MODEL_FILES[model], LEGACY_MODEL_FILES[model]):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"{folder} has no {MODEL_FILES[model]} (nor the older "
                            f"{LEGACY_MODEL_FILES[model]})")


def convert_entry(entry: str | os.PathLike, note: str = "") -> list[str]:
    """Rewrite the torch model files of a verified result-cache entry as safetensors.

    Each ``model_ema.pt`` / ``generator_ema.pt`` becomes ``model_ema.safetensors`` /
    ``generator_ema.safetensors`` holding the same tensors, checked bit for bit (dtype, shape
    and every value) and the same format tag and configuration, before
    :func:`ddgan_core.cache.replace_entry_file` swaps it in and records the conversion in the
    manifest. The entry's key (its ``config.json``) does not change. Returns the new file names
    (none when the entry has no torch model file).
    """
    from safetensors.torch import load

    from .cache import replace_entry_file

    entry = Path(entry)
    converted = []
    for model, old in LEGACY_MODEL_FILES.items():
        if not (entry / old).is_file():
            continue
        tensors, info = read_model_file(entry / old)
        expected = DDPM_MODEL if model == "ddpm" else DDGAN_GENERATOR
        tagged = info.get("format") is not None
        if info.get("format") not in (None, expected) or not tensors or "config" not in info:
            raise CheckpointError(f"{entry / old} is not a {model} model file (format "
                                  f"{info.get('format')!r}); not converted")
        info["format"] = expected
        data = model_file_bytes(tensors, info)
        again = load(data)
        same = again.keys() == tensors.keys() and all(
            again[k].dtype == v.dtype and again[k].shape == v.shape and torch.equal(again[k], v)
            for k, v in tensors.items())
        if not same:  # pragma: no cover - safetensors stores tensors as they are
            raise CheckpointError(f"{entry / old}: the safetensors copy differs; not converted")
        replace_entry_file(entry, old, MODEL_FILES[model], data, note or (
            "model weights as safetensors; tensors (checked bit for bit) and configuration "
            "unchanged, " + ("format tag unchanged" if tagged else
                             f"format tag {info['format']} added (the file had none)")))
        converted.append(MODEL_FILES[model])
    return converted
