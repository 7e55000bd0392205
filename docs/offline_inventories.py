"""intersphinx inventories for building the docs offline (tests, CI, machines without network).

Sphinx links a reference such as :class:`torch.Tensor` or :class:`pyro.infer.Trace_ELBO` to
another project's site through that site's ``objects.inv``. A build without network cannot
fetch one, so this module writes small inventories of the objects the lab's pages and
docstrings name, with the address each has on the project's published site. Read the Docs
reads the published inventories first (``docs/conf.py``). A name not listed here is shown as
text, not linked; add it to ``OBJECTS`` to link it.
"""

from __future__ import annotations

import zlib
from pathlib import Path

SITES = {
    "pyro": "https://docs.pyro.ai/en/stable/",
    "torch": "https://pytorch.org/docs/stable/",
    "numpy": "https://numpy.org/doc/stable/",
}

# (site, role, name, page#anchor): the page each object has on its project's site.
_PYRO_INFER = "inference_algos.html#pyro.infer"
OBJECTS = [
    ("pyro", "class", "pyro.infer.SVI", f"{_PYRO_INFER}.svi.SVI"),
    ("pyro", "class", "pyro.infer.ELBO", f"{_PYRO_INFER}.elbo.ELBO"),
    ("pyro", "class", "pyro.infer.Trace_ELBO", f"{_PYRO_INFER}.trace_elbo.Trace_ELBO"),
    ("pyro", "class", "pyro.infer.TraceMeanField_ELBO",
     f"{_PYRO_INFER}.trace_mean_field_elbo.TraceMeanField_ELBO"),
    ("pyro", "class", "pyro.infer.TraceEnum_ELBO", f"{_PYRO_INFER}.traceenum_elbo.TraceEnum_ELBO"),
    ("pyro", "class", "pyro.infer.TraceGraph_ELBO",
     f"{_PYRO_INFER}.tracegraph_elbo.TraceGraph_ELBO"),
    ("pyro", "class", "pyro.infer.RenyiELBO", f"{_PYRO_INFER}.renyi_elbo.RenyiELBO"),
    ("pyro", "function", "pyro.infer.config_enumerate",
     f"{_PYRO_INFER}.enum.config_enumerate"),
    ("pyro", "class", "pyro.nn.PyroModule", "nn.html#pyro.nn.module.PyroModule"),
    ("pyro", "class", "pyro.nn.PyroParam", "nn.html#pyro.nn.module.PyroParam"),
    ("pyro", "function", "pyro.sample", "primitives.html#pyro.primitives.sample"),
    ("pyro", "function", "pyro.param", "primitives.html#pyro.primitives.param"),
    ("pyro", "function", "pyro.module", "primitives.html#pyro.primitives.module"),
    ("pyro", "class", "pyro.plate", "primitives.html#pyro.primitives.plate"),
    ("pyro", "function", "pyro.poutine.condition", "poutine.html#pyro.poutine.handlers.condition"),
    ("pyro", "function", "pyro.poutine.mask", "poutine.html#pyro.poutine.handlers.mask"),
    ("pyro", "function", "pyro.poutine.scale", "poutine.html#pyro.poutine.handlers.scale"),
    ("pyro", "function", "pyro.poutine.trace", "poutine.html#pyro.poutine.handlers.trace"),
    ("pyro", "function", "pyro.poutine.replay", "poutine.html#pyro.poutine.handlers.replay"),
    ("pyro", "function", "pyro.poutine.block", "poutine.html#pyro.poutine.handlers.block"),
    ("pyro", "function", "pyro.poutine.uncondition",
     "poutine.html#pyro.poutine.handlers.uncondition"),
    ("pyro", "class", "pyro.poutine.messenger.Messenger",
     "poutine.html#pyro.poutine.messenger.Messenger"),
    ("pyro", "class", "pyro.distributions.Normal", "distributions.html#normal"),
    ("pyro", "class", "pyro.distributions.Bernoulli", "distributions.html#bernoulli"),
    ("pyro", "class", "pyro.distributions.Independent", "distributions.html#independent"),
    ("pyro", "class", "pyro.distributions.TorchDistribution",
     "distributions.html#pyro.distributions.torch_distribution.TorchDistribution"),
    ("pyro", "class", "pyro.distributions.transforms.ConditionalAffineAutoregressive",
     "distributions.html#conditionalaffineautoregressive"),
    ("pyro", "class", "pyro.distributions.transforms.ConditionalSplineAutoregressive",
     "distributions.html#conditionalsplineautoregressive"),
    ("torch", "class", "torch.Tensor", "tensors.html#torch.Tensor"),
    ("torch", "class", "torch.device", "tensor_attributes.html#torch.device"),
    ("torch", "class", "torch.dtype", "tensor_attributes.html#torch.dtype"),
    ("torch", "class", "torch.Generator", "generated/torch.Generator.html#torch.Generator"),
    ("torch", "class", "torch.nn.Module", "generated/torch.nn.Module.html#torch.nn.Module"),
    ("torch", "class", "torch.nn.Parameter",
     "generated/torch.nn.parameter.Parameter.html#torch.nn.parameter.Parameter"),
    ("torch", "class", "torch.optim.Optimizer", "optim.html#torch.optim.Optimizer"),
    ("torch", "class", "torch.optim.Adam", "generated/torch.optim.Adam.html#torch.optim.Adam"),
    ("torch", "class", "torch.utils.data.Dataset", "data.html#torch.utils.data.Dataset"),
    ("torch", "class", "torch.utils.data.DataLoader", "data.html#torch.utils.data.DataLoader"),
    ("torch", "class", "torch.nn.parallel.DistributedDataParallel",
     "generated/torch.nn.parallel.DistributedDataParallel.html"
     "#torch.nn.parallel.DistributedDataParallel"),
    ("torch", "function", "torch.load", "generated/torch.load.html#torch.load"),
    ("torch", "function", "torch.manual_seed",
     "generated/torch.manual_seed.html#torch.manual_seed"),
    ("torch", "function", "torch.set_num_threads",
     "generated/torch.set_num_threads.html#torch.set_num_threads"),
    ("torch", "function", "torch.compile", "generated/torch.compile.html#torch.compile"),
    ("numpy", "class", "numpy.ndarray", "reference/generated/numpy.ndarray.html#numpy.ndarray"),
    ("numpy", "class", "numpy.random.Generator",
     "reference/random/generator.html#numpy.random.Generator"),
    ("numpy", "function", "numpy.savez", "reference/generated/numpy.savez.html#numpy.savez"),
]

