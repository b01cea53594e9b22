"""Attaching a compensator to a model and putting the model at a reduction degree.

Where a compensator goes is the host's knowledge (:class:`mmtokred.hosts.Host`: ``qv_slots`` per block, the packed
projection weight holding q and v; ``distill_output``: what self-distillation compares); a degree is a reduction
setting, applied with :func:`mmtokred.hosts.insert_token_reduction`.

Applying a compensator (:func:`apply_compensator`, :func:`fold_compensator`) never adds a module, parameter or
buffer to the host: the branch swaps the projection weight for W + dW during the module's own forward (the
upstream forward code runs unchanged; dW is computed from the active chunks only, L * 2 * C * C * rank * |t - s|
MACs per forward whatever the token count); folding adds dW to the weights in place (zero run-time cost) and
:func:`unfold_compensator` subtracts it again.
"""
import inspect
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch import Tensor

from ..hosts import HOSTS, Host, QVSlot, host_for_module, insert_token_reduction
from ..reducers import REDUCERS, build_reducer
from .tocom import TokenCompensator, plain


def compensator_host(model) -> Host:
    """The host of ``model``'s family that declares where a compensator goes, else a TypeError listing them."""
    try:
        host = host_for_module(getattr(model, 'backbone', model))
    except TypeError:
        host = None
    if host is None or not host.takes_compensator:
        raise TypeError(f'no compensator host adapter for a {type(model).__name__}; supported: '
                        f'{[h.family for h in HOSTS.values() if h.takes_compensator]}')
    return host


def set_degree(model, setting) -> None:
    """Put ``model`` at one entry of a compensator's degree list (a reduction setting; None: no reduction)."""
    setting = dict(setting or {})
    insert_token_reduction(model, setting.pop('reducer', None), setting.pop('reduce_after_layer', None), **setting)


def host_signature(model) -> Tuple[Host, List[QVSlot]]:
    host = compensator_host(model)
    return host, host.qv_slots(model)


def build_compensator_for(model, degrees, rank: int = 2, scale: float = 0.1) -> TokenCompensator:
    """A fresh compensator sized for ``model`` (its width, depth and host family)."""
    host, slots = host_signature(model)
    return TokenCompensator(slots[0].dims, len(slots), degrees, rank, scale, host.family)


def canonical_reducer(cfg) -> Optional[dict]:
    """A reducer config with every default filled in (plain data), or None when it reduces nothing."""
    if cfg is None or not build_reducer(cfg).enabled:
        return None
    cfg = plain(dict(cfg))
    params = inspect.signature(REDUCERS[cfg['type']].__init__).parameters.values()
    defaults = {p.name: plain(p.default) for p in params if p.default is not inspect.Parameter.empty}
    return {**defaults, **cfg}


def canonical_setting(setting, depth: int) -> Optional[dict]:
    """A degree setting ``dict(reducer=..., reduce_after_layer=..., restore_after_layer=None,
    restore_site='backbone')`` (None or a disabled reducer: no reduction) in a form where equal settings compare
    equal: reducer defaults filled in, tuples as lists, ``restore_after_layer=None`` as the last layer."""
    if setting is None:
        return None
    setting = dict(setting)
    reducer = canonical_reducer(setting.pop('reducer', None))
    if reducer is None:
        return None
    out = dict(reduce_after_layer=None, restore_after_layer=None, restore_site='backbone')
    out.update(plain(setting))
    if out['restore_after_layer'] is None:
        out['restore_after_layer'] = depth - 1
    out['reducer'] = reducer
    return out


def find_degree(compensator: TokenCompensator, setting, depth: int, target: Optional[int] = None) -> int:
    """The index of the compensator degree equal to the model's reduction ``setting``; with ``target`` given,
    check that degree ``target`` is that setting. A ValueError names the setting and the trained degrees."""
    canon = canonical_setting(setting, depth)
    matches = [i for i, d in enumerate(compensator.degrees) if canonical_setting(d, depth) == canon]
    if target is not None:
        compensator.check_degree('target', target)
        if target not in matches:
            raise ValueError(f'compensator target degree {target} is {compensator.degrees[target]}, but the model '
                             f'reduces with {setting}')
        return target
    if not matches:
        raise ValueError(f'the model\'s reduction {setting} is not one of the degrees this compensator was trained '
                         f'for: {compensator.degrees}')
    return matches[0]


