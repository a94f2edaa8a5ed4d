"""The samplers run their network in the channels-last layout and hand it back unchanged."""

from __future__ import annotations

import torch
from safetensors.torch import save_file

from ddgan_core import ddgan, ddpm
from ddgan_core.device import channels_last, to_channels_last
from ddgan_core.diffusion import GaussianDiffusion, make_beta_schedule, respace
from ddgan_core.nets.unet import UNet


def small_unet(**kwargs) -> UNet:
    torch.manual_seed(0)
    return UNet(channels=[8, 16], num_res_blocks=1, attention_resolutions=[14], **kwargs)


def test_channels_last_gives_the_same_outputs_and_restores_the_layout():
    model = small_unet().eval()
    x, t = torch.randn(4, 1, 28, 28), torch.tensor([0, 3, 7, 9])
    with torch.no_grad():
        reference = model(x, t)
        with channels_last(model):
            weights = [p for p in model.parameters() if p.dim() == 4]
            assert weights and all(p.is_contiguous(memory_format=torch.channels_last)
                                   and not p.is_contiguous() for p in weights
                                   if p.shape[1] > 1 and p.shape[2] > 1)
            inside = model(to_channels_last(x), t)
    torch.testing.assert_close(inside, reference, rtol=1e-4, atol=1e-5)
    assert all(p.is_contiguous() for p in model.parameters())
    save_file({k: v for k, v in model.state_dict().items()}, "/dev/null")  # needs contiguous


def test_channels_last_restores_the_layout_after_an_error():
    model = small_unet()
    try:
        with channels_last(model):
            raise RuntimeError("stop")
    except RuntimeError:
        pass
    assert all(p.is_contiguous() for p in model.parameters())


def test_to_channels_last_leaves_non_image_tensors_alone():
    points = torch.randn(5, 2)
    assert to_channels_last(points) is points
    images = to_channels_last(torch.randn(2, 3, 4, 4))
    assert images.is_contiguous(memory_format=torch.channels_last)


def test_samplers_return_contiguous_images_equal_to_a_default_layout_chain():
    diffusion = GaussianDiffusion(make_beta_schedule("linear", 40))
    model = small_unet()
    images, _ = ddpm.ddpm_sample(model, diffusion, 3, 4, "ddim", seed=2, batch_size=3,
                                 device="cpu", progress=False)
    assert images.is_contiguous() and all(p.is_contiguous() for p in model.parameters())
    # the same DDIM chain by hand in the default layout
    kept = ddpm.sampling_timesteps(40, 4)
    spaced, timestep_map = respace(diffusion, kept)
    generator = torch.Generator().manual_seed(2 * 1_000_003)
    x = torch.randn((3, 1, 28, 28), generator=generator)
    with torch.no_grad():
        for i in reversed(range(4)):
            t = torch.full((3,), i)
            eps = model(x, torch.as_tensor(timestep_map)[t])
            torch.randn(x.shape, generator=generator)
            x = spaced.ddim_step(eps, x, t, t - 1, eta=0.0)
    torch.testing.assert_close(images, x.clamp(-1, 1), rtol=1e-4, atol=1e-4)

    generator_net = ddgan.DDGANGenerator(small_unet(z_dim=4))
    samples, nfe = ddgan.ddgan_sample(generator_net, ddgan.make_ddgan_diffusion(2), 3, 4,
                                      batch_size=2, device="cpu", progress=False)
    assert nfe == 2 and samples.shape == (3, 1, 28, 28) and samples.is_contiguous()
    assert all(p.is_contiguous() for p in generator_net.parameters())