# Names of other libraries that are not linked (the pages show them as text): a reference to
# one of them is not checked. Everything else, our own code above all, must resolve.
UNCHECKED = [
    r"(torch|pyro|numpy|np|scipy|sklearn|matplotlib|PIL|arviz|tqdm|mlflow|pandas)(\..*)?",
    r"(typing|collections|pathlib|argparse|contextlib|dataclasses|enum|abc|os|io|json|types)"
    r"(\..*)?",
    r"(functools|itertools|multiprocessing|threading|concurrent|socket|subprocess|datetime)"
    r"(\..*)?",
    r"(int|float|str|bool|bytes|dict|list|tuple|set|frozenset|object|type|None|Any|Callable)",
    r"(Iterable|Iterator|Sequence|Mapping|Path|Tensor|Generator|Module|Parameter|Figure)",
    r"(optional|callable|array_like|iterable|string|number|path)",
    r"(dict|list|tuple|set|type)\[.*",  # pieces of generic type hints
    r"(Transform|ExpandedDistribution|TransformedDistribution|Distribution)",  # Pyro, bare
    r".*\._[A-Za-z]\w*",  # private base classes, which the reference leaves out
]


def _canonical(name: str) -> str | None:
    """Where the object is defined (``pyro.infer.elbo.ELBO`` for ``pyro.infer.ELBO``): the
    name a type hint resolves to."""
    import importlib

    parts = name.split(".")
    for i in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr, None)
        module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
        return f"{module}.{qualname}" if module and qualname else None
    return None


def _inventory(site: str) -> bytes:
    header = (f"# Sphinx inventory version 2\n# Project: {site}\n# Version: \n"
              "# The remainder of this file is compressed using zlib.\n")
    entries = {}
    for s, role, name, uri in OBJECTS:
        if s == site:
            for alias in (name, _canonical(name)):
                if alias:
                    entries.setdefault(alias, (role, uri))
    lines = "".join(f"{name} py:{role} 1 {uri} -\n" for name, (role, uri) in entries.items())
    return header.encode() + zlib.compress(lines.encode())


def write(folder: Path) -> dict[str, Path]:
    """Write ``<site>.inv`` for every site into ``folder``; return their paths by site."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for site in SITES:
        path = folder / f"{site}.inv"
        data = _inventory(site)
        if not path.exists() or path.read_bytes() != data:
            path.write_bytes(data)
        paths[site] = path
    return paths
