"""A second, independent FashionMNIST feature extractor, ``fmnist-cnn-b``.

Metrics on classifier features depend on the classifier: two generators can swap places when
the extractor changes. So the project pins a second extractor that shares nothing with
``fmnist-cnn-v1`` (:mod:`ddgan_core.metrics.features`) but the data set, and reports the metrics
on both (``evaluate_samples(..., second_extractor=True)``).

Architecture (``fmnist-cnn-b``, ~131k parameters, no normalisation layers)::

    conv5x5 stride 2, 32 ch -> ReLU                         (28 -> 14)
    conv3x3, 64 ch -> ReLU -> maxpool2                      (14 -> 7)
    conv3x3, 96 ch -> ReLU -> maxpool2                      (7 -> 3)
    flatten (864) -> linear 64  ==> z
    features = (z - mean) / std  (64-d; mean and std of z over the train split, frozen buffers)
    logits = linear 10 (dropout 0.2 (ReLU(z)))

Recipe (:data:`SECOND_TRAIN_CONFIG`), unlike v1's (BatchNorm, SGD + Nesterov, OneCycle, flips
and shifts, seed 0, 128-d): AdamW, linear warm-up then cosine decay, label smoothing 0.1, no
augmentation, batch 128, seed 1, one CPU thread. The features are the 64-d penultimate layer
*before* its ReLU, standardised per dimension with the train split's statistics (stored in the
checkpoint) so that KID's polynomial kernel sees unit-scale features as it does with v1's
BatchNorm features.

Pinned like v1: fp16 safetensors ``assets/fmnist_cnn_b.safetensors`` with a JSON manifest
(recipe, test accuracy, sha256, torch version, seconds) and its SHA-256 in
:data:`SECOND_SHA256`; loading refuses any other file with a :class:`CheckpointError` that says
how to restore or retrain it. Reference statistics (train split for FID, held-out test split
for the floor) are cached by :func:`~ddgan_core.metrics.fid.reference_stats` exactly like v1's,
keyed by this checkpoint's sha256.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..cache import atomic_write_bytes
from ..checkpoint import CheckpointError
from ..device import default_device, device_description
from ..training import warmup_cosine
from .features import (
    ASSET_DIR,
    check_not_pinned,
    classifier_accuracy,
    extract_features,
    save_trained_extractor,
)

SECOND_NAME = "fmnist-cnn-b"
SECOND_FEATURE_DIM = 64
SECOND_CHECKPOINT = ASSET_DIR / "fmnist_cnn_b.safetensors"
SECOND_MANIFEST = ASSET_DIR / "fmnist_cnn_b.json"
#: Where :func:`train_second_extractor` writes by default (relative to the working directory).
SECOND_TRAIN_OUT = Path("classifier") / "fmnist_cnn_b.safetensors"
#: SHA-256 of the pinned checkpoint ``assets/fmnist_cnn_b.safetensors`` (also in its manifest).
SECOND_SHA256 = "e79223417d7bbfaf0d97a0c0c1db7376f890ce0efb2ab1f7b58a52f44302280a"
#: Training recipe of the pinned checkpoint (the :func:`train_second_extractor` defaults).
SECOND_TRAIN_CONFIG = {
    "epochs": 10,
    "batch_size": 128,
    "optimizer": "AdamW(betas=(0.9, 0.999), eps=1e-8)",
    "lr": 2e-3,
    "weight_decay": 0.05,
    "schedule": "linear warm-up over the first epoch, then cosine decay to 0 (per step)",
    "augmentation": "none",
    "loss": "cross-entropy with label smoothing 0.1 (log_softmax * smoothed one-hot)",
    "label_smoothing": 0.1,
    "dropout": 0.2,
    "seed": 1,
    "num_threads": 1,
}

_RESTORE_HINT = (
    "Restore the file from git (`git checkout -- ddgan_core/assets/fmnist_cnn_b.safetensors`) or "
    "retrain it with `ddgan_core.metrics.second.train_second_extractor(out=SECOND_CHECKPOINT, "
    "overwrite_pinned=True)` (seed 1 on CPU with one thread and the same torch version "
    "reproduces the pinned file; a different file gets a different checksum: then set "
    "SECOND_SHA256 in ddgan_core/metrics/second.py to the sha256 that the new manifest records)."
)


class FashionCNNB(nn.Module):
    """The second extractor's classifier (see the module docstring); images in [-1, 1]."""

    def __init__(self, dropout: float = SECOND_TRAIN_CONFIG["dropout"]):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, 32, 5, stride=2, padding=2),
            nn.ReLU(inplace=True),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(64, 96, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        self.fc1 = nn.Linear(96 * 3 * 3, SECOND_FEATURE_DIM)
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.Linear(SECOND_FEATURE_DIM, 10)
        self.register_buffer("feat_mean", torch.zeros(SECOND_FEATURE_DIM))
        self.register_buffer("feat_std", torch.ones(SECOND_FEATURE_DIM))

    def penultimate(self, x: torch.Tensor) -> torch.Tensor:
        """``z``: the 64-d penultimate layer before its ReLU."""
        return self.fc1(self.conv(x).flatten(1))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Features ``[N, 64]``: ``z`` standardised with the train split's mean and std."""
        return (self.penultimate(x) - self.feat_mean) / self.feat_std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.dropout(F.relu(self.penultimate(x))))


