"""``torch.compile`` of a model's forward, and the graph breaks dynamo meets in it."""
import functools
from dataclasses import dataclass, field
from typing import Callable, List

import torch


def compile_forward(model, forward: Callable, backend: str = 'inductor') -> Callable:
    """``forward(model, x)`` compiled for static shapes (one graph per input size, as in a fixed-size benchmark)."""
    return torch.compile(functools.partial(forward, model), backend=backend, dynamic=False)


def compile_cache(graphs: int):
    """Context in which dynamo keeps up to ``graphs`` compiled graphs per code object (default 8: several compiled
    models that share a forward function, at several batch sizes, would otherwise fall back to eager)."""
    import torch._dynamo.config as config
    return config.patch(recompile_limit=max(graphs, config.recompile_limit))


@dataclass
class GraphBreaks:
    """What dynamo found tracing one call: graphs, breaks, and one line per break (where and why)."""
    graphs: int
    breaks: int
    reasons: List[str] = field(default_factory=list)


def count_graph_breaks(fn: Callable, *args) -> GraphBreaks:
    """Trace ``fn(*args)`` with dynamo once (no compilation: ``torch._dynamo.explain``) and count its graph breaks."""
    import torch._dynamo as dynamo
    dynamo.reset()
    with torch.no_grad():
        found = dynamo.explain(fn)(*args)
    reasons = []
    for b in found.break_reasons:
        where = b.user_stack[-1] if b.user_stack else None
        site = f'{where.filename.rsplit("/", 1)[-1]}:{where.lineno}' if where else '?'
        reasons.append(f'{site}: {b.reason.splitlines()[0][:120]}')
    dynamo.reset()
    return GraphBreaks(found.graph_count, found.graph_break_count, reasons)
