"""The placement validator every host shares: settings in, a frozen :class:`~.registry.ReductionPlan` out, or one
ValueError naming the parameter and its valid range. The reduced classes, ``insert_token_reduction``, the hook and
the tools' early checks all go through it, so a setting is accepted or refused the same way everywhere.

* :func:`check_capabilities`: a reducer's declared needs against what a host offers, with errors that say which
  host and why.
* :func:`check_sites`, :func:`check_restore_site`: ``reduce_after_layer`` and ``restore_site``.
* :func:`plan_vit`: the whole placement of a one-stage (plain ViT-like) host; Swin's multi-stage plan
  (:func:`mmtokred.hosts.swin.plan_spans`) and timm's (:func:`mmtokred.hosts.timm_vit.plan_timm`) use the checks.
"""
from typing import List, Optional, Sequence, Union

from ..reducers import build_reducer
from .registry import ReductionPlan

VIT_HOST = 'mmseg VisionTransformer (Segmenter, DPT)'


def check_capabilities(reducer, host: str, provides_importance: bool, needs_grid: bool = False,
                       supports_sub_block: bool = True, why_no_importance: str = '',
                       supports_per_block: bool = False):
    """Refuse a reducer whose declared needs this host cannot meet (``host`` names it in the message)."""
    name = type(reducer).__name__
    if reducer.needs_importance and not provides_importance:
        raise ValueError(f'{name} ranks tokens by an importance the host supplies (cls attention); {host} has none'
                         f'{why_no_importance}: use a reducer that ranks by the tokens themselves')
    if needs_grid and not reducer.returns_grid:
        raise ValueError(f'{name} returns a token set, but {host} needs a dense grid (every window reduced to the '
                         'same k x k): use TokenAdapter, Expediting or Pooling')
    if reducer.per_sub_block and not supports_sub_block:
        raise ValueError(f"{name} in sub-block mode is not supported on {host}: use mode='span' or a grid reducer")
    if reducer.per_block and not supports_per_block:
        raise ValueError(f'{name} merges inside every block, which only a host that drives it does (the timm '
                         f"classification host); {host} is not one: use mode='span' or 'sub_block'")


RESTORE_SITES = ('backbone', 'head')


def check_restore_site(restore_site, sites=RESTORE_SITES, why: str = ''):
    if restore_site not in sites:
        raise ValueError(f'restore_site must be {"one of " + str(list(sites)) if len(sites) > 1 else repr(sites[0])}'
                         f'{why}, got {restore_site!r}')


def check_sites(value, high: int, model: str, note: str, unit: str = 'layers', allow_list: bool = True) -> List[int]:
    """``reduce_after_layer`` (an int, or with ``allow_list`` an increasing list) in [-1, high] -> list of sites.
    ``model`` and ``note`` complete the message ('for this {model} ({note})')."""
    if value is None:
        raise ValueError('reduce_after_layer is required when a reducer is given')
    sites = list(value) if allow_list and isinstance(value, (list, tuple)) else [value]  # a float / str: reported
    for s in sites:
        if not isinstance(s, int) or isinstance(s, bool) or not -1 <= s <= high:
            alternative = ' (or a list of integers)' if allow_list else ''
            raise ValueError(f'reduce_after_layer must be an integer{alternative} in [-1, {high}] for this {model} '
                             f'({note}), got {value!r}')
    if sorted(set(sites)) != sites:
        raise ValueError(f'reduce_after_layer must list distinct {unit} in increasing order, got {value!r}')
    return sites


def plan_vit(depth: int, with_cls_token: bool, reducer, reduce_after_layer: Union[int, Sequence[int], None] = None,
             restore_after_layer: Optional[int] = None, restore_site: str = 'backbone',
             host: str = VIT_HOST) -> ReductionPlan:
    """The placement on a ``depth``-layer ViT (mmseg's; reused by other plain-ViT hosts, ``host`` naming them).
    Raises ValueError / TypeError / KeyError naming the parameter.

    Reduce after layer ``reduce_after_layer`` and restore after layer ``restore_after_layer`` (0-based layer
    indices, the convention of ``out_indices``: the span that runs on fewer tokens is layers reduce_after_layer+1
    .. restore_after_layer; default: the last layer). Paper conventions map as: Expediting's "cluster after layer
    alpha" (alpha layers at full resolution) -> ``reduce_after_layer = alpha - 1``; Token Adapter's "inject before
    block L_b" -> ``L_b - 1``. ``reduce_after_layer = -1`` reduces the patch embeddings: every layer then runs on
    the reduced tokens. A list reduces again at every listed layer on what is left (EViT's pruning at layers 7,
    13, 19; Token Adapter's layer-by-layer variant); the restores are undone in reverse order. ``restore_site``:
    'backbone' (restore the features) or 'head' (the head runs on the reduced tokens and its output is restored;
    ``restore_after_layer`` is then the last layer). Reducers that rank by a host importance run inside the listed
    layer (``with_cls_token`` needed); sub-block reducers take one site.
    """
    settings = dict(reducer=reducer, reduce_after_layer=reduce_after_layer, restore_after_layer=restore_after_layer,
                    restore_site=restore_site)
    reducer = build_reducer(reducer)
    check_restore_site(restore_site)
    if reducer is None:
        return ReductionPlan(host, depth, restore_site=restore_site, settings=settings)
    sites = check_sites(reduce_after_layer, depth - 1, f'{depth}-layer backbone', '-1: before the first layer')
    if restore_after_layer is None:
        restore_after_layer = depth - 1
    if not isinstance(restore_after_layer, int) or not 0 <= restore_after_layer < depth:
        raise ValueError(f'restore_after_layer must be an integer in [0, {depth - 1}] for this {depth}-layer '
                         f'backbone, got {restore_after_layer!r}')
    check_capabilities(reducer, 'this ViT', provides_importance=with_cls_token,
                       why_no_importance=' (with_cls_token=False)')
    name, in_layer = type(reducer).__name__, reducer.needs_importance   # in_layer: between attention and MLP
    if reducer.per_sub_block and len(sites) > 1:
        raise ValueError(f'{name} in sub-block mode takes one reduce_after_layer (the span start), got '
                         f'{reduce_after_layer!r}')
    if restore_site == 'head':
        if restore_after_layer != depth - 1:
            raise ValueError("restore_after_layer must be the last layer (or None) with restore_site='head', "
                             f'got {restore_after_layer}')
        if reducer.per_sub_block:
            raise ValueError(f"{name} in sub-block mode restores inside every layer: use restore_site='backbone'")
    elif restore_after_layer <= sites[-1] and not (in_layer and restore_after_layer == sites[-1]):
        raise ValueError(f'restore_after_layer ({restore_after_layer}) must come after reduce_after_layer '
                         f'({reduce_after_layer}): the reduced span would be empty')
    if in_layer and sites[0] == -1:
        raise ValueError(f'{name} ranks tokens by the attention of the layer it runs in: reduce_after_layer=-1 '
                         '(before the first layer) has none')
    return ReductionPlan(host, depth, (reducer,), tuple(sites), (restore_after_layer,), restore_site,
                         settings=settings)
