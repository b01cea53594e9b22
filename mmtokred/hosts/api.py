"""What tools may ask of a model with reductions, without knowing its host: its plan, its reducers, and the same
model with the reduction switched off (the same weights, the upstream forward)."""
import contextlib
import dataclasses
from typing import List, Optional

from mmengine.model import is_model_wrapper

from .registry import ReductionPlan, state_of


def _reduced_module(model):
    if is_model_wrapper(model):
        model = model.module
    backbone = getattr(model, 'backbone', model)
    return backbone if state_of(backbone) is not None else None


def reduction_plan(model) -> Optional[ReductionPlan]:
    """The plan of a model (segmentor, detector, classifier or backbone); None when no host converted it."""
    module = _reduced_module(model)
    return None if module is None else state_of(module).plan


def reducers_of(model) -> List:
    """The reducers that run in the model's forward, one per span (empty when nothing is reduced)."""
    plan = reduction_plan(model)
    return [] if plan is None or not plan.active else list(plan.reducers)


@contextlib.contextmanager
def reduction_disabled(model):
    """Run ``model`` as upstream inside the block (the plan is emptied, then put back)."""
    module = _reduced_module(model)
    if module is None:
        yield model
        return
    state = state_of(module)
    plan = state.plan
    state.plan = dataclasses.replace(plan, reducers=(), sites=(), spans=())
    try:
        yield model
    finally:
        state.plan = plan
