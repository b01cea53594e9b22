"""Which attention kernel each attention call of a model runs, and whether a baseline and its reduced model agree.

Fused attention changes what a token reduction saves (the merge step can become the bottleneck) and some reducers
force a slower kernel (returned attention weights, a size bias): a speed-up is only comparable when the baseline
and the reduced model run the same attention implementation in every block. :func:`record_attention_kernels` runs
a forward once and names, for every attention module, the kernel its calls reached (from the aten operators seen
by a dispatch mode inside the module) and whether the call returned attention weights.

Kernels:
    ``sdpa:<backend>``  ``scaled_dot_product_attention`` dispatched to a fused backend (e.g. ``flash_cpu``,
                        ``flash``, ``efficient``, ``cudnn``);
    ``mha-fast-path``   ``nn.MultiheadAttention``'s native fast path;
    ``math``            explicit matmul + softmax (mmcv / ``nn.MultiheadAttention`` with ``need_weights=True``,
                        Swin's window attention, SDPA's own math fallback).
"""
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Callable, Dict, List, Tuple

import torch
from torch.utils._python_dispatch import TorchDispatchMode

_FUSED = {
    '_scaled_dot_product_flash_attention_for_cpu': 'sdpa:flash_cpu',
    '_scaled_dot_product_flash_attention': 'sdpa:flash',
    '_scaled_dot_product_efficient_attention': 'sdpa:efficient',
    '_scaled_dot_product_cudnn_attention': 'sdpa:cudnn',
    '_scaled_dot_product_fused_attention_overrideable': 'sdpa:fused',
    '_native_multi_head_attention': 'mha-fast-path',
}


@dataclass(frozen=True)
class AttentionCall:
    """One call of an attention module: the kernel it ran, whether it returned weights, its query tokens."""
    kernel: str
    weights: bool
    tokens: int

    def describe(self) -> str:
        return self.kernel + (' + weights' if self.weights else '')


def is_attention_module(module: torch.nn.Module) -> bool:
    """``nn.MultiheadAttention``, and modules named like attention (timm ``Attention``, Swin ``WindowMSA``, ...)."""
    name = type(module).__name__
    return isinstance(module, torch.nn.MultiheadAttention) or name.endswith(('Attention', 'MSA'))


def _innermost_attention_modules(model) -> Dict[str, torch.nn.Module]:
    """Attention modules that contain no other attention module (mmcv's wrapper -> its ``nn.MultiheadAttention``)."""
    found = {name: m for name, m in model.named_modules() if is_attention_module(m)}
    return {name: m for name, m in found.items()
            if not any(other != name and other.startswith(name + '.') for other in found)}


class _OpRecorder(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops = None          # a list while an attention module runs

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if self.ops is not None:
            self.ops.append(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


def _kernel_of(ops: List[str]) -> str:
    for op in ops:
        if op in _FUSED:
            return _FUSED[op]
    return 'math'


def _returns_weights(module, args, kwargs) -> bool:
    if isinstance(module, torch.nn.MultiheadAttention):
        return bool(kwargs.get('need_weights', args[4] if len(args) > 4 else True))
    return False


def record_attention_kernels(model: torch.nn.Module, run: Callable[[], object]) -> Dict[str, List[AttentionCall]]:
    """Run ``run()`` once and return, per attention module (by its name in ``model``), the calls it made.

    ``nn.MultiheadAttention`` calls record ``need_weights``; other modules never count as returning weights. A host
    may run an attention module's computation with the module's own sub-modules instead of calling it (Swin's
    reduced windows: ``hosts.windows.window_attention``): such a call is recorded too, from the first use of one of
    its sub-modules to the next attention call or the end of the run, with ``kernel`` from the operators seen
    there (no fused kernel seen = ``math``).
    """
    modules = _innermost_attention_modules(model)
    calls, handles, recorder = defaultdict(list), [], _OpRecorder()
    open_call = {}       # name, whether it returns weights, query tokens, implicit (sub-modules only)

    def close():
        if open_call:
            calls[open_call['name']].append(AttentionCall(_kernel_of(recorder.ops or []), open_call['weights'],
                                                          open_call['tokens']))
            open_call.clear()
        recorder.ops = None

    def start(name, weights, tokens, implicit):
        close()
        open_call.update(name=name, weights=weights, tokens=tokens, implicit=implicit)
        recorder.ops = []

    def before(name):
        def hook(module, args, kwargs):
            query = args[0] if args else next(iter(kwargs.values()))
            tokens = query.shape[1 if getattr(module, 'batch_first', True) else 0] if query.dim() == 3 else -1
            start(name, _returns_weights(module, args, kwargs), tokens, False)
        return hook

    def after(module, args, kwargs, output):
        close()

    def child_before(name):
        def hook(module, args):
            if not open_call or (open_call['implicit'] and open_call['name'] != name):
                x = args[0] if args and torch.is_tensor(args[0]) else None
                start(name, False, x.shape[-2] if x is not None and x.dim() >= 2 else -1, True)
        return hook

    for name, module in modules.items():
        handles.append(module.register_forward_pre_hook(before(name), with_kwargs=True))
        handles.append(module.register_forward_hook(after, with_kwargs=True))
        for child in module.children():
            handles.append(child.register_forward_pre_hook(child_before(name)))
    try:
        with torch.no_grad(), recorder:
            run()
            close()
    finally:
        for h in handles:
            h.remove()
    return dict(calls)


def summarize_kernels(calls: Dict[str, List[AttentionCall]]) -> str:
    """One cell: every distinct kernel with its call count, e.g. ``math + weights x24``."""
    counts = Counter(c.describe() for module_calls in calls.values() for c in module_calls)
    return ', '.join(f'{k} x{n}' for k, n in sorted(counts.items())) or 'no attention'


def kernel_parity(baseline: Dict[str, List[AttentionCall]],
                  reduced: Dict[str, List[AttentionCall]]) -> Tuple[List[str], List[str]]:
    """Compare the attention kernels of a baseline and its reduced model, module by module.

    Returns (mismatches, weight payers): a mismatch is a module whose kernels differ (one line each); a weight payer
    is a module of the reduced model that returns attention weights where the baseline's does not (it pays for them
    alone, e.g. the cls-attention importance of EViT-style reducers).
    """
    mismatches, payers = [], []
    for name in sorted(set(baseline) | set(reduced)):
        base_k = {c.kernel for c in baseline.get(name, [])}
        red_k = {c.kernel for c in reduced.get(name, [])}
        if base_k != red_k:
            mismatches.append(f'{name}: baseline {sorted(base_k) or "not called"}, '
                              f'reduced {sorted(red_k) or "not called"}')
        base_w = any(c.weights for c in baseline.get(name, []))
        if any(c.weights for c in reduced.get(name, [])) and not base_w:
            payers.append(f'{name}: returns attention weights (the baseline does not)')
    return mismatches, payers

