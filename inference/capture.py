"""The fast path: a computation of a pair, captured per input shape as an ATen graph.

``make_fx`` runs a function of (model, guide, x, y) once on fake tensors and records the
ATen operations it dispatches; the graph then replays them without Pyro's messenger stack,
distribution objects or Python control flow, and inductor can compile it (fusing the
elementwise work). Parameters and buffers are graph inputs (gradients flow to the modules'
own tensors) and random draws stay ``aten.normal`` calls on the global generator
(``fallback_random`` when compiled), so a captured call draws exactly what an eager one
would.

Capture is safe only for programs whose operations do not depend on the data's values:
fake tensors have no values, so a branch on them (``if x.sum() > 0``) or a ``.item()``
makes the capture fail, and the function keeps running eagerly. Each new graph is also
checked against the eager function on its first inputs, under the same draws.
"""

from __future__ import annotations

import contextlib
import math
from collections import Counter
from collections.abc import Callable
from typing import Any

import torch
from torch.fx.experimental.proxy_tensor import make_fx
from torch.nn.utils.stateless import _reparametrize_module
from torch.utils._pytree import tree_leaves

from inference.objectives import lean_equivalent
from inference.programs import ParamsAsGiven, owner

CAPTURE_AFTER = 20  # calls with one input shape before it is captured: short runs stay eager
# Training graphs hold the backward pass too (one joint graph replays loss and gradients,
# without autograd's engine); False keeps a forward graph and autograd's backward.
JOINT = True


def _close(a: list, b: list) -> bool:
    return len(a) == len(b) and all(
        (u is None and v is None) or (u is not None and v is not None and u.shape == v.shape
                                      and bool(torch.allclose(u, v, rtol=1e-4, atol=1e-3)))
        for u, v in zip(a, b, strict=False))


def same_outputs(first, second, x: torch.Tensor, y: torch.Tensor | None, *,
                 params: list[torch.Tensor] | None = None) -> tuple[bool, str]:
    """Run two functions of (x, y) under the same random draws; (equal?, what they gave).

    With ``params`` the first output's gradients with respect to them must agree too: a
    graph that replays the forward pass but loses a custom backward is caught here.
    """
    devices = [x.device] if x.device.type == "cuda" else []
    grads = []
    try:
        with torch.random.fork_rng(devices=devices), torch.set_grad_enabled(bool(params)):
            outs = []
            for fn in (first, second):
                torch.manual_seed(0)
                outs.append(tree_leaves(fn(x, y)))
                if params:
                    grads.append(list(torch.autograd.grad(outs[-1][0], params,
                                                          allow_unused=True)))
    except Exception as e:  # a user's program can fail in any way; the caller falls back
        return False, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    a, b = outs
    if not _close(a, b):
        return False, f"{a[0].sum().item():.6g} vs {b[0].sum().item():.6g}"
    if params and not _close(*grads):
        return False, "the same value but different gradients"
    return True, "the same value" + (" and gradients" if params else "")


def same_step(joint, eager, x: torch.Tensor, y: torch.Tensor | None,
              params: list[torch.Tensor]) -> tuple[bool, str]:
    """Whether a joint graph's (loss, gradients) are the eager loss and its gradients with
    respect to ``params``, under the same random draws; (equal?, what they gave)."""
    devices = [x.device] if x.device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(0)
            with torch.no_grad():
                loss, grads = joint(x, y)
            torch.manual_seed(0)
            plain = eager(x, y)
            want = list(torch.autograd.grad(plain, params, allow_unused=True))
    except Exception as e:  # a user's program can fail in any way; the caller falls back
        return False, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    if not _close([loss], [plain.detach()]):
        return False, f"{loss.sum().item():.6g} vs {plain.sum().item():.6g}"
    if not _close(list(grads), want):
        return False, "the same value but different gradients"
    return True, "the same value and gradients"


def _owners(model, guide) -> list[torch.nn.Module]:
    """The distinct modules whose parameters the two programs run on."""
    out: list[torch.nn.Module] = []
    for fn in (model, guide):
        module = owner(fn)
        if module is None:
            raise ValueError(f"{fn!r} is not a module or a module's method")
        if all(module is not m for m in out):
            out.append(module)
    return out


@contextlib.contextmanager
def _swapped(modules: list[torch.nn.Module], states: list[dict[str, torch.Tensor]]):
    """Each module runs on the tensors of its state (as ``torch.func.functional_call``),
    whichever of its methods is called."""
    with contextlib.ExitStack() as stack:
        for module, state in zip(modules, states, strict=True):
            stack.enter_context(_reparametrize_module(module, state))
        yield


