"""Check a model/guide pair and its data before any training.

Modelled on NumPyro's ``check_model_guide_match``: sites, shapes, supports and plates are
compared on traces, and every error names the site and both sides. Any pair Pyro's SVI
takes is checked (:mod:`inference.programs`); the names of its data, latent and label sites
and of its data plate are read from the traces, or given as ``sites={"x": ..., "z": ...}``.
"""

from __future__ import annotations

from collections.abc import Mapping

import pyro
import pyro.poutine as poutine
import torch
from pyro.distributions import constraints
from pyro.distributions.torch_distribution import MaskedDistribution

from inference.plates import frame_size, whole_plates
from inference.programs import (
    PairError,
    Sites,
    data_plate_name,
    discover_sites,
    program,
    sample_sites,
)


class DataError(ValueError):
    """Data the model cannot score: NaNs, wrong shape, values outside the likelihood's support."""


def _shape(s: torch.Size) -> str:
    return "(" + ", ".join(str(d) for d in s) + ("," if len(s) == 1 else "") + ")"


def _trace(fn, x, y, role: str) -> poutine.Trace:
    try:
        with torch.no_grad(), whole_plates(None if x is None else len(x)):  # as scored
            return poutine.trace(fn).get_trace(x, y)
    except (DataError, PairError):
        raise
    except Exception as e:  # a user's module can fail in any way; name who and where
        shape = None if x is None else _shape(x.shape)
        raise PairError(f"the {role} failed on a data batch x of shape {shape}: "
                        f"{type(e).__name__}: {str(e).splitlines()[0]}") from e


def _sample_sites(tr: poutine.Trace) -> dict[str, dict]:
    return dict(sample_sites(tr))


def _plates(site: dict) -> list[tuple[str, int, int]]:
    return sorted((f.name, f.dim, frame_size(f, site)) for f in site["cond_indep_stack"]
                  if f.vectorized)


def _unwrap(c: constraints.Constraint) -> tuple[constraints.Constraint, int]:
    """(elementwise constraint, event dims): independent(real, 1) -> (real, 1)."""
    n = 0
    while isinstance(c, constraints.independent):
        n += c.reinterpreted_batch_ndims
        c = c.base_constraint
    return c, n


def _support_mismatch(m_fn, g_fn) -> str | None:
    (mc, _), (gc, _) = _unwrap(m_fn.support), _unwrap(g_fn.support)
    if mc.is_discrete != gc.is_discrete:
        return f"model support {mc} vs guide support {gc} (discrete vs continuous)"
    if isinstance(mc, type(constraints.real)) and not gc.is_discrete:
        return None  # any continuous guide lives inside the real line
    if type(mc) is not type(gc) or str(mc) != str(gc):
        return f"model support {mc} vs guide support {gc}"
    return None


def _compare_site(name: str, m: dict, g: dict) -> None:
    m_fn, g_fn = m["fn"], g["fn"]
    if _plates(m) != _plates(g):
        raise PairError(f"site {name!r}: plates differ, model {_plates(m)} vs guide {_plates(g)}")
    if m_fn.event_shape != g_fn.event_shape:
        raise PairError(
            f"site {name!r}: the guide samples event shape {_shape(g_fn.event_shape)} but the "
            f"model expects {_shape(m_fn.event_shape)}; make the latent sizes (z_dim) agree")
    if m_fn.batch_shape != g_fn.batch_shape:
        raise PairError(
            f"site {name!r}: the guide's batch shape {_shape(g_fn.batch_shape)} differs from the "
            f"model's {_shape(m_fn.batch_shape)}; both must sit in the same plates")
    mismatch = _support_mismatch(m_fn, g_fn)
    if mismatch:
        raise PairError(f"site {name!r}: {mismatch}; the guide must put its mass where the "
                        f"model's prior has support")


def _check_data_plate(name: str, site: dict, role: str, n: int, plate: str) -> None:
    try:
        found = data_plate_name(name, site, n)
    except PairError as e:
        raise PairError(f"{role} {e}") from None
    if found != plate:
        raise PairError(f"{role} site {name!r} sits in plate {found!r} at dim -1, but the data "
                        f"site sits in {plate!r}; use one plate over the data points")


def _check_observed(name: str, site: dict) -> None:
    fn, value = site["fn"], site["value"]
    want = fn.batch_shape + fn.event_shape
    if value.shape != want:
        raise DataError(
            f"observed site {name!r} expects data of shape {_shape(want)} (event shape "
            f"{_shape(fn.event_shape)}) but got {_shape(value.shape)}; flat images need "
            f"x.reshape(len(x), -1)")
    observed = _observed_cells(fn)  # a masked likelihood ignores its missing (NaN) cells
    check_support(name, fn.support, value if observed is None else
                  value[observed.expand(value.shape)])


