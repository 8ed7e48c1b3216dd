"""The VAE, built from an architecture spec (convolutions, then fully-connected layers), and its presets.

Reading of the seed's (garbled Keras) code, which the `seed` preset reproduces:
- Encoder: four 3x3 "same" convolutions with 784, 256, 32 and 4 channels, each followed by
  BatchNorm and ReLU; only the first has stride 2, so 28x28 -> 14x14 and the flattened feature
  is 14 * 14 * 4 = 784 values. The seed's repeated BatchNorm/Flatten lines and the convs that all
  read `image_input` are copy-paste slips: the layers are meant to be chained.
- Two linear heads give mu and log_var (the seed assigns both to `self.mu`; a typo).
- z = mu + exp(log_var / 2) * eps, eps ~ N(0, I)   (Kingma & Welling 2014, the reparameterisation)
- Decoder: linear 3136 -> reshape 7x7x64 -> transposed 3x3 convs with 784 (stride 1),
  256 (stride 1), 32 (stride 2) and 4 (stride 2) channels, each + BatchNorm + ReLU, then a
  1-channel transposed conv. The seed ends in BatchNorm; we end in logits l instead, and images
  are sigmoid(l) in [0, 1] like the data (the losses take l: vaecore/losses.py).

`compact` is the stack of the "Generative Deep Learning" book (32-64-64-64, LeakyReLU), small
enough to train at several hundred images per second on two CPU cores.

`mlp` has no convolutions: 784-400-d and d-400-784 with ReLU, the shape of pytorch/examples' VAE.
Per image seen, the convolutional stacks learn faster; per second of one CPU thread the MLP wins,
because it costs 1.3 MFLOPs an image against compact's 30: it steps ~10x more images, and reaches
a lower FID in the same wall time (docs/BENCHMARKS.md, "Anchor"). On a GPU, where FLOPs are cheap,
the convolutional presets are the better choice.
"""

from __future__ import annotations

import io
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vaecore import runs
from vaecore.config import Config, from_dict


@dataclass(frozen=True)
class Arch:
    encoder: tuple[tuple[int, int], ...]  # (channels, stride) per conv block
    decoder_start: tuple[int, int]  # (channels, side) the dense layer reshapes to
    decoder: tuple[tuple[int, int], ...]  # (channels, stride) per transposed-conv block
    activation: str  # "relu" or "leaky_relu"
    hidden: tuple[int, ...] = ()  # fully-connected widths after the convolutions; the decoder mirrors them


ARCHS = {
    "seed": Arch(
        encoder=((784, 2), (256, 1), (32, 1), (4, 1)),
        decoder_start=(64, 7),
        decoder=((784, 1), (256, 1), (32, 2), (4, 2)),
        activation="relu",
    ),
    "compact": Arch(
        encoder=((32, 1), (64, 2), (64, 2), (64, 1)),
        decoder_start=(64, 7),
        decoder=((64, 1), (64, 2), (32, 2)),
        activation="leaky_relu",
    ),
    "mlp": Arch(encoder=(), decoder_start=(1, 28), decoder=(), activation="relu", hidden=(400,)),
}


def _act(name: str) -> nn.Module:
    return nn.LeakyReLU(0.2) if name == "leaky_relu" else nn.ReLU()


def conv_block(c_in: int, c_out: int, stride: int, act: str) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1), nn.BatchNorm2d(c_out), _act(act))


def dense_layers(widths: tuple[int, ...], act: str, last_act: bool) -> list[nn.Module]:
    """Linear layers through `widths`, an activation after each but (unless last_act) the last."""
    layers: list[nn.Module] = []
    for i, (w_in, w_out) in enumerate(itertools.pairwise(widths)):
        layers.append(nn.Linear(w_in, w_out))
        if last_act or i < len(widths) - 2:
            layers.append(_act(act))
    return layers


def deconv_block(c_in: int, c_out: int, stride: int, act: str) -> nn.Sequential:
    # output_padding = stride - 1 makes a 3x3 stride-s transposed conv exactly multiply the side by s
    up = nn.ConvTranspose2d(c_in, c_out, 3, stride, 1, output_padding=stride - 1)
    return nn.Sequential(up, nn.BatchNorm2d(c_out), _act(act))


