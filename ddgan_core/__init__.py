"""ddgan_core: Denoising Diffusion GANs against DDPM on FashionMNIST.

Modules: ``data`` (offline FashionMNIST), ``diffusion`` (Gaussian diffusion math), ``profiles``
(smoke/cpu/full settings), ``cache`` (the result cache), ``metrics`` (FID, KID, precision/recall,
speed), ``book`` (the executable-book build), ``cli`` (``python -m ddgan_core``).
"""

__version__ = "0.1.0"