def _checked_slots(model, comp: TokenCompensator) -> List[QVSlot]:
    host, slots = host_signature(model)
    comp.check_host(slots[0].dims, len(slots), host.family)
    return slots


def _add_qv(weight: Tensor, delta: Tensor) -> Tensor:
    """weight: (3C, C) packed q/k/v; delta: (2, C, C) for q, v -> a new (3C, C) tensor with the rows added."""
    C = weight.shape[1]
    out = weight.clone()
    out[:C] += delta[0].to(weight)
    out[2 * C:] += delta[1].to(weight)
    return out


class CompensatorBranch:
    """A compensator attached to a model as a run-time branch; change the degrees with :meth:`set_degrees`,
    detach with :meth:`remove`. The compensator stays outside the model (no state-dict key); gradients reach it
    through the swapped weights, which is how tools/train_compensator.py trains it.

    Args:
        model: a model of a host that declares ``qv_slots`` (mmseg ViT, timm ViT).
        compensator: a :class:`TokenCompensator` trained for this host's width, depth and family.
        source, target: degree indices (source: where the model is at home, usually 0 = unreduced; target: the
            degree it runs at).
        scale: overrides the compensator's scale (the paper tunes it at inference).
    """

    def __init__(self, model, compensator: TokenCompensator, source: int = 0, target: int = 0,
                 scale: Optional[float] = None):
        self.compensator = compensator
        self.slots = _checked_slots(model, compensator)
        self.scale = scale
        self.set_degrees(source, target)
        self._saved: Dict[int, Tensor] = {}
        self._handles = []
        for i, slot in enumerate(self.slots):
            self._handles.append(slot.module.register_forward_pre_hook(self._swap_in(i)))
            self._handles.append(slot.module.register_forward_hook(self._swap_out(i), always_call=True))

    def set_degrees(self, source: int, target: int):
        self.source = self.compensator.check_degree('source', source)
        self.target = self.compensator.check_degree('target', target)

    def _swap_in(self, i) -> Callable:
        def hook(module, args):
            if self.source == self.target:
                return
            slot = self.slots[i]
            weight = module._parameters[slot.name]
            delta = self.compensator.delta_weight(self.source, self.target, self.scale, layer=i)
            self._saved[i] = weight
            module._parameters[slot.name] = _add_qv(weight, delta)   # a plain tensor for this forward only
        return hook

    def _swap_out(self, i) -> Callable:
        def hook(module, args, output):
            if i in self._saved:
                module._parameters[self.slots[i].name] = self._saved.pop(i)
        return hook

    def remove(self):
        for h in self._handles:
            h.remove()
        self._handles = []


def apply_compensator(model, compensator: TokenCompensator, source: int = 0, target: int = 0,
                      mode: str = 'branch', scale: Optional[float] = None):
    """Compensate ``model`` for running at degree ``target`` instead of ``source``.

    ``mode='branch'`` returns a :class:`CompensatorBranch` (remove it to undo); ``mode='fold'`` adds dW to the q/v
    weights in place (exact, no run-time cost; undo with :func:`unfold_compensator`) and returns None.
    """
    if mode == 'branch':
        return CompensatorBranch(model, compensator, source, target, scale)
    if mode == 'fold':
        fold_compensator(model, compensator, source, target, scale)
        return None
    raise ValueError(f"mode must be one of ['branch', 'fold'], got {mode!r}")


@torch.no_grad()
def fold_compensator(model, compensator: TokenCompensator, source: int, target: int,
                     scale: Optional[float] = None):
    """Add dW(source -> target) to the q / v rows of every block's projection weight, in place."""
    for i, slot in enumerate(_checked_slots(model, compensator)):
        weight = getattr(slot.module, slot.name)
        weight.copy_(_add_qv(weight, compensator.delta_weight(source, target, scale, layer=i)))


def unfold_compensator(model, compensator: TokenCompensator, source: int, target: int,
                       scale: Optional[float] = None):
    """Undo :func:`fold_compensator` (subtracts the same dW: exact up to one rounding of the addition)."""
    fold_compensator(model, compensator, target, source, scale)