class VAE(nn.Module):
    def __init__(self, arch: Arch, latent_dim: int, side: int = 28):
        super().__init__()
        self.arch, self.latent_dim = arch, latent_dim
        blocks, c = [], 1
        for c_out, stride in arch.encoder:
            blocks.append(conv_block(c, c_out, stride, arch.activation))
            c, side = c_out, side // stride
        widths = (c * side * side, *arch.hidden)
        self.encoder = nn.Sequential(*blocks, nn.Flatten(), *dense_layers(widths, arch.activation, True))
        self.mu = nn.Linear(widths[-1], latent_dim)
        self.log_var = nn.Linear(widths[-1], latent_dim)

        c0, s0 = arch.decoder_start
        layers = dense_layers((latent_dim, *arch.hidden[::-1], c0 * s0 * s0), arch.activation, False)
        self.dense = layers[0] if len(layers) == 1 else nn.Sequential(*layers)  # old files: a Linear
        blocks, c = [], c0
        for c_out, stride in arch.decoder:
            blocks.append(deconv_block(c, c_out, stride, arch.activation))
            c, s0 = c_out, s0 * stride
        if s0 != 28:
            raise ValueError(f"decoder produces {s0}x{s0} images, expected 28x28")
        if arch.decoder:  # no convolutions: the dense layer's 1 x 28 x 28 outputs are the logits
            blocks.append(nn.ConvTranspose2d(c, 1, 3, 1, 1))  # logits; no parameters were after it
        self.decoder = nn.Sequential(*blocks)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x)  # (B, feat)
        return self.mu(h), self.log_var(h)  # (B, latent_dim) each

    @staticmethod
    def reparameterize(
        mu: torch.Tensor, log_var: torch.Tensor, eps: torch.Tensor | None = None
    ) -> torch.Tensor:
        if eps is None:
            eps = torch.randn_like(mu)
        return mu + torch.exp(0.5 * log_var) * eps

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        c0, s0 = self.arch.decoder_start
        h = self.dense(z).view(-1, c0, s0, s0)  # (B, c0, s0, s0)
        return self.decoder(h)  # (B, 1, 28, 28) logits

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decode_logits(z))  # (B, 1, 28, 28) images in [0, 1]

    def forward(self, x: torch.Tensor, eps: torch.Tensor | None = None):
        """(logits, mu, log_var): the losses take the decoder's logits."""
        mu, log_var = self.encode(x)
        z = self.reparameterize(mu, log_var, eps)
        return self.decode_logits(z), mu, log_var


def torch_save(obj: Any, path: Path) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    runs.atomic_write_bytes(path, buf.getvalue())


def torch_load(path: Path, device: Any = "cpu") -> Any:
    """A checkpoint or model file, loaded as data only (weights_only=True): a crafted pickle in a
    shared sweep folder cannot run code. Our files hold only tensors, numbers, strings, lists, dicts."""
    return torch.load(path, map_location=device, weights_only=True)


def build(arch: str, latent_dim: int) -> VAE:
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture '{arch}'; choose one of {', '.join(ARCHS)}")
    return VAE(ARCHS[arch], latent_dim)


def load(path: Path, device: torch.device | str = "cpu") -> tuple[VAE, Config]:
    """A trained model (eval mode) and its config from a checkpoint or a final model.pt."""
    state = torch_load(path, device)
    cfg = from_dict(state["config"])
    model = build(cfg.model.arch, cfg.model.latent_dim).to(device)
    model.load_state_dict(state["model"])
    return model.eval(), cfg


def pick_device(gpus_per_worker: float) -> torch.device:
    """The device a one-process trial (training or post-processing) uses: the GPU it was given
    (Ray sets CUDA_VISIBLE_DEVICES, so it is cuda:0) when it asked for one and one is there."""
    gpu = gpus_per_worker > 0 and torch.cuda.is_available()
    return torch.device("cuda", 0) if gpu else torch.device("cpu")


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def forward_flops(model: VAE) -> int:
    """FLOPs of one image's forward pass (encode + decode), counted by torch's FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(1, 1, 28, 28))
    model.train(was_training)
    return counter.get_total_flops()
