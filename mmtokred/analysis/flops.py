"""Counting multiply-accumulates (MACs, reported as "GFLOPs" in the papers' convention) per phase.

A ``TorchDispatchMode`` sees every aten op, so attention is counted whether it is written as explicit matmuls
(mmcv / nn.MultiheadAttention with need_weights) or as ``scaled_dot_product_attention`` -- which mmengine's
counter misses. Counted ops and their formulas (MACs):

============================== ==========================================================================
op                             MACs
============================== ==========================================================================
mm / addmm  (m x k) @ (k x n)  m * k * n                       (every nn.Linear)
bmm / baddbmm (b, m, k)@(b,k,n) b * m * k * n                  (attention QK^T and AV, matching, clustering)
convolution                    out.numel() * C_in / groups * prod(kernel)      (patch embedding)
scaled_dot_product_attention   B * heads * L * S * (d_qk + d_v)
cdist (B, N, C), (B, M, C)     B * N * M * C                   (distances of reconstruction / matching)
============================== ==========================================================================

Modules whose core is not an aten op with a formula above have a module handle (a forward hook):

============================== ==========================================================================
module                         MACs (besides its nn.Linear layers, counted as mm / addmm)
============================== ==========================================================================
mmcv MultiScaleDeformable-     B * Nq * C * levels * points * (4 + 1): bilinear sampling of each sampled
Attention                      value (4 corner weights per channel) + the attention-weighted sum (1).
                               Its CUDA kernel is invisible to the dispatcher; on CPU it runs
                               ``grid_sample`` + element-wise ops, which no aten formula counts.
============================== ==========================================================================

Element-wise ops (norms, activations, softmax, additions, gathers) are not counted, as in fvcore/detectron2 --
the convention of the published numbers. Each op is attributed to the phase that is active when it runs
(:mod:`mmtokred.phases`); ops inside the backbone outside any marked phase count as "before reduction",
ops outside the backbone as "decode head / neck".
"""
from collections import OrderedDict, defaultdict
from math import prod

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from ..phases import BACKBONE_FULL, HEAD, ORDER, current_phase, phase_depth, pop_phase, push_phase

aten = torch.ops.aten


def _shape(t):
    return tuple(t.shape)


def mm_macs(a, b, *args, **kwargs):
    m, k = _shape(a)
    return m * k * _shape(b)[-1]


def addmm_macs(bias, a, b, *args, **kwargs):
    return mm_macs(a, b)


def bmm_macs(a, b, *args, **kwargs):
    bs, m, k = _shape(a)
    return bs * m * k * _shape(b)[-1]


def baddbmm_macs(inp, a, b, *args, **kwargs):
    return bmm_macs(a, b)


def conv_macs(x, w, *args, out=None, **kwargs):
    transposed = args[4] if len(args) > 4 else kwargs.get('transposed', False)
    w_shape = _shape(w)
    per_out = w_shape[1] * prod(w_shape[2:])
    if transposed:  # for transposed convs every *input* element meets C_out/groups * kernel weights
        return x.numel() * per_out
    return out.numel() * per_out


def sdpa_macs(q, k, v, *args, **kwargs):
    B, h, L, d = _shape(q)
    S = _shape(k)[-2]
    return B * h * L * S * (d + _shape(v)[-1])


def cdist_macs(x1, x2, *args, **kwargs):
    *batch, n, c = _shape(x1)
    return prod(batch) * n * _shape(x2)[-2] * c


FORMULAS = {
    aten.mm: mm_macs,
    aten.addmm: addmm_macs,
    aten.bmm: bmm_macs,
    aten.baddbmm: baddbmm_macs,
    aten.convolution: conv_macs,
    aten._cdist_forward: cdist_macs,
    aten._euclidean_dist: cdist_macs,   # torch.cdist's matmul path for p=2
}
for _name in ('_scaled_dot_product_efficient_attention', '_scaled_dot_product_flash_attention',
              '_scaled_dot_product_cudnn_attention', '_scaled_dot_product_flash_attention_for_cpu'):
    if hasattr(aten, _name):
        FORMULAS[getattr(aten, _name)] = sdpa_macs


BILINEAR_SAMPLE_MACS = 4   # one multiply-add per corner of the 2 x 2 neighbourhood, per channel


def msda_macs(module, output):
    """mmcv ``MultiScaleDeformableAttention``: output (B, Nq, C) (or (Nq, B, C)) ->
    ``B * Nq * C * num_levels * num_points * (BILINEAR_SAMPLE_MACS + 1)``; the value / offset / attention-weight /
    output projections are nn.Linear layers, counted by the aten formulas."""
    return output.numel() * module.num_levels * module.num_points * (BILINEAR_SAMPLE_MACS + 1)


def module_formulas():
    """{module class: formula(module, output) -> MACs} for the modules of the table above that are importable."""
    formulas = {}
    try:
        from mmcv.ops import MultiScaleDeformableAttention
    except ImportError:  # pragma: no cover  (mmcv without compiled ops)
        pass
    else:
        formulas[MultiScaleDeformableAttention] = msda_macs
    return formulas


class MacCounter(TorchDispatchMode):
    """Counts MACs per phase and per op while active.

    >>> with MacCounter() as counter:
    ...     model(x)
    >>> counter.by_phase()   # {'backbone: before reduction': ..., ...}
    """

    def __init__(self, default_phase: str = HEAD):
        super().__init__()
        self.default_phase = default_phase
        self.macs = defaultdict(int)               # phase -> MACs
        self.by_op = defaultdict(int)              # (phase, op) -> MACs

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = FORMULAS.get(func._overloadpacket)
        if formula is not None:
            if func._overloadpacket is aten.convolution:
                n = formula(*args, out=out, **kwargs)
            else:
                n = formula(*args, **kwargs)
            self.add(n, func._overloadpacket.__name__)
        return out

    def add(self, macs: int, op: str):
        """Attribute ``macs`` of ``op`` to the current phase (used by the aten formulas and module handles)."""
        name = current_phase(self.default_phase)
        self.macs[name] += macs
        self.by_op[(name, op)] += macs

    def total(self) -> int:
        return sum(self.macs.values())

    def by_phase(self):
        ordered = OrderedDict((k, self.macs[k]) for k in ORDER if k in self.macs)
        ordered.update((k, v) for k, v in self.macs.items() if k not in ordered)
        return ordered


def _backbone_of(model):
    return getattr(model, 'backbone', None)


def count_model_macs(model, inputs, forward=None):
    """Run ``forward(model, inputs)`` (default: ``model(inputs)``) under a :class:`MacCounter`. Ops inside
    ``model.backbone`` that no host marks count as "backbone: before reduction"; the modules of
    :func:`module_formulas` add their handle's MACs. Returns the counter."""
    backbone = _backbone_of(model)
    handles = []
    formulas = module_formulas()
    counter = MacCounter()
    for module in model.modules():
        formula = next((f for cls, f in formulas.items() if isinstance(module, cls)), None)
        if formula is not None:
            handles.append(module.register_forward_hook(
                lambda m, a, out, f=formula: counter.add(f(m, out), type(m).__name__)))
    if backbone is not None:
        handles.append(backbone.register_forward_pre_hook(lambda m, a: push_phase(BACKBONE_FULL)))
        handles.append(backbone.register_forward_hook(lambda m, a, o: pop_phase()))
    depth = phase_depth()
    try:
        with torch.no_grad(), counter:
            (forward or (lambda m, x: m(x)))(model, inputs)
    finally:
        for h in handles:
            h.remove()
        while phase_depth() > depth:  # a forward that raised never ran the backbone's closing hook
            pop_phase()
    return counter

