"""Every sampler calls its network through ``device.sampling_network``: channels-last, the
precision asked for (``auto``/``fp32``/``bf16``) and, when asked, ``torch.compile``."""

from __future__ import annotations

import pytest
import torch

from ddgan_core import ddgan, ddpm
from ddgan_core.cache import ResultCache, committed_root
from ddgan_core.cli import build_parser
from ddgan_core.device import PRECISIONS, autocast_context, sampling_network
from ddgan_core.diffusion import GaussianDiffusion, make_beta_schedule
from ddgan_core.distillation import distill_sample
from ddgan_core.experiments import NETWORK_MODES
from ddgan_core.frontier import fast_sampling_rows
from ddgan_core.nets.unet import UNet
from ddgan_core.profiles import get_profile
from ddgan_core.solvers import solver_sample


def busy_unet(z_dim: int = 0) -> UNet:
    """A small UNet whose zero-initialised layers are given weights, so its output moves."""
    torch.manual_seed(0)
    model = UNet(channels=[8, 16], num_res_blocks=1, attention_resolutions=[14], z_dim=z_dim)
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():
                p.normal_(0.0, 0.05)
    return model.eval()


def diffusion() -> GaussianDiffusion:
    return GaussianDiffusion(make_beta_schedule("linear", 40))


def relative_rms(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).pow(2).mean().sqrt() / b.pow(2).mean().sqrt())


def test_autocast_context_runs_each_precision_on_the_cpu():
    for precision, enabled in (("auto", False), ("fp32", False), ("bf16", True)):
        with autocast_context("cpu", precision):
            assert torch.is_autocast_enabled("cpu") is enabled, precision
            if enabled:
                assert torch.get_autocast_dtype("cpu") == torch.bfloat16
    with pytest.raises(ValueError, match=r"precision='fp16' is unknown; allowed: \['auto'"):
        autocast_context("cpu", "fp16")


def test_bf16_network_returns_float32_close_to_but_not_equal_to_fp32():
    model, x, t = busy_unet(), torch.randn(4, 1, 28, 28), torch.tensor([0, 9, 20, 39])
    with torch.no_grad():
        reference = model(x, t)
        with sampling_network(model, "cpu", precision="bf16") as net:
            out = net(x, t)
    assert out.dtype == torch.float32
    assert 0.0 < relative_rms(out, reference) < 0.03
    assert all(p.is_contiguous() and p.dtype == torch.float32 for p in model.parameters())


def test_every_sampler_refuses_an_unknown_precision_before_any_work():
    model, chain = busy_unet(), diffusion()
    calls = {
        "ddpm": lambda: ddpm.ddpm_sample(model, chain, 2, 2, precision="half", device="cpu",
                                         progress=False),
        "solver": lambda: solver_sample(model, chain, 2, 2, precision="half", device="cpu",
                                        progress=False),
        "student": lambda: distill_sample(model, chain, 2, 2, precision="half", device="cpu"),
        "ddgan": lambda: ddgan.ddgan_sample(ddgan.DDGANGenerator(busy_unet(4)),
                                            ddgan.make_ddgan_diffusion(2), 2, 4,
                                            precision="half", device="cpu", progress=False),
    }
    for call in calls.values():
        with pytest.raises(ValueError, match="precision='half' is unknown"):
            call()


def _samplers(model: UNet, generator: ddgan.DDGANGenerator):
    chain = diffusion()
    return {
        "ddpm": lambda **kw: ddpm.ddpm_sample(model, chain, 3, 3, "ddim", seed=1, device="cpu",
                                              progress=False, **kw)[0],
        "solver": lambda **kw: solver_sample(model, chain, 3, 3, seed=1, device="cpu",
                                             progress=False, **kw)[0],
        "student": lambda **kw: distill_sample(model, chain, 3, 2, seed=1, device="cpu",
                                               **kw)[0],
        "ddgan": lambda **kw: ddgan.ddgan_sample(generator, ddgan.make_ddgan_diffusion(2), 3, 4,
                                                 seed=1, device="cpu", progress=False, **kw)[0],
    }


