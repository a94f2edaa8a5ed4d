"""FashionMNIST feature extractor: a small CNN classifier whose penultimate layer gives the
features for FID, KID, precision/recall and density/coverage.

No Inception weights can be downloaded where this project is built, so the metrics use a
classifier of the project's own, trained on the FashionMNIST train split with a fixed seed and
pinned by the SHA-256 of its checkpoint (:data:`CHECKPOINT_SHA256`). Every metric is reported
with that checksum, so numbers from different extractors are never mixed up.

Architecture (``fmnist-cnn-v1``, 242k parameters)::

    [conv3x3 -> BN -> ReLU -> maxpool2] x 3 with 32, 64, 128 channels  (28 -> 14 -> 7 -> 3)
    flatten (1152) -> linear 128 -> BN  ==> features (128-d)
    -> ReLU -> dropout 0.3 -> linear 10  ==> logits

The features are the penultimate layer taken after its BatchNorm and *before* its ReLU, so no
dimension is clamped at zero and the feature covariance has full rank. The checkpoint is stored
in fp16 (safetensors, ~0.5 MB) and loaded into an fp32 model: features are always computed in
fp32.
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
from ..checkpoint import CheckpointError  # noqa: F401 - the one checkpoint error, re-exported
from ..device import default_device, device_description
from ..training import progress_bar

EXTRACTOR_NAME = "fmnist-cnn-v1"
FEATURE_DIM = 128
ASSET_DIR = Path(__file__).resolve().parent.parent / "assets"
DEFAULT_CHECKPOINT = ASSET_DIR / "fmnist_classifier.safetensors"
DEFAULT_MANIFEST = ASSET_DIR / "fmnist_classifier.json"
#: Where ``train classifier`` writes by default: relative to the working directory, never the
#: packaged asset (replacing that takes ``--overwrite-pinned``, ``overwrite_pinned=True``).
DEFAULT_TRAIN_OUT = Path("classifier") / "fmnist_classifier.safetensors"
#: ``train_classifier(manifest=MANIFEST_BESIDE_OUT)``: the manifest is ``out`` with ``.json``.
MANIFEST_BESIDE_OUT = "beside-out"
#: SHA-256 of the pinned checkpoint ``assets/fmnist_classifier.safetensors`` (also in the manifest).
CHECKPOINT_SHA256 = "4b03992b3c25df635e4517f3c2c694b71d19b75cb45dca51b3c3670dbf58b5e5"
#: Default training recipe of the pinned checkpoint (``train_classifier`` defaults).
DEFAULT_TRAIN_CONFIG = {
    "epochs": 15,
    "batch_size": 256,
    "optimizer": "SGD(momentum=0.9, nesterov=True)",
    "max_lr": 0.1,
    "weight_decay": 5e-4,
    "schedule": "OneCycleLR(pct_start=0.25, cosine)",
    "augmentation": "random horizontal flip p=0.5; random translation up to 2 px (pad -1)",
    "loss": "cross-entropy (log_softmax * one-hot)",
    "seed": 0,
    "num_threads": 2,
}

_RESTORE_HINT = (
    "Restore the file from git (`git checkout -- ddgan_core/assets/fmnist_classifier.safetensors`) "
    "or retrain it with `python -m ddgan_core train classifier --overwrite-pinned` (seed 0 "
    "reproduces the pinned file byte for byte with the same torch version on CPU; a different "
    "file gets a different checksum: then set CHECKPOINT_SHA256 in "
    "ddgan_core/metrics/features.py to the sha256 that the new manifest records)."
)


class FashionCNN(nn.Module):
    """Small CNN classifier for 28x28 grayscale images in [-1, 1]; see the module docstring."""

    def __init__(self, dropout: float = 0.3):
        super().__init__()
        layers: list[nn.Module] = []
        channels = (1, 32, 64, 128)
        for c_in, c_out in zip(channels[:-1], channels[1:], strict=True):
            layers += [
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
        self.conv = nn.Sequential(*layers)
        self.fc1 = nn.Linear(128 * 3 * 3, FEATURE_DIM, bias=False)
        self.bn1 = nn.BatchNorm1d(FEATURE_DIM)
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.Linear(FEATURE_DIM, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features ``[N, 128]`` (after BatchNorm, before ReLU)."""
        return self.bn1(self.fc1(self.conv(x).flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.dropout(F.relu(self.features(x))))


# ----------------------------------------------------------------------------------------------
# checkpoint I/O


def check_not_pinned(paths: list[str | os.PathLike | None], overwrite_pinned: bool,
                     default_out: str | os.PathLike = DEFAULT_TRAIN_OUT) -> None:
    """Refuse to write any of ``paths`` inside the packaged assets unless ``overwrite_pinned``.

    Writing over a pinned extractor in ``assets/`` changes its SHA-256, after which every
    evaluation fails its checksum, so it takes an explicit ``--overwrite-pinned``
    (``default_out``: where the extractor's training writes otherwise, named in the error).
    """
    if overwrite_pinned:
        return
    assets = ASSET_DIR.resolve()
    for path in paths:
        if path is not None and assets in Path(path).resolve().parents:
            raise ValueError(
                f"refusing to write {path}: it is inside the packaged, pinned feature-extractor "
                f"assets ({ASSET_DIR}), and replacing them makes every eval fail its checksum; "
                f"pass --overwrite-pinned to do that on purpose, or write elsewhere (the default "
                f"is {default_out} under the working directory)"
            )


def save_checkpoint(model: FashionCNN, path: str | os.PathLike) -> str:
    """Write ``model`` as fp16 safetensors (atomically); return the file's sha256."""
    from safetensors.torch import save

    tensors = {}
    for name, value in model.state_dict().items():
        if name.endswith("num_batches_tracked"):
            continue
        value = value.detach().cpu()
        tensors[name] = value.half().contiguous() if value.is_floating_point() else value
    # a single metadata key: safetensors writes metadata from a hash map in random order, so
    # more than one key would make the file bytes (and its sha256) vary from run to run
    data = save(tensors, metadata={"name": f"{EXTRACTOR_NAME} float16"})
    atomic_write_bytes(Path(path), data)
    return hashlib.sha256(data).hexdigest()


def save_trained_extractor(info: dict, model: nn.Module, out, manifest, save, load,
                           test_x: torch.Tensor, test_y: torch.Tensor, acc_fp32: float,
                           device) -> dict:
    """The end of an extractor's training, shared by both extractors: write ``model`` to
    ``out`` with ``save`` (fp16), reload it with ``load`` (checksum checked) and measure the
    test accuracy of what was written, then write ``info`` as the JSON ``manifest``. Without
    ``out`` the accuracy is the fp32 model's. Returns ``info`` with the ``model``."""
    if out is not None:
        digest = save(model, out)
        reloaded = load(out, device=device, expected_sha256=digest)
        info["sha256"] = digest
        info["test_accuracy"] = classifier_accuracy(reloaded, test_x, test_y)
        info["checkpoint_bytes"] = Path(out).stat().st_size
        info["checkpoint_dtype"] = "float16"
        if manifest is not None:
            text = json.dumps(info, indent=2, sort_keys=True) + "\n"
            atomic_write_bytes(Path(manifest), text.encode())
    else:
        info["test_accuracy"] = acc_fp32
    info["model"] = model
    return info


def load_feature_extractor(
    path: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    expected_sha256: str | None = CHECKPOINT_SHA256,
) -> FashionCNN:
    """Load the classifier (fp32, eval mode) after checking its SHA-256.

    ``path`` defaults to the pinned asset. ``expected_sha256`` defaults to
    :data:`CHECKPOINT_SHA256`; pass ``None`` to skip the check (e.g. for a freshly retrained
    file). A missing, corrupt or mismatched file raises :class:`CheckpointError` with the fix.
    The returned model has ``.sha256`` and ``.extractor_name`` attributes.
    """
    from safetensors.torch import load

    path = Path(path) if path is not None else DEFAULT_CHECKPOINT
    device = torch.device(device or default_device())
    if not path.is_file():
        raise CheckpointError(f"Feature-extractor checkpoint not found at {path}. {_RESTORE_HINT}")
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if expected_sha256 is not None and digest != expected_sha256:
        raise CheckpointError(
            f"Feature-extractor checkpoint {path} is corrupt or not the pinned one: its sha256 is "
            f"{digest}, expected {expected_sha256}. {_RESTORE_HINT}"
        )
    try:
        tensors = load(data)
    except Exception as err:  # safetensors raises its own error types
        raise CheckpointError(
            f"Feature-extractor checkpoint {path} cannot be parsed ({err}). {_RESTORE_HINT}"
        ) from err
    model = FashionCNN()
    try:
        missing, unexpected = model.load_state_dict(tensors, strict=False)
    except RuntimeError as err:
        raise CheckpointError(
            f"Feature-extractor checkpoint {path} does not fit {EXTRACTOR_NAME}: {err}. "
            f"{_RESTORE_HINT}"
        ) from err
    missing = [m for m in missing if not m.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise CheckpointError(
            f"Feature-extractor checkpoint {path} does not fit {EXTRACTOR_NAME} "
            f"(missing {missing}, unexpected {unexpected}). {_RESTORE_HINT}"
        )
    model = model.float().to(device).eval()
    model.sha256 = digest
    model.extractor_name = EXTRACTOR_NAME
    return model


def load_manifest(path: str | os.PathLike | None = None) -> dict:
    """The JSON manifest next to the checkpoint (empty dict when absent)."""
    path = Path(path) if path is not None else DEFAULT_MANIFEST
    if not path.is_file():
        return {}
    return json.loads(path.read_text())


# ----------------------------------------------------------------------------------------------
# features


def check_images(images: torch.Tensor, name: str = "images") -> None:
    """Raise ValueError unless ``images`` is a float tensor ``[N, 1, 28, 28]`` in [-1, 1]."""
    expected = "a float tensor of shape [N, 1, 28, 28] with values in [-1, 1]"
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"{name} must be {expected}, got {type(images).__name__}")
    if not images.is_floating_point():
        raise ValueError(
            f"{name} must be {expected}, got dtype {images.dtype}; "
            "use data.uint8_to_model for uint8 images"
        )
    if images.ndim != 4 or tuple(images.shape[1:]) != (1, 28, 28):
        raise ValueError(f"{name} must be {expected}, got shape {tuple(images.shape)}")
    if images.numel():
        lo, hi = float(images.min()), float(images.max())
        if not (lo >= -1 - 1e-3 and hi <= 1 + 1e-3):  # also catches NaN
            raise ValueError(
                f"{name} must be {expected}, got values in [{lo:.4g}, {hi:.4g}]; images in "
                "[0, 1] need x * 2 - 1, uint8 images need data.uint8_to_model"
            )


@torch.no_grad()
def extract_features(
    images: torch.Tensor,
    model: FashionCNN | None = None,
    batch_size: int = 1000,
    device: str | torch.device | None = None,
    *,
    progress: bool = True,
) -> torch.Tensor:
    """Penultimate-layer features (float32, CPU, ``[N, 128]``) of float images in [-1, 1].

    ``model`` defaults to the pinned extractor (loaded once per device and cached). A progress
    bar over the batches shows on a terminal unless ``progress`` is false.
    """
    check_images(images)
    if model is None:
        model = get_feature_extractor(device)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = []
    tf32 = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    try:
        # true fp32 on GPU too (no TF32), so features agree across devices to ~1e-5
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
        for start in progress_bar(range(0, images.shape[0], batch_size), desc="features",
                                  enabled=progress, unit="batch"):
            batch = images[start: start + batch_size].to(device, torch.float32)
            if device.type == "cpu":
                batch = batch.contiguous(memory_format=torch.channels_last)
            out.append(model.features(batch).float().cpu())
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
        model.train(was_training)
    if not out:
        return torch.zeros(0, FEATURE_DIM)
    return torch.cat(out)


_EXTRACTORS: dict[str, FashionCNN] = {}


def get_feature_extractor(device: str | torch.device | None = None) -> FashionCNN:
    """The pinned extractor on ``device``, loaded (and checksum-verified) once and cached."""
    device = str(torch.device(device or default_device()))
    if device not in _EXTRACTORS:
        model = load_feature_extractor(device=device)
        if torch.device(device).type == "cpu":
            model = model.to(memory_format=torch.channels_last)
        _EXTRACTORS[device] = model
    return _EXTRACTORS[device]


# ----------------------------------------------------------------------------------------------
# training


def _augment(x: torch.Tensor, generator: torch.Generator, max_shift: int = 2) -> torch.Tensor:
    """Random horizontal flip (p=0.5) and translation by up to ``max_shift`` px (fill -1)."""
    n = x.shape[0]
    flip = torch.rand(n, generator=generator) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    size = x.shape[-1]
    padded = F.pad(x, (max_shift,) * 4, value=-1.0)
    dy = torch.randint(0, 2 * max_shift + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * max_shift + 1, (n,), generator=generator)
    ar = torch.arange(size)
    rows = (dy[:, None] + ar)[:, :, None]
    cols = (dx[:, None] + ar)[:, None, :]
    return padded[torch.arange(n)[:, None, None], 0, rows, cols][:, None]


@torch.no_grad()
def classifier_accuracy(
    model: FashionCNN, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000
) -> float:
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    correct = 0
    for start in range(0, images.shape[0], batch_size):
        logits = model(images[start: start + batch_size].to(device))
        correct += int((logits.argmax(1).cpu() == labels[start: start + batch_size]).sum())
    model.train(was_training)
    return correct / max(images.shape[0], 1)


def train_classifier(
    epochs: int = DEFAULT_TRAIN_CONFIG["epochs"],
    seed: int = 0,
    device: str | torch.device | None = None,
    batch_size: int = DEFAULT_TRAIN_CONFIG["batch_size"],
    max_lr: float = DEFAULT_TRAIN_CONFIG["max_lr"],
    weight_decay: float = DEFAULT_TRAIN_CONFIG["weight_decay"],
    num_threads: int | None = DEFAULT_TRAIN_CONFIG["num_threads"],
    out: str | os.PathLike | None = DEFAULT_TRAIN_OUT,
    manifest: str | os.PathLike | None = MANIFEST_BESIDE_OUT,
    max_train_images: int | None = None,
    log=print,
    overwrite_pinned: bool = False,
) -> dict:
    """Train the feature-extractor classifier reproducibly; save it (fp16) and its manifest.

    Fully seeded (model init and dropout from ``torch.manual_seed(seed)``, data order and
    augmentation from a separate CPU generator), run under
    ``torch.use_deterministic_algorithms(True)`` with only deterministic-safe ops (the loss is
    written as ``log_softmax * one_hot`` because CUDA ``nll_loss`` has no deterministic kernel).
    ``out`` defaults to :data:`DEFAULT_TRAIN_OUT` (relative to the working directory);
    ``out=None`` skips saving. ``manifest`` defaults to ``out`` with ``.json``; ``None`` skips it.
    Both files are written atomically (aside, then renamed). Paths inside the packaged assets
    (the pinned extractor) raise ``ValueError`` before any work unless ``overwrite_pinned``.
    Returns the manifest dict (sha256, test accuracy of the saved fp16 weights, wall time,
    device, torch version, config).
    """
    from ddgan_core.data import batches, load_fashion_mnist

    if manifest == MANIFEST_BESIDE_OUT:
        manifest = Path(out).with_suffix(".json") if out is not None else None
    check_not_pinned([out, manifest], overwrite_pinned)

    device = torch.device(device or default_device())
    old_threads = torch.get_num_threads()
    if num_threads:
        torch.set_num_threads(num_threads)
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    old_det = torch.are_deterministic_algorithms_enabled()
    old_bench = torch.backends.cudnn.benchmark
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    try:
        t0, cpu0 = time.perf_counter(), time.process_time()
        train_x, train_y = load_fashion_mnist("train")
        test_x, test_y = load_fashion_mnist("test")
        if max_train_images is not None:
            train_x, train_y = train_x[:max_train_images], train_y[:max_train_images]
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        model = FashionCNN().to(device)
        channels_last = device.type == "cpu"
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        optimizer = torch.optim.SGD(
            model.parameters(), lr=max_lr, momentum=0.9, nesterov=True, weight_decay=weight_decay
        )
        steps_per_epoch = train_x.shape[0] // batch_size
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=max_lr, epochs=epochs, steps_per_epoch=steps_per_epoch,
            pct_start=0.25, anneal_strategy="cos",
        )
        index = torch.arange(train_x.shape[0])
        for epoch in range(epochs):
            model.train()
            t_epoch = time.perf_counter()
            total, seen = 0.0, 0
            for idx in batches(index, batch_size, generator):
                x = _augment(train_x[idx], generator).to(device)
                if channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                y = F.one_hot(train_y[idx], 10).float().to(device)
                loss = -(F.log_softmax(model(x), dim=1) * y).sum(1).mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                total += loss.item() * idx.shape[0]
                seen += idx.shape[0]
            log(
                f"epoch {epoch + 1}/{epochs}: train loss {total / max(seen, 1):.4f} "
                f"({time.perf_counter() - t_epoch:.1f} s)"
            )
        acc_fp32 = classifier_accuracy(model, test_x, test_y)
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        info = {
            "name": EXTRACTOR_NAME,
            "feature_dim": FEATURE_DIM,
            "feature_layer": "penultimate linear 1152->128 after BatchNorm1d, before ReLU",
            "test_accuracy_fp32": acc_fp32,
            "train_wall_time_s": round(wall, 1),
            # CPU seconds of this process: on a busy machine, cpu / threads estimates the wall
            # time the run would take with its cores to itself
            "train_cpu_time_s": round(cpu, 1),
            "device": device_description(device),
            "torch_version": torch.__version__,
            "num_threads": torch.get_num_threads(),
            "config": {
                **DEFAULT_TRAIN_CONFIG,
                "epochs": epochs, "seed": seed, "batch_size": batch_size, "max_lr": max_lr,
                "weight_decay": weight_decay, "num_threads": torch.get_num_threads(),
                "max_train_images": max_train_images,
            },
        }
        return save_trained_extractor(info, model, out, manifest, save_checkpoint,
                                      load_feature_extractor, test_x, test_y, acc_fp32, device)
    finally:
        torch.use_deterministic_algorithms(old_det)
        torch.backends.cudnn.benchmark = old_bench
        torch.set_num_threads(old_threads)


def cli_train_classifier(argv: list[str] | None = None) -> int:
    """``python -m ddgan_core train classifier [--epochs N] [--seed S] [--device D] [--out P]``.

    Parses ``argv`` with the command line's ``train classifier`` parser (:mod:`ddgan_core.cli`)
    and runs :func:`ddgan_core.cli.run_train_classifier`. Writes
    ``classifier/fmnist_classifier.safetensors`` (and ``.json``) under the working directory by
    default. Replacing the pinned asset inside the package takes ``--overwrite-pinned``; without
    it such an ``--out``/``--manifest`` is refused (one line).
    """
    from ddgan_core import cli

    return cli.run_train_classifier(cli.command_parser("train", "classifier").parse_args(argv))
