"""Network building blocks shared by models and guides.

Every block accepts any number of leading batch dimensions: a decoder called on
``z`` of shape ``(K, N, z_dim)`` (K vectorized particles) returns ``(K, N, x_dim)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.distributions import constraints, transform_to
from torch.nn import functional as F

from models.distributions import DiagNormal

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "softplus": nn.Softplus,
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
}

# Smallest standard deviation a Gaussian encoder or decoder reports: keeps log-densities
# finite when a softplus or exp underflows.
MIN_SCALE = 1e-5


def activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def mlp(sizes: Sequence[int], act: str, *, final_activation: bool = False) -> nn.Sequential:
    """Fully connected network ``sizes[0] -> sizes[1] -> … -> sizes[-1]``, ``act`` between
    layers."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2 or final_activation:
            layers.append(activation(act))
    return nn.Sequential(*layers)


def normal_init_(module: nn.Module, std: float) -> nn.Module:
    """Draw every ``nn.Linear`` weight and bias of ``module`` from N(0, std²), in place: how
    Pyro's ``examples/vae/utils/custom_mlp.py`` (``MLP.__init__``) starts its hidden layers."""
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            nn.init.normal_(layer.weight, 0.0, std)
            nn.init.normal_(layer.bias, 0.0, std)
    return module


def _softplus_scale(raw: torch.Tensor) -> torch.Tensor:
    return F.softplus(raw) + MIN_SCALE


def _exp_scale(raw: torch.Tensor) -> torch.Tensor:
    return raw.clamp(-20.0, 10.0).exp() + MIN_SCALE


SCALE_TRANSFORMS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "softplus": _softplus_scale,
    "exp": _exp_scale,
}


