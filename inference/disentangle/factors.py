"""Data with known factors of variation: what the disentanglement metrics sample from.

A :class:`GroundTruthData` has ``F`` discrete factors, factor ``f`` taking
``factor_sizes[f]`` values, and one observation per combination of factor values (as in
disentanglement_lib's ``GroundTruthData``: ``sample_factors`` and
``sample_observations_from_factors``). Every combination has a flat index, the factors read
as digits of a mixed-radix number, the first factor most significant (dSprites' order).
"""

from __future__ import annotations

import math

import torch


def as_generator(generator: torch.Generator | int | None) -> torch.Generator:
    """A CPU ``torch.Generator``: ``generator`` itself, or one seeded with the integer given
    (None: seed 0)."""
    if isinstance(generator, torch.Generator):
        return generator
    if generator is not None and not isinstance(generator, int):
        raise TypeError(f"expected a torch.Generator or an integer seed, got "
                        f"{type(generator).__name__}")
    return torch.Generator().manual_seed(0 if generator is None else generator)


class GroundTruthData:
    """Base class: factors, their sizes, a sampler and the observation of each combination.

    Subclasses set ``factor_names``, ``factor_sizes`` and ``image_shape`` and implement
    :meth:`observations`.
    """

    factor_names: tuple[str, ...] = ()
    factor_sizes: tuple[int, ...] = ()
    image_shape: tuple[int, int, int] | None = None

    @property
    def num_factors(self) -> int:
        return len(self.factor_sizes)

    def __len__(self) -> int:
        """The number of factor combinations."""
        return math.prod(self.factor_sizes)

    def sample_factors(self, n: int, generator: torch.Generator | int | None = None
                       ) -> torch.Tensor:
        """``n`` combinations, each factor uniform over its values and independent of the
        others: a long tensor (n, F)."""
        g = as_generator(generator)
        columns = [torch.randint(size, (n,), generator=g) for size in self.factor_sizes]
        return torch.stack(columns, -1)  # (n, F)

    def observations(self, factors: torch.Tensor) -> torch.Tensor:
        """The flat observations (n, D) of factor combinations (n, F), float32."""
        raise NotImplementedError

    def check_factors(self, factors: torch.Tensor) -> torch.Tensor:
        factors = torch.as_tensor(factors)
        sizes = torch.tensor(self.factor_sizes)
        if (factors.dim() != 2 or factors.shape[-1] != self.num_factors
                or factors.is_floating_point()):
            raise ValueError(f"factors must be an integer tensor (n, {self.num_factors}) "
                             f"({', '.join(self.factor_names)}), got {tuple(factors.shape)} "
                             f"{factors.dtype}")
        if len(factors) and ((factors < 0).any() or (factors >= sizes).any()):
            raise ValueError(f"factor values out of range: each column f must lie in "
                             f"0..size_f - 1, sizes {list(self.factor_sizes)}")
        return factors.long()

    def index(self, factors: torch.Tensor) -> torch.Tensor:
        """The flat index (n,) of each combination (n, F): mixed radix, first factor most
        significant.

        >>> class Toy(GroundTruthData):
        ...     factor_sizes = (3, 4)
        >>> Toy().index(torch.tensor([[0, 0], [1, 2], [2, 3]])).tolist()
        [0, 6, 11]
        """
        factors = self.check_factors(factors)
        strides = torch.tensor([math.prod(self.factor_sizes[f + 1:])
                                for f in range(self.num_factors)])
        return (factors * strides).sum(-1)

    def factors_of(self, index: torch.Tensor) -> torch.Tensor:
        """The combinations (n, F) of flat indices (n,): the inverse of :meth:`index`."""
        index = torch.as_tensor(index).long()
        columns = []
        for size in reversed(self.factor_sizes):
            columns.append(index % size)
            index = torch.div(index, size, rounding_mode="floor")
        return torch.stack(columns[::-1], -1)
