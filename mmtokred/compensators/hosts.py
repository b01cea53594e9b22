"""Where a compensator goes in each host, and how a host is put at a reduction degree.

A host adapter declares, for one model family:
  * ``qv_slots(model)``: per block, the packed projection weight holding q and v (mmseg ViT: the
    ``nn.MultiheadAttention.in_proj_weight`` of each layer, q = rows [0, C), v = rows [2C, 3C); timm ViT: the
    ``qkv`` Linear's weight, same layout);
  * ``set_degree(model, setting)``: apply one entry of a compensator's degree list (a reduction setting);
  * ``distill_output(model, x)``: what self-distillation compares, and whether it is class logits (KL on the class
    axis 1) or features (L1).

Applying a compensator (:func:`apply_compensator`, :func:`fold_compensator`) never adds a module, parameter or
buffer to the host: the branch swaps the projection weight for W + dW during the module's own forward (the
upstream forward code runs unchanged; dW is computed from the active chunks only, L * 2 * C * C * rank * |t - s|
MACs per forward whatever the token count); folding adds dW to the weights in place (zero run-time cost) and
:func:`unfold_compensator` subtracts it again.
"""
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn

from .tocom import TokenCompensator, plain


@dataclass
class QVSlot:
    """The packed (3C, C) projection weight of one block: ``getattr(module, name)``; q = rows [0, C), v = rows
    [2C, 3C)."""
    module: nn.Module
    name: str
    dims: int


class HostAdapter:
    name: str = ''

    @staticmethod
    def matches(model) -> bool:  # pragma: no cover - interface
        raise NotImplementedError

    def qv_slots(self, model) -> List[QVSlot]:  # pragma: no cover - interface
        raise NotImplementedError

    def set_degree(self, model, setting) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def distill_output(self, model, x: Tensor) -> Tuple[Tensor, str]:  # pragma: no cover - interface
        raise NotImplementedError


def _packed_slot(module, name, dims, where):
    weight = getattr(module, name, None)
    if weight is None or tuple(weight.shape) != (3 * dims, dims):
        raise TypeError(f'{where}: expected a packed (3C, C) = ({3 * dims}, {dims}) q/k/v projection weight '
                        f'{name!r}, got {None if weight is None else tuple(weight.shape)}')
    return QVSlot(module, name, dims)


class MMSegViTAdapter(HostAdapter):
    """mmseg ``VisionTransformer`` (bare, or the ``backbone`` of a segmentor)."""
    name = 'mmseg.VisionTransformer'

    @staticmethod
    def backbone(model):
        return getattr(model, 'backbone', model)

    @staticmethod
    def matches(model) -> bool:
        try:
            from mmseg.models.backbones import VisionTransformer
        except ImportError:  # pragma: no cover - mmseg is a hard dependency of the hosts
            return False
        return isinstance(MMSegViTAdapter.backbone(model), VisionTransformer)

    def qv_slots(self, model):
        layers = self.backbone(model).layers
        return [_packed_slot(layer.attn.attn, 'in_proj_weight', layer.attn.embed_dims, f'layers[{i}].attn.attn')
                for i, layer in enumerate(layers)]

    def set_degree(self, model, setting):
        from ..hosts import insert_token_reduction
        if setting is None:
            insert_token_reduction(model, None, None)
        else:
            insert_token_reduction(model, **setting)

    def distill_output(self, model, x):
        if hasattr(model, 'decode_head'):
            return model(x, mode='tensor'), 'logits'
        return self.backbone(model)(x)[-1], 'features'


class TimmViTAdapter(HostAdapter):
    """timm ``VisionTransformer`` (DeiT / ViT), with the reductions of :mod:`mmtokred.hosts.timm_vit`."""
    name = 'timm.VisionTransformer'

    @staticmethod
    def matches(model) -> bool:
        try:
            from timm.models.vision_transformer import VisionTransformer
        except ImportError:
            return False
        return isinstance(model, VisionTransformer)

    def qv_slots(self, model):
        return [_packed_slot(block.attn.qkv, 'weight', block.attn.qkv.in_features, f'blocks[{i}].attn.qkv')
                for i, block in enumerate(model.blocks)]

    def set_degree(self, model, setting):
        from ..hosts.timm_vit import configure_timm_reduction
        configure_timm_reduction(model, **(setting or {}))

    def distill_output(self, model, x):
        if getattr(model, 'num_classes', 0):
            return model(x), 'logits'
        return model.forward_features(x), 'features'


HOST_ADAPTERS: Tuple[HostAdapter, ...] = (MMSegViTAdapter(), TimmViTAdapter())


def host_adapter(model) -> HostAdapter:
    """The adapter of ``model``'s family, else a TypeError listing the supported hosts."""
    for adapter in HOST_ADAPTERS:
        if adapter.matches(model):
            return adapter
    raise TypeError(f'no compensator host adapter for a {type(model).__name__}; supported: '
                    f'{[a.name for a in HOST_ADAPTERS]}')


def host_signature(model) -> Tuple[HostAdapter, List[QVSlot]]:
    adapter = host_adapter(model)
    return adapter, adapter.qv_slots(model)


def build_compensator_for(model, degrees, rank: int = 2, scale: float = 0.1) -> TokenCompensator:
    """A fresh compensator sized for ``model`` (its width, depth and host family)."""
    adapter, slots = host_signature(model)
    return TokenCompensator(slots[0].dims, len(slots), degrees, rank, scale, adapter.name)


def canonical_reducer(cfg) -> Optional[dict]:
    """A reducer config with every default filled in (plain data), or None when it reduces nothing."""
    import inspect

    from ..reducers import REDUCERS, build_reducer
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
    adapter, slots = host_signature(model)
    comp.check_host(slots[0].dims, len(slots), adapter.name)
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
        model: a supported host (see :data:`HOST_ADAPTERS`).
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