# ----------------------------------------------------------------------------------------------
# checkpoint I/O


def save_second_checkpoint(model: FashionCNNB, path: str | os.PathLike) -> str:
    """Write ``model`` as fp16 safetensors (atomically, one metadata key so the bytes are
    reproducible); return the file's sha256."""
    from safetensors.torch import save

    tensors = {
        name: value.detach().cpu().half().contiguous()
        for name, value in model.state_dict().items()
    }
    data = save(tensors, metadata={"name": f"{SECOND_NAME} float16"})
    atomic_write_bytes(Path(path), data)
    return hashlib.sha256(data).hexdigest()


def load_second_extractor(
    path: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    expected_sha256: str | None = SECOND_SHA256,
) -> FashionCNNB:
    """Load ``fmnist-cnn-b`` (fp32, eval mode) after checking the file's SHA-256.

    ``path`` defaults to the pinned asset, ``expected_sha256`` to :data:`SECOND_SHA256`
    (``None`` skips the check, e.g. for a freshly retrained file). A missing, modified,
    unparsable or ill-fitting file raises :class:`CheckpointError` saying how to restore or
    retrain it. The model has ``.sha256`` and ``.extractor_name`` attributes.
    """
    from safetensors.torch import load

    path = Path(path) if path is not None else SECOND_CHECKPOINT
    device = torch.device(device or default_device())
    if not path.is_file():
        raise CheckpointError(
            f"Second feature-extractor checkpoint ({SECOND_NAME}) not found at {path}. "
            f"{_RESTORE_HINT}"
        )
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if expected_sha256 is not None and digest != expected_sha256:
        raise CheckpointError(
            f"Second feature-extractor checkpoint {path} is corrupt or not the pinned "
            f"{SECOND_NAME}: its sha256 is {digest}, expected {expected_sha256}. {_RESTORE_HINT}"
        )
    try:
        tensors = load(data)
    except Exception as err:  # safetensors raises its own error types
        raise CheckpointError(
            f"Second feature-extractor checkpoint {path} cannot be parsed ({err}). "
            f"{_RESTORE_HINT}"
        ) from err
    model = FashionCNNB()
    try:
        model.load_state_dict({k: v.float() for k, v in tensors.items()}, strict=True)
    except RuntimeError as err:
        raise CheckpointError(
            f"Second feature-extractor checkpoint {path} does not fit {SECOND_NAME}: "
            f"{str(err).splitlines()[0]}. {_RESTORE_HINT}"
        ) from err
    model = model.float().to(device).eval()
    model.sha256 = digest
    model.extractor_name = SECOND_NAME
    return model