def test_every_sampler_passes_compile_and_precision_to_its_network(monkeypatch):
    model, generator = busy_unet(), ddgan.DDGANGenerator(busy_unet(4))
    compiled = []

    def record(module, **options):
        compiled.append((module, options))
        return module

    for name, sample in _samplers(model, generator).items():
        fp32 = sample(precision="fp32")
        with monkeypatch.context() as patch:
            patch.setattr(torch, "compile", record)
            compiled.clear()
            torch.testing.assert_close(sample(precision="fp32", compile=True), fp32)
            assert [options for _, options in compiled] == [{"dynamic": False}], name
            assert compiled[0][0] is (generator if name == "ddgan" else model), name
        assert not sample().isnan().any()
        bf16 = sample(precision="bf16")
        assert bf16.dtype == torch.float32 and not torch.equal(bf16, fp32), name
        assert relative_rms(bf16, fp32) < 0.1, name


def test_a_compiled_sampler_draws_what_the_eager_one_draws():
    generator = ddgan.DDGANGenerator(busy_unet(4))
    chain = ddgan.make_ddgan_diffusion(2)
    eager, _ = ddgan.ddgan_sample(generator, chain, 4, 4, seed=3, device="cpu", progress=False)
    compiled, _ = ddgan.ddgan_sample(generator, chain, 4, 4, seed=3, device="cpu",
                                     progress=False, compile=True)
    torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-4)
    assert all(p.is_contiguous() for p in generator.parameters())
    # weights are graph inputs, not constants: after a training step, it samples the new ones
    with torch.no_grad():
        for p in generator.parameters():
            p.mul_(1.5)
    eager, _ = ddgan.ddgan_sample(generator, chain, 4, 4, seed=3, device="cpu", progress=False)
    again, _ = ddgan.ddgan_sample(generator, chain, 4, 4, seed=3, device="cpu",
                                  progress=False, compile=True)
    assert not torch.allclose(again, compiled, atol=1e-3)
    torch.testing.assert_close(again, eager, rtol=1e-4, atol=1e-4)


def test_the_sample_command_offers_every_precision():
    parser = build_parser()
    args = parser.parse_args(["sample", "--checkpoint", "m.safetensors", "--n", "1", "--out",
                              "x.npz", "--precision", "bf16", "--compile"])
    assert (args.precision, args.compile) == ("bf16", True)
    action = next(a for a in parser._subparsers._group_actions[0].choices["sample"]._actions
                  if a.dest == "precision")
    assert tuple(action.choices) == PRECISIONS


class CommittedOnly(ResultCache):
    """The committed results; an entry missing there fails instead of being computed."""

    def load_or_run(self, name, config, compute, **kwargs):
        result = self.load(name, config)
        if result is None:
            pytest.fail(f"{name} {self.path(name, config).name} is not committed")
        return result


def test_each_bf16_point_differs_from_its_float32_twin_by_the_arithmetic_alone():
    profile = get_profile("cpu")
    rows, speed = fast_sampling_rows(profile, CommittedOnly(committed_root()))
    assert [row["label"] for row in rows][0].startswith("DDGAN")
    assert len(rows) == 1 + len(profile["fast_sampling_ddpm"])
    for row in rows:
        plain, fast = row["fp32"]["result"].config, row["bf16"]["result"].config
        assert fast == {**plain, "precision": "bf16", "compile": True}, row["label"]
        assert row["fp32"]["n"] == row["bf16"]["n"] == profile["sweep_samples"]
        assert set(row["ms"]) == set(NETWORK_MODES)
        assert row["speedup"] == pytest.approx(row["ms"]["fp32", False] / row["ms"]["bf16", True])
    assert speed.config["modes"] == [list(mode) for mode in NETWORK_MODES]


def test_quiet_compiler_hides_the_compilers_notices_and_restores_logging():
    import logging
    import warnings

    from ddgan_core.device import quiet_compiler

    logger = logging.getLogger("torch.utils.cpp_extension")
    before = logger.level
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with quiet_compiler():
            assert not logger.isEnabledFor(logging.WARNING)
            warnings.warn_explicit("pgo off", UserWarning, "pgo.py", 1,
                                   module="torch._dynamo.pgo")
            warnings.warn_explicit("a user's warning", UserWarning, "mine.py", 1, module="mine")
        with quiet_compiler(False):
            warnings.warn_explicit("pgo off", UserWarning, "pgo.py", 1,
                                   module="torch._dynamo.pgo")
    assert [str(w.message) for w in caught] == ["a user's warning", "pgo off"]
    assert logger.level == before
