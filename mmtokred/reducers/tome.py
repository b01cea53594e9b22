"""ToMe (bipartite soft matching) with unmerge, for dense prediction.

``bipartite_soft_matching`` is the algorithm: it looks at a metric once and returns ``merge`` / ``unmerge``
closures (as ToMe and ToMe for Stable Diffusion do). Tokens are split alternately into A (even positions of the
row-major sequence) and B (odd); each A token's best B edge by cosine similarity is scored, the r best edges are
merged (size-weighted average), and ``unmerge`` copies every destination back to its sources, restoring the
original length and order.

The reducer offers the variants used in the papers:
  * ``mode='span'``: merge once after layer a, run the span on N - r tokens, unmerge at the restore site;
  * ``mode='sub_block'``: the Expediting / Token Adapter baseline: merge and unmerge around the attention and
    around the MLP of every layer of the span, the metric being the LayerNorm'd input of that sub-block and r a
    fraction of the current tokens. The host drives this mode (it needs the sub-blocks); the reducer only matches.
    Proportional attention is not used (the dense-prediction baselines do not use it).
  * ``mode='layer'``: ToMe as its paper uses it for classification (and ToCom after it): in every block, between
    attention and MLP, merge ``r`` tokens (an int, or one per layer), the metric being the attention keys averaged
    over heads, sizes tracked across layers, proportional attention (log size added to the attention logits), the
    cls token protected (never merged). No unmerge: a classifier reads the cls token. The host drives this mode
    (mmtokred.hosts.timm_vit); the reducer gives the per-layer r and the matching
    (``bipartite_soft_matching(..., class_token=True)``).
"""
import math
from typing import Callable, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import (
    Reduction,
    TokenReducer,
    check_choice,
    check_int,
    check_ratio,
    compute_dtype,
    identity_reduction,
    register_reducer,
)