def load_second_manifest(path: str | os.PathLike | None = None) -> dict:
    """The JSON manifest of the second extractor (empty dict when absent)."""
    path = Path(path) if path is not None else SECOND_MANIFEST
    return json.loads(path.read_text()) if path.is_file() else {}


_EXTRACTORS: dict[str, FashionCNNB] = {}


def get_second_extractor(device: str | torch.device | None = None) -> FashionCNNB:
    """The pinned second extractor on ``device``, loaded (checksum verified) once and cached."""
    device = str(torch.device(device or default_device()))
    if device not in _EXTRACTORS:
        model = load_second_extractor(device=device)
        if torch.device(device).type == "cpu":
            model = model.to(memory_format=torch.channels_last)
        _EXTRACTORS[device] = model
    return _EXTRACTORS[device]


def extract_second_features(images: torch.Tensor, model: FashionCNNB | None = None,
                            batch_size: int = 1000, device=None) -> torch.Tensor:
    """``fmnist-cnn-b`` features (float32, CPU, ``[N, 64]``) of float images in [-1, 1]."""
    if model is None:
        model = get_second_extractor(device)
    if images.shape[0] == 0:
        return torch.zeros(0, SECOND_FEATURE_DIM)
    return extract_features(images, model=model, batch_size=batch_size, progress=False)


# ----------------------------------------------------------------------------------------------
# training


@torch.no_grad()
def _standardise(model: FashionCNNB, images: torch.Tensor, batch_size: int = 1000) -> None:
    """Set ``feat_mean``/``feat_std`` to the per-dimension mean and std (ddof=1) of ``z``."""
    model.eval()
    z = torch.cat([
        model.penultimate(images[s: s + batch_size]).double()
        for s in range(0, images.shape[0], batch_size)
    ])
    model.feat_mean.copy_(z.mean(0).float())
    model.feat_std.copy_(z.std(0).clamp_min(1e-6).float())