class Captured:
    """``fn(model, guide, x, y)``, captured (and optionally compiled) per input shape once
    that shape has been seen ``capture_after`` times; eager before, or when refused.
    ``model`` and ``guide`` are modules or modules' methods (programs of
    :mod:`inference.programs`), whose parameters and buffers become graph inputs."""

    def __init__(self, fn: Callable, model, guide, *, compile: bool = False,
                 capture_after: int | float | None = None, grad: bool = True,
                 live: list[tuple[Any, str]] | None = None, joint: bool = False):
        self.fn, self.model, self.guide, self.compile, self.grad = fn, model, guide, compile, grad
        self.joint = joint and grad and not compile  # graphs of (loss, gradients): see step
        self.live = list(live or [])  # (object, attribute): tensors read as graph inputs
        self.capture_after = capture_after
        self.modules = _owners(model, guide)
        self.states = tuple({**dict(m.named_parameters()), **dict(m.named_buffers())}
                            for m in self.modules)
        self.graphs: dict[Any, Callable | None] = {}
        self.seen: Counter = Counter()
        self.refusals: list[str] = []

    @property
    def note(self) -> str:
        shapes = [str(tuple(key[0])) for key, graph in self.graphs.items() if graph is not None]
        kind = ("graph captured and compiled" if self.compile else
                "joint forward-backward graph captured" if self.joint else "graph captured")
        after = CAPTURE_AFTER if self.capture_after is None else self.capture_after
        done = (f"{kind} for batch shape " + ", ".join(shapes) if shapes else "eager" if
                after == math.inf else f"eager until a batch shape has been seen {after} times")
        return "; ".join([done, *self.refusals])

    def eager(self, x: torch.Tensor, y: torch.Tensor | None):
        return self.fn(self.model, self.guide, x, y)

    def _graph(self, x: torch.Tensor, y: torch.Tensor | None) -> Callable | None:
        """The graph for this input shape, captured once the shape has recurred enough."""
        key = (x.shape, x.dtype, x.device, None if y is None else (y.shape, y.dtype))
        graph = self.graphs.get(key)
        if graph is None and key not in self.graphs:
            self.seen[key] += 1
            after = CAPTURE_AFTER if self.capture_after is None else self.capture_after
            if self.seen[key] >= after:
                graph = self.graphs[key] = self._capture(x, y)
        return graph

    def __call__(self, x: torch.Tensor, y: torch.Tensor | None):
        if self.joint:
            raise TypeError("a joint graph returns gradients too: call step(x, y)")
        graph = self._graph(x, y)
        return self.eager(x, y) if graph is None else self._run(graph, x, y)

    def step(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """The loss, detached, with its gradients accumulated into the parameters'
        ``.grad``: from the joint graph (no autograd) once captured, by backward before."""
        graph = self._graph(x, y)
        if graph is None or not self.joint:
            loss = self.eager(x, y) if graph is None else self._run(graph, x, y)
            loss.backward()
            return loss.detach()
        with torch.no_grad():
            loss, grads = self._run(graph, x, y)
        for p, g in zip(self._params(), grads, strict=True):
            if g is not None:  # a parameter shared by two modules gets both parts
                p.grad = g if p.grad is None else p.grad + g
        return loss

    def _run(self, graph: Callable, x, y):
        return graph(x, y, list(self.states), [getattr(o, a) for o, a in self.live])

    def _params(self) -> list[torch.Tensor] | None:
        """Parameters whose gradients a captured training graph must reproduce."""
        if not self.grad:
            return None
        return [p for s in self.states for p in s.values() if p.requires_grad]

    def _functional(self, x, y, states, live):
        """``fn`` as a plain function of its inputs, for make_fx; in joint mode it returns
        (loss, gradients with respect to the trainable tensors of ``states``)."""
        kept = [getattr(o, a) for o, a in self.live]
        try:  # the live tensors (e.g. a handler's β) become inputs of the graph
            for (o, a), value in zip(self.live, live, strict=True):
                setattr(o, a, value)
            with _swapped(self.modules, states), ParamsAsGiven():
                out = self.fn(self.model, self.guide, x, y)
        finally:
            for (o, a), value in zip(self.live, kept, strict=True):
                setattr(o, a, value)
        if not self.joint:
            return out
        wrt = [t for s, own in zip(states, self.states, strict=True)
               for t, p in zip(s.values(), own.values(), strict=True) if p.requires_grad]
        return out.detach(), list(torch.autograd.grad(out, wrt, allow_unused=True))

    def _capture(self, x, y) -> Callable | None:
        detached = [{k: v.detach().requires_grad_(self.joint and v.requires_grad)
                     for k, v in s.items()} for s in self.states]
        live = [getattr(o, a).detach() for o, a in self.live]
        try:
            graph = make_fx(lambda x, y, states, lv: self._functional(x, y, states, lv),
                            tracing_mode="fake")(x, y, detached, live)
        except Exception as e:  # data-dependent control flow, unsupported operations
            self.refusals.append(f"capture refused for shape {tuple(x.shape)} "
                                 f"({type(e).__name__}), eager instead")
            return None
        graph.graph.eliminate_dead_code()
        graph.recompile()
        run = lambda a, b: self._run(graph, a, b)  # noqa: E731
        ok, detail = (same_step(run, self.eager, x, y, self._params()) if self.joint else
                      same_outputs(run, self.eager, x, y, params=self._params()))
        if not ok:
            self.refusals.append(f"capture refused for shape {tuple(x.shape)}: graph and "
                                 f"eager gave {detail}")
            return None
        return self._compiled(graph, x, y) if self.compile else graph

    def _compiled(self, graph: torch.fx.GraphModule, x, y) -> Callable:
        """The graph compiled by inductor, if that works and gives the graph's outputs.

        ``fallback_random`` keeps random draws on the global generator, as in eager mode;
        the config is read while compiling, which the first call (in the grad mode the
        function will run in) does.
        """
        import torch._inductor.config as inductor_config

        compiled = torch.compile(lambda x, y, states, lv: graph(x, y, states, lv), dynamic=False)
        with inductor_config.patch(fallback_random=True):
            ok, detail = same_outputs(lambda a, b: self._run(compiled, a, b),
                                      lambda a, b: self._run(graph, a, b), x, y,
                                      params=self._params())
        if not ok:
            self.refusals.append(f"compiling refused for shape {tuple(x.shape)} ({detail}); "
                                 f"the captured graph runs instead")
            return graph
        return compiled


class FastPath:
    """Which objective a training step runs, and why.

    With ``fast`` true, ``"auto"`` or ``"compile"`` a Pyro ELBO with a lean equivalent
    (:func:`~inference.objectives.lean_equivalent`) is replaced by it, eagerly at first and
    as a captured graph once a batch shape recurs. The graph is also compiled by inductor
    with ``"compile"``, and with ``"auto"`` on CUDA, where launches dominate a step; on a
    CPU a compile (seconds per batch shape) pays off only in long runs. :meth:`verify`
    checks on a real batch that the replacement gives Pyro's own value; if not, the step
    keeps Pyro's objective.
    """

    def __init__(self, loss, model, guide, fast: bool | str,
                 live: list[tuple[Any, str]] | None = None, refusal: str | None = None):
        if fast not in (False, True, "auto", "compile"):
            raise ValueError(f"fast must be False, True, 'auto' or 'compile', got {fast!r}")
        self.loss, self.captured = loss, None
        lean = None if fast is False else lean_equivalent(loss)
        if fast is False:
            self._reason = "off (fast=False)"
        elif refusal is not None:
            if fast in (True, "compile"):
                raise ValueError(f"no fast path for this pair: {refusal}")
            self._reason = f"off ({refusal})"
        elif lean is None:
            if fast in (True, "compile"):
                raise ValueError(f"no fast path for {type(loss).__name__}: it covers "
                                 f"Trace_ELBO and TraceMeanField_ELBO (one or vectorized "
                                 f"particles) and the objectives of inference.objectives")
            self._reason = f"off ({type(loss).__name__} has no lean equivalent)"
        else:
            why = getattr(lean, "capture_refusal", None)  # objectives a graph cannot hold
            if why and fast in (True, "compile"):
                raise ValueError(f"fast={fast!r}, but {type(lean).__name__} cannot be "
                                 f"captured: {why}")
            on_cuda = any(p.is_cuda for m in _owners(model, guide) for p in m.parameters())
            compile = fast == "compile" or (fast == "auto" and on_cuda)
            self.captured = Captured(lean.differentiable_loss, model, guide, compile=compile,
                                     live=live, capture_after=math.inf if why else None,
                                     joint=JOINT)
            self._reason = f"on ({type(lean).__name__}" + (f", eager: {why})" if why else ")")

    @property
    def active(self) -> bool:
        return self.captured is not None

    @property
    def reason(self) -> str:
        return self._reason + ("" if self.captured is None else f"; {self.captured.note}")

    def step(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """The batch loss (detached), its gradients accumulated (:meth:`Captured.step`)."""
        return self.captured.step(x, y)

    def verify(self, x: torch.Tensor, y: torch.Tensor | None) -> bool:
        if self.captured is None:
            return False
        model, guide = self.captured.model, self.captured.guide
        plain = lambda a, b: self.loss.differentiable_loss(model, guide, a, b)  # noqa: E731
        same, detail = same_outputs(plain, self.captured.eager, x, y,
                                    params=self.captured._params())
        if not same:
            self.captured = None
            self._reason = f"off (Pyro's objective and the lean one gave {detail})"
        return same