def bipartite_soft_matching(metric: Tensor, r: int, class_token: bool = False) -> Tuple[Callable, Callable]:
    """metric: (B, N, C). Returns merge(x (B, N, D), size=None) -> (x (B, N - r, D), size) and
    unmerge(y (B, N - r, D)) -> (B, N, D). r is clipped to the number of A tokens (to half of the mergeable ones).

    ``class_token``: token 0 (in A) is never merged and stays first in the merged sequence (ToMe's cls
    protection: its edges score -inf and the kept A tokens are put back in their original order)."""
    B, N, _ = metric.shape
    r = min(r, (N - int(class_token)) // 2)
    if r <= 0:
        return (lambda x, size=None: (x, size)), (lambda y: y)
    m = F.normalize(metric.to(compute_dtype(metric)), dim=-1)
    a, b = m[:, ::2], m[:, 1::2]
    n_a = a.shape[1]
    scores = a @ b.transpose(1, 2)
    if class_token:
        scores[:, 0] = -math.inf
    node_max, node_idx = scores.max(-1)                                   # (B, n_a)
    edge_idx = node_max.argsort(-1, descending=True)
    unm_idx = edge_idx[:, r:]                                             # (B, n_a - r) A tokens kept
    if class_token:
        unm_idx = unm_idx.sort(-1).values                                 # cls (A index 0) first
    src_idx = edge_idx[:, :r]                                             # (B, r) A tokens merged
    dst_idx = node_idx.gather(1, src_idx)                                 # (B, r) their B destinations
    n_unm, n_b = n_a - r, N - n_a
    # merge and unmerge are row copies and row sums over the (B*N, D) input and the (B*(N - r), D) merged tokens:
    # index_select / index_add_ with row indices computed once here (per-sample offsets folded in), the same
    # values in the same summation order as gathers and scatter_adds of the A / B halves (tested equal)
    dev = metric.device
    offset_in = torch.arange(B, device=dev)[:, None] * N
    offset_out = torch.arange(B, device=dev)[:, None] * (N - r)
    b_pos = torch.arange(n_b, device=dev).expand(B, n_b)
    keep_rows = (torch.cat([2 * unm_idx, 2 * b_pos + 1], 1) + offset_in).flatten()     # merged order: unm, then B
    src_rows = (2 * src_idx + offset_in).flatten()                                     # merged A tokens
    dst_rows = (n_unm + dst_idx + offset_out).flatten()                                # their destinations
    unmerge_rows = torch.empty(B, N, dtype=torch.long, device=dev)                     # merged row of every token
    unmerge_rows[:, 1::2] = n_unm + b_pos
    unmerge_rows.scatter_(1, 2 * unm_idx, torch.arange(n_unm, device=dev).expand(B, n_unm))
    unmerge_rows.scatter_(1, 2 * src_idx, n_unm + dst_idx)
    unmerge_rows = (unmerge_rows + offset_out).flatten()

    def merged_sum(flat: Tensor) -> Tensor:
        """(B*N, D) -> (B*(N - r), D): kept A tokens, then every B token plus the A tokens merged into it."""
        return flat.index_select(0, keep_rows).index_add_(0, dst_rows, flat.index_select(0, src_rows))

    def merge(x: Tensor, size: Tensor = None):
        D = x.shape[-1]
        if size is None:    # unweighted: sizes from a (B*N, 1) column of ones, no multiplication of x by ones
            out_size = merged_sum(x.new_ones(B * N, 1, dtype=compute_dtype(x))).view(B, N - r, 1)
            summed = merged_sum(x.to(out_size.dtype).reshape(B * N, D))
        else:
            out_size = merged_sum(size.reshape(B * N, 1)).view(B, N - r, 1)
            summed = merged_sum((x.to(size.dtype) * size).reshape(B * N, D))
        return (summed.view(B, N - r, D) / out_size).to(x.dtype), out_size

    def unmerge(y: Tensor) -> Tensor:
        D = y.shape[-1]
        return y.reshape(B * (N - r), D).index_select(0, unmerge_rows).view(B, N, D)

    return merge, unmerge


@register_reducer
class ToMe(TokenReducer):
    """Token merging with unmerge.

    Args:
        ratio: share of the current tokens merged per matching, in [0, 0.5] (bipartite matching can remove at
            most half). 0 disables it. Not used by ``mode='layer'``.
        mode: 'span' (merge once, unmerge at the restore site), 'sub_block' (Expediting's ToMe baseline: around
            the attention and the MLP of every layer of the span), 'mlp' (ToCom's dense variant, its Tab. 11: merge
            before every MLP of the span, unmerge after it) or 'layer' (ToMe's classification form, driven by the
            timm host).
        rounds: 'span' mode only: number of successive matchings (each removes ``ratio`` of what is left), so a
            span can be reduced by more than half. Unmerging undoes them in reverse order.
        r: 'layer' mode only (required there): tokens merged in every block, an int >= 0 or a list with one int
            per block (ToMe's r; clipped per block to half of the mergeable tokens).
        prop_attn: 'layer' mode: add log(size) to the attention logits (ToMe's proportional attention).
    """

    returns_grid = False
    supports_valid = False

    def __init__(self, ratio: float = 0.5, mode: str = 'span', rounds: int = 1, r=None, prop_attn: bool = True):
        super().__init__()
        self.ratio = check_ratio('ratio', ratio, 0.0, 0.5, high_inclusive=True)
        self.mode = check_choice('mode', mode, ('span', 'sub_block', 'mlp', 'layer'))
        self.rounds = check_int('rounds', rounds, 1)
        self.prop_attn = check_choice('prop_attn', prop_attn, (True, False))
        if mode == 'layer':
            if r is None:
                raise ValueError("ToMe mode='layer' needs r (tokens merged per block: an int or a list of ints)")
            values = [r] if isinstance(r, int) and not isinstance(r, bool) else list(r)
            for v in values:
                check_int('r', v, 0)
            self.r = r if isinstance(r, int) and not isinstance(r, bool) else values
            self.enabled = any(v > 0 for v in values)
        else:
            if r is not None:
                raise ValueError(f"ToMe r (tokens per block) is for mode='layer'; mode={mode!r} takes ratio")
            self.r = None
            self.enabled = self.ratio > 0
        self.per_sub_block = self.mode in ('sub_block', 'mlp')
        self.sub_blocks = ('attention', 'mlp') if self.mode == 'sub_block' else ('mlp',)
        self.per_block = self.mode == 'layer'
        if self.per_sub_block and self.rounds != 1:
            raise ValueError(f"ToMe: rounds applies to mode='span' only, got rounds={rounds} with mode={mode!r}")

    def extra_repr(self):
        if self.mode == 'layer':
            return f'mode=layer, r={self.r}, prop_attn={self.prop_attn}'
        return f'ratio={self.ratio}, mode={self.mode}, rounds={self.rounds}'

    def layer_r(self, depth: int):
        """'layer' mode: the r of each of ``depth`` blocks (a list must have one entry per block)."""
        if isinstance(self.r, int):
            return [self.r] * depth
        if len(self.r) != depth:
            raise ValueError(f'ToMe r lists {len(self.r)} values; this host has {depth} blocks')
        return list(self.r)

    block_schedule = layer_r

    @property
    def size_bias(self) -> bool:
        return self.mode == 'layer' and self.prop_attn

    def block_merge(self, metric: Tensor, r: int, class_token: bool):
        """'layer' mode: the merge of one block (bipartite soft matching of r tokens on metric: (B, N, C))."""
        return bipartite_soft_matching(metric, r, class_token=class_token)[0]

    def num_merged(self, n: int) -> int:
        return math.floor(n * self.ratio)

    def match(self, metric: Tensor):
        """metric: (B, N, C) -> (merge, unmerge) for one matching of ``ratio`` of N."""
        return bipartite_soft_matching(metric, self.num_merged(metric.shape[1]))

    def reduce(self, x: Tensor, valid=None) -> Reduction:
        """x: (B, H, W, C): ``rounds`` matchings on the tokens themselves (in sub-block mode the host passes the
        LayerNorm'd sub-block input, one round)."""
        if not self.enabled:
            return identity_reduction(x)
        if self.mode == 'layer':
            raise ValueError("ToMe mode='layer' merges inside every block of a host that drives it "
                             "(mmtokred.hosts.timm_vit); use mode='span' or 'sub_block' on this host")
        B, H, W, C = x.shape
        tokens = x.reshape(B, H * W, C)
        size = None
        steps = []          # (merge, unmerge, sizes entering this round)
        for _ in range(self.rounds):
            merge, unmerge = self.match(tokens)
            steps.append((merge, unmerge, size))
            tokens, size = merge(tokens, size)

        def reduce(y: Tensor) -> Tensor:
            y = y.reshape(B, H * W, -1)
            for merge, _, size_in in steps:
                y, _ = merge(y, size_in)
            return y

        def restore(y: Tensor) -> Tensor:
            for _, unmerge, _ in reversed(steps):
                y = unmerge(y)
            return y.view(B, H, W, y.shape[-1])

        return Reduction(tokens=tokens, grid=None, restore=restore, reduce=reduce,
                         info=dict(grid=(H, W), size=size))