def scale_transform(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """Map unconstrained outputs to a standard deviation >= MIN_SCALE.

    ``"softplus"`` (default) grows linearly, so large outputs cannot overflow; ``"exp"``
    clamps its argument to [-20, 10] first.
    """
    if name not in SCALE_TRANSFORMS:
        raise ValueError(f"unknown scale transform {name!r}; choose 'softplus' or 'exp'")
    return SCALE_TRANSFORMS[name]


class ConvEncoder(nn.Module):
    """28x28 (or any multiple of 4) image -> features, two stride-2 convolutions."""

    def __init__(self, image_shape: Sequence[int], channels: Sequence[int], act: str):
        super().__init__()
        c, h, w = image_shape
        if h % 4 or w % 4:
            raise ValueError(f"conv nets need height and width divisible by 4, got {h}x{w}")
        c1, c2 = channels
        self.image_shape = tuple(image_shape)
        self.net = nn.Sequential(
            nn.Conv2d(c, c1, 4, stride=2, padding=1), activation(act),  # (B, c1, h/2, w/2)
            nn.Conv2d(c1, c2, 4, stride=2, padding=1), activation(act),  # (B, c2, h/4, w/4)
            nn.Flatten(),
        )
        self.out_features = c2 * (h // 4) * (w // 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch = x.shape[:-1]  # x: (*batch, c*h*w), flat images
        h = self.net(x.reshape(-1, *self.image_shape))  # (B, features)
        return h.reshape(*batch, self.out_features)


class ConvDecoder(nn.Module):
    """features -> flat image logits or means, mirror of :class:`ConvEncoder`."""

    def __init__(self, in_features: int, image_shape: Sequence[int], channels: Sequence[int],
                 act: str):
        super().__init__()
        c, h, w = image_shape
        if h % 4 or w % 4:
            raise ValueError(f"conv nets need height and width divisible by 4, got {h}x{w}")
        c1, c2 = channels
        self.seed_shape = (c2, h // 4, w // 4)
        self.fc = nn.Sequential(nn.Linear(in_features, c2 * (h // 4) * (w // 4)), activation(act))
        self.net = nn.Sequential(
            nn.ConvTranspose2d(c2, c1, 4, stride=2, padding=1), activation(act),  # (B, c1, h/2,
            nn.ConvTranspose2d(c1, c, 4, stride=2, padding=1),  # w/2) -> (B, c, h, w)
        )
        self.out_features = c * h * w

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        batch = z.shape[:-1]  # z: (*batch, in_features)
        h = self.fc(z.reshape(-1, z.shape[-1])).reshape(-1, *self.seed_shape)
        return self.net(h).reshape(*batch, self.out_features)  # (*batch, c*h*w)


class StandardNormal(nn.Module):
    """The prior p(z) = N(0, I) over ``(dim,)`` vectors; its tensors follow ``.to(device)``."""

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("loc", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(dim))

    def forward(self) -> DiagNormal:
        return DiagNormal(self.loc, self.scale, standard=True)


class GaussianHead(nn.Module):
    """input -> MLP(hidden) -> (loc, scale) of a diagonal Gaussian over ``out`` dimensions."""

    def __init__(self, n_in: int, hidden: Sequence[int], out: int, act: str,
                 scale: str = "softplus"):
        super().__init__()
        self.out = out
        self.to_scale = scale_transform(scale)
        self.trunk = mlp([n_in, *hidden], act, final_activation=True) if hidden else nn.Identity()
        self.head = nn.Linear(hidden[-1] if hidden else n_in, 2 * out)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loc, raw = self.head(self.trunk(h)).chunk(2, dim=-1)  # (..., out) each
        return loc, self.to_scale(raw)


def cat_broadcast(*tensors: torch.Tensor) -> torch.Tensor:
    """Concatenate on the last dim after broadcasting the batch dims: z (K, N, d) with a
    one-hot label (E, 1, C) of an enumerated y gives (E, N, d + C)... as one tensor.

    >>> cat_broadcast(torch.zeros(3, 4, 2), torch.ones(5, 1, 1, 1)).shape
    torch.Size([5, 3, 4, 3])
    """
    batch = torch.broadcast_shapes(*(t.shape[:-1] for t in tensors))
    return torch.cat([t.expand(*batch, t.shape[-1]) for t in tensors], dim=-1)


def one_hot(y: torch.Tensor, num_classes: int, like: torch.Tensor) -> torch.Tensor:
    """Labels (...) as float one-hot vectors (..., num_classes) of ``like``'s dtype."""
    return F.one_hot(y.long(), num_classes).to(like.dtype)


class Constrained:
    """A module attribute with a constraint, held as an ordinary unconstrained parameter
    ``<name>_raw`` (Pyro's ``transform_to``, as ``PyroParam`` does).

    Reading it gives the constrained value; assigning a constrained value sets the raw
    parameter (in place once it exists). Unlike ``PyroParam`` under Pyro's default settings,
    it is never exchanged with Pyro's global parameter store by name, so two modules with the
    same attribute names stay independent; Pyro's ``SVI`` and a torch optimizer both train it.

    >>> class Scale(nn.Module):
    ...     scale = Constrained(constraints.positive)
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.scale = torch.tensor([1.0, 2.0])
    >>> m = Scale()
    >>> [n for n, _ in m.named_parameters()], m.scale.detach()
    (['scale_raw'], tensor([1., 2.]))
    """

    def __init__(self, constraint: constraints.Constraint):
        self.constraint = constraint

    def __set_name__(self, owner: type, name: str) -> None:
        self.raw = f"{name}_raw"

    def __get__(self, obj, objtype=None):
        if obj is None:
            return self
        return transform_to(self.constraint)(getattr(obj, self.raw))

    def __set__(self, obj: nn.Module, value) -> None:
        raw = transform_to(self.constraint).inv(torch.as_tensor(value)).detach()
        if self.raw in obj._parameters:
            with torch.no_grad():
                obj._parameters[self.raw].copy_(raw)
        else:
            obj.register_parameter(self.raw, nn.Parameter(raw.clone()))