def train_second_extractor(
    out: str | os.PathLike | None = SECOND_TRAIN_OUT,
    epochs: int = SECOND_TRAIN_CONFIG["epochs"],
    seed: int = SECOND_TRAIN_CONFIG["seed"],
    *,
    manifest: str | os.PathLike | None = None,
    batch_size: int = SECOND_TRAIN_CONFIG["batch_size"],
    lr: float = SECOND_TRAIN_CONFIG["lr"],
    weight_decay: float = SECOND_TRAIN_CONFIG["weight_decay"],
    num_threads: int | None = SECOND_TRAIN_CONFIG["num_threads"],
    max_train_images: int | None = None,
    overwrite_pinned: bool = False,
    log=print,
) -> dict:
    """Train ``fmnist-cnn-b`` on the FashionMNIST train split (recipe:
    :data:`SECOND_TRAIN_CONFIG`) and save it as fp16 safetensors with a JSON manifest.

    Deterministic: model init and dropout from ``torch.manual_seed(seed)``, data order from a
    separate seeded CPU generator, ``torch.use_deterministic_algorithms(True)``; on CPU with
    ``num_threads`` threads (default one) the same seed and torch version give the same file.
    ``out`` defaults to :data:`SECOND_TRAIN_OUT` under the working directory (``None`` skips
    saving); ``manifest`` defaults to ``out`` with ``.json``. Paths inside the packaged assets
    are refused unless ``overwrite_pinned``. After training the feature standardisation is set
    from the train split, and the test accuracy of the saved fp16 weights is measured on the
    10,000 test images. Returns the manifest dict (plus ``"model"``).
    """
    from ddgan_core.data import batches, load_fashion_mnist

    if manifest is None and out is not None:
        manifest = Path(out).with_suffix(".json")
    check_not_pinned([out, manifest], overwrite_pinned, default_out=SECOND_TRAIN_OUT)
    device = torch.device("cpu")
    old_threads = torch.get_num_threads()
    old_det = torch.are_deterministic_algorithms_enabled()
    if num_threads:
        torch.set_num_threads(num_threads)
    torch.use_deterministic_algorithms(True)
    try:
        t0, cpu0 = time.perf_counter(), time.process_time()
        train_x, train_y = load_fashion_mnist("train")
        test_x, test_y = load_fashion_mnist("test")
        if max_train_images is not None:
            train_x, train_y = train_x[:max_train_images], train_y[:max_train_images]
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        model = FashionCNNB().to(memory_format=torch.channels_last)
        decay = [p for p in model.parameters() if p.ndim > 1]
        no_decay = [p for p in model.parameters() if p.ndim <= 1]
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": weight_decay},
             {"params": no_decay, "weight_decay": 0.0}],
            lr=lr, betas=(0.9, 0.999), eps=1e-8,
        )
        steps_per_epoch = train_x.shape[0] // batch_size
        total = epochs * steps_per_epoch
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: warmup_cosine(step, total, steps_per_epoch)
        )
        smooth = SECOND_TRAIN_CONFIG["label_smoothing"]
        index = torch.arange(train_x.shape[0])
        epoch_seconds = []
        for epoch in range(epochs):
            model.train()
            t_epoch = time.perf_counter()
            loss_sum, seen = 0.0, 0
            for idx in batches(index, batch_size, generator):
                x = train_x[idx].contiguous(memory_format=torch.channels_last)
                target = F.one_hot(train_y[idx], 10).float() * (1 - smooth) + smooth / 10
                loss = -(F.log_softmax(model(x), dim=1) * target).sum(1).mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                loss_sum += loss.item() * idx.shape[0]
                seen += idx.shape[0]
            epoch_seconds.append(round(time.perf_counter() - t_epoch, 1))
            log(f"epoch {epoch + 1}/{epochs}: train loss {loss_sum / max(seen, 1):.4f} "
                f"({epoch_seconds[-1]:.1f} s)")
        train_wall = time.perf_counter() - t0
        _standardise(model, train_x)
        model = model.to(memory_format=torch.contiguous_format)
        acc_fp32 = classifier_accuracy(model, test_x, test_y)
        info = {
            "name": SECOND_NAME,
            "feature_dim": SECOND_FEATURE_DIM,
            "feature_layer": "penultimate linear 864->64 before ReLU, standardised per dimension "
                             "with the train split's mean and std (buffers feat_mean, feat_std)",
            "architecture": "conv5x5/2 32 -> ReLU; conv3x3 64 -> ReLU -> maxpool2; conv3x3 96 "
                            "-> ReLU -> maxpool2; linear 864->64 (features); ReLU -> dropout "
                            "0.2 -> linear 10; no normalisation layers",
            "parameters": sum(p.numel() for p in model.parameters()),
            "test_accuracy_fp32": acc_fp32,
            "train_wall_time_s": round(train_wall, 1),
            "train_cpu_time_s": round(time.process_time() - cpu0, 1),
            "epoch_wall_times_s": epoch_seconds,
            "device": device_description(device),
            "torch_version": torch.__version__,
            "num_threads": torch.get_num_threads(),
            "config": {
                **SECOND_TRAIN_CONFIG,
                "epochs": epochs, "seed": seed, "batch_size": batch_size, "lr": lr,
                "weight_decay": weight_decay, "num_threads": torch.get_num_threads(),
                "max_train_images": max_train_images,
            },
        }
        return save_trained_extractor(info, model, out, manifest, save_second_checkpoint,
                                      load_second_extractor, test_x, test_y, acc_fp32, device)
    finally:
        torch.use_deterministic_algorithms(old_det)
        torch.set_num_threads(old_threads)


__all__ = [
    "SECOND_CHECKPOINT",
    "SECOND_FEATURE_DIM",
    "SECOND_MANIFEST",
    "SECOND_NAME",
    "SECOND_SHA256",
    "SECOND_TRAIN_CONFIG",
    "FashionCNNB",
    "extract_second_features",
    "get_second_extractor",
    "load_second_extractor",
    "load_second_manifest",
    "save_second_checkpoint",
    "train_second_extractor",
]