def _observed_cells(fn) -> torch.Tensor | None:
    """The bool mask of a likelihood that scores only some cells (``MaskedDistribution``
    inside ``Independent``, as the ``tabular`` model's), else None."""
    while isinstance(fn, torch.distributions.Independent):
        fn = fn.base_dist
    mask = getattr(fn, "_mask", None) if isinstance(fn, MaskedDistribution) else None
    return mask if torch.is_tensor(mask) else None


def check_pair(model, guide, x: torch.Tensor, y: torch.Tensor | None = None, *,
               sites: Mapping[str, object] | None = None) -> Sites:
    """Trace ``model`` and ``guide`` on a batch and check that they form a valid pair.

    Both may be anything Pyro's SVI takes (:mod:`inference.programs`). Returns the
    :class:`~inference.programs.Sites` the pair uses. Raises :class:`PairError` naming the
    site whose name, shape, support or plates disagree, and :class:`DataError` if the batch
    does not fit the model's observed site.
    """
    model, guide = program(model, "model"), program(guide, "guide")
    with pyro.validation_enabled(True):
        m_tr = _trace(model, x, y, "model")  # prior draw: runs even if the guide's z is wrong
        found = discover_sites(m_tr, x, y, sites)
        m_sites = _sample_sites(m_tr)
        observed = {n: s for n, s in m_sites.items() if s["is_observed"]}
        for name, site in observed.items():
            _check_data_plate(name, site, "model", x.shape[0], found.plate)
            _check_observed(name, site)
        g_tr = _trace(guide, x, y, "guide")
        g_sites = {n: s for n, s in _sample_sites(g_tr).items() if not s["is_observed"]}
        for name, g in g_sites.items():
            if name not in m_sites:
                raise PairError(f"the guide samples site {name!r}, which the model does not "
                                f"have; the model's latent sites are {', '.join(found.latent)}")
            if name in observed:
                raise PairError(f"the guide samples site {name!r}, which the model observes")
            _compare_site(name, m_sites[name], g)
        for name, m in m_sites.items():
            enumerated = m["infer"].get("enumerate") == "parallel"
            if name not in observed and name not in g_sites and not enumerated:
                raise PairError(f"the model's latent site {name!r} is not sampled by the guide "
                                f"(guide sites: {', '.join(g_sites) or 'none'})")
        _check_joint(model, g_tr, x, y)
    return found


def _check_joint(model, guide_trace: poutine.Trace, x, y) -> None:
    tr = _trace(poutine.replay(model, trace=guide_trace), x, y, "model replayed on the guide")
    try:
        tr.compute_log_prob()
        guide_trace.compute_log_prob()
    except ValueError as e:
        raise PairError(f"log-densities of the pair could not be computed: {e}") from e
    for name, site in list(_sample_sites(tr).items()) + list(_sample_sites(guide_trace).items()):
        if not torch.isfinite(site["log_prob_sum"]):
            raise PairError(f"site {name!r} has log-density {site['log_prob_sum'].item()} on the "
                            f"first batch; check its parameters and its data")


def check_support(name: str, support: constraints.Constraint, value: torch.Tensor) -> None:
    """Raise :class:`DataError` if any element of ``value`` lies outside ``support``."""
    nan = torch.isnan(value)
    if nan.any():
        first = tuple(nan.nonzero()[0].tolist())
        raise DataError(f"{name}: {int(nan.sum())} NaN values (first at index {first}); "
                        f"drop or impute them before training")
    base, _ = _unwrap(support)
    bad = ~base.check(value)
    if not bad.any():
        return
    first = tuple(bad.nonzero()[0].tolist())
    example = value[first].item()
    count = f"{int(bad.sum())} of {value.numel()} values of {name}"
    if base is constraints.boolean:
        lo, hi = value.min().item(), value.max().item()
        if lo < 0 or hi > 1:
            hint = "divide pixel bytes by 255" if hi > 1 else "rescale them"
            raise DataError(f"{count} lie outside [0, 1] (range {lo:g} to {hi:g}) but the "
                            f"Bernoulli likelihood needs binary pixels; {hint} and binarize")
        raise DataError(f"{count} are not binary (e.g. {example:g} at index {first}) but the "
                        f"Bernoulli likelihood needs 0 or 1; binarize them (--binarize dynamic) "
                        f"or use a continuous likelihood such as gaussian_mlp")
    raise DataError(f"{count} lie outside the support {base} of the likelihood (e.g. "
                    f"{example:g} at index {first})")


def non_density_site(model, x: torch.Tensor, y: torch.Tensor | None = None) -> str | None:
    """The name of an observed site of ``model`` whose distribution declares itself not a
    density (``is_density = False``, as :class:`models.distributions.GreyCrossEntropy`), or
    None. Its ELBO is then a training objective, not a bound on log p(x)."""
    with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
        tr = _trace(program(model, "model"), x, y, "model")
    for name, site in _sample_sites(tr).items():
        if site["is_observed"] and getattr(site["fn"], "is_density", True) is False:
            return name
    return None

