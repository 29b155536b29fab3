"""Agent steps replayed from captured CUDA graphs (the training loop's GPU fast path).

At the reference sizes (32 users, batch 64, d = 32) acting and updating launch hundreds of tiny
kernels each, and on a GPU the time goes to launching them from Python, not to running them.
Capturing a step once and replaying it costs one launch instead.

What stays exact: the first calls run eagerly (they also warm up the optimiser state and the
CUDA libraries' workspaces, as capture requires); later calls copy their inputs into fixed
tensors and replay the graph, which runs the same kernels on the same parameters. Random draws
inside a graph come from the default CUDA generator (dropout) or from a generator registered
with the graph (the acting generator); a replay advances their offsets as eager calls would.

A graph is captured again whenever what it read by address changes: the catalogue's tensors or
its SID index (a catalogue swap or churn), the input shapes, or the agent's optimiser state
(after loading a checkpoint; call ``reset``). A step that cannot be captured (an agent whose
step synchronises with the host, say) runs eagerly from then on, with a warning.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch

from hsrl.agents.base import Action
from hsrl.replay import Batch

Tensors = dict[str, torch.Tensor]


def _catalogue_key(agent: Any) -> tuple:
    catalogue = agent.catalogue
    tensors = [catalogue.features, catalogue.live]
    sid = getattr(catalogue, "sid", None)
    sid_changes = -1
    if sid is not None:
        tensors += [sid.item_sid, sid.live]
        sid_changes = len(sid.changes)  # items added or retired rebuild its prefix tree
    pointers = tuple((t.data_ptr(), tuple(t.shape)) for t in tensors)
    return (id(catalogue), pointers, sid_changes)


class GraphedCall:
    """``fn(inputs) -> outputs`` (dicts of tensors) run eagerly ``eager_calls`` times, then
    captured and replayed. ``generators`` are the non-default CUDA generators ``fn`` draws from."""

    name = "step"

    def __init__(
        self,
        fn: Callable[[Tensors], Tensors],
        agent: Any,
        eager_calls: int = 3,
        generators: tuple[torch.Generator, ...] = (),
    ):
        if eager_calls < 1:
            raise ValueError("at least one eager call is needed before capture")
        self.fn = fn
        self.agent = agent
        self.eager_calls = eager_calls
        self.generators = generators
        self.captures = 0
        """How many times a graph was captured (for tests and logs)."""
        self.failed: str | None = None
        """Why capture failed, once it has (every call then runs eagerly)."""
        self.reset()

    def reset(self) -> None:
        """Forget the graph (the next calls run eagerly, then capture again)."""
        self.graph: torch.cuda.CUDAGraph | None = None
        self.inputs: Tensors = {}
        self.outputs: Tensors = {}
        self.key: tuple | None = None
        self.eager_left = self.eager_calls

    def __call__(self, inputs: Tensors) -> Tensors:
        key = (
            _catalogue_key(self.agent),
            tuple((name, tuple(t.shape), t.dtype) for name, t in inputs.items()),
        )
        if key != self.key:
            self.reset()
            self.key = key
        if self.graph is None:
            if self.eager_left > 0 or self.failed is not None:
                self.eager_left -= 1
                return self._eager(inputs)
            try:
                self._capture(inputs)
            except RuntimeError as exc:  # torch reports capture errors as RuntimeError
                self.failed = f"{exc.__class__.__name__}: {exc}".splitlines()[0]
                warnings.warn(
                    f"{self.name}: cannot be captured as a CUDA graph, running eagerly "
                    f"({self.failed})",
                    RuntimeWarning,
                    stacklevel=2,
                )
                self.reset()
                return self._eager(inputs)
        assert self.graph is not None
        for name, value in inputs.items():
            self.inputs[name].copy_(value)
        self.graph.replay()
        return {name: value.clone() for name, value in self.outputs.items()}

    def _eager(self, inputs: Tensors) -> Tensors:
        # Warm-up runs on a side stream, as capture does (CUDA libraries set up per stream).
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            outputs = self.fn(inputs)
        torch.cuda.current_stream().wait_stream(stream)
        return outputs

    def _capture(self, inputs: Tensors) -> None:
        self.inputs = {name: value.clone() for name, value in inputs.items()}
        graph = torch.cuda.CUDAGraph()
        for generator in self.generators:
            graph.register_generator_state(generator)
        torch.cuda.synchronize()
        with torch.cuda.graph(graph):
            outputs = self.fn(self.inputs)
        self.graph = graph
        self.outputs = dict(outputs)
        self.captures += 1


class GraphedUpdate(GraphedCall):
    """Callable like ``agent.update(batch)``: forward, backward, optimiser steps and target
    soft updates in one graph."""

    name = "update"

    def __init__(self, agent: Any, eager_calls: int = 3):
        for optimizer in agent.optimizers().values():
            for group in optimizer.param_groups:
                group["capturable"] = True  # keeps the step counts on the device
        super().__init__(lambda batch: agent.update(Batch(**batch)), agent, eager_calls=eager_calls)

    def __call__(self, batch: Batch) -> Tensors:  # type: ignore[override]
        return super().__call__({name: getattr(batch, name) for name in Batch.FIELDS})


class GraphedAct(GraphedCall):
    """Callable like ``agent.act(obs, explore=True, generator=generator)``."""

    name = "act"

    def __init__(self, agent: Any, generator: torch.Generator, eager_calls: int = 3):
        def act(obs: Tensors) -> Tensors:
            action = agent.act(obs, explore=True, generator=generator)
            return {"slate": action.slate, "record": action.record}

        super().__init__(act, agent, eager_calls=eager_calls, generators=(generator,))

    def __call__(self, obs: Tensors) -> Action:  # type: ignore[override]
        out = super().__call__(dict(obs))
        return Action(out["slate"], out["record"])


def graphs_supported() -> bool:
    """CUDA graphs with registered generators (torch >= 2.4)."""
    return torch.cuda.is_available() and hasattr(torch.cuda.CUDAGraph, "register_generator_state")
