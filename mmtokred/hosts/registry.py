"""Which upstream models take a reduction, and how: one :class:`Host` per upstream family in one registry
(:data:`HOSTS`), looked up by module class (``insert_token_reduction``, the hook, the compensators) or by config
type (the tools' early checks). Nothing outside a host tests a model's class.

A host validates settings into a frozen :class:`ReductionPlan` (the one placement validator: the reduced classes,
``insert_token_reduction``, the hook and the tools all go through it) and keeps the per-model state in one
:class:`ReductionState` attribute, ``token_reduction``, on the modules it converts.
"""
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

from torch import nn

from ..utils.registry import Registry

STATE_ATTR = 'token_reduction'      # the only attribute a host adds to an upstream module
SETTINGS = ('reducer', 'reduce_after_layer', 'restore_after_layer', 'restore_site')


@dataclass(frozen=True)
class ReductionPlan:
    """A validated placement of reductions on one model (immutable: a new setting is a new plan).

    Attributes:
        host: the host's name.
        depth: number of blocks of the model (all stages).
        reducers: the built reducers, one per span (empty: no reduction; a disabled reducer is kept, the host
            then runs upstream).
        sites: 0-based index of the last full-resolution block of every reduction (-1: before the first block).
        restore_after_layer: the last reduced block (one per span; None where nothing is restored).
        restore_site: 'backbone' or 'head'.
        options: further host options (e.g. ``reference_shift_mask`` on Swin), as (name, value) pairs.
        spans: what the host derived from the settings (e.g. the Swin windows per span).
        settings: the arguments as given to :func:`~mmtokred.hosts.insert_token_reduction`.
    """
    host: str
    depth: int
    reducers: Tuple[nn.Module, ...] = ()
    sites: Tuple[int, ...] = ()
    restore_after_layer: Tuple[Optional[int], ...] = ()
    restore_site: str = 'backbone'
    options: Tuple[Tuple[str, Any], ...] = ()
    spans: Tuple[Any, ...] = ()
    settings: Dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def reducer(self) -> Optional[nn.Module]:
        """The reducer of a one-span plan (None without reduction)."""
        return self.reducers[0] if self.reducers else None

    @property
    def active(self) -> bool:
        """True if the model does not run exactly upstream."""
        return any(r.enabled for r in self.reducers)

    def option(self, name: str, default=None):
        return dict(self.options).get(name, default)


class ReductionState:
    """The per-model state a host keeps (one attribute, :data:`STATE_ATTR`, on the converted module and, with
    ``restore_site='head'``, on the head that restores): the plan, caches derived from the weights, the restore
    pending for the head during a forward, a compensator branch. Holds no parameters or buffers."""

    def __init__(self, plan: ReductionPlan):
        self.plan = plan
        self.cache: Dict[Any, Any] = {}
        self.pending_restore: Optional[Callable] = None
        self.head_restores = False
        self.compensator_branch = None

    def __repr__(self):
        return f'ReductionState({self.plan!r})'


def state_of(module) -> Optional[ReductionState]:
    return module.__dict__.get(STATE_ATTR)


def set_plan(module, plan: ReductionPlan) -> ReductionState:
    """Give ``module`` the plan (its state holder is created on first use and kept: a head may share it)."""
    state = state_of(module)
    if state is None:
        state = ReductionState(plan)
        module.__dict__[STATE_ATTR] = state     # plain attribute: no submodule, no state-dict key
    else:
        state.plan, state.cache, state.pending_restore = plan, {}, None
    return state


@dataclass
class QVSlot:
    """The packed (3C, C) projection weight of one block: ``getattr(module, name)``; q = rows [0, C), v = rows
    [2C, 3C)."""
    module: nn.Module
    name: str
    dims: int


def packed_qv_slot(module, name: str, dims: int, where: str) -> QVSlot:
    """The slot of ``getattr(module, name)``, checked to be a packed (3C, C) q/k/v weight."""
    weight = getattr(module, name, None)
    if weight is None or tuple(weight.shape) != (3 * dims, dims):
        raise TypeError(f'{where}: expected a packed (3C, C) = ({3 * dims}, {dims}) q/k/v projection weight '
                        f'{name!r}, got {None if weight is None else tuple(weight.shape)}')
    return QVSlot(module, name, dims)


def _first_item_map(backbone, maps, image_hw):
    conv = backbone.patch_embed
    conv = getattr(conv, 'projection', getattr(conv, 'proj', conv))
    return maps[0], conv.kernel_size[0]


class Host:
    """How one upstream family takes a reduction (and a compensator).

    Args:
        name: what the host is, for messages (e.g. 'mmseg VisionTransformer (Segmenter, DPT)').
        upstream: the upstream backbone classes, or a function returning them (for optional packages).
        reduced_types: config ``type`` names of the reduced classes.
        plan_cfg: ``(backbone_cfg: dict, **settings) -> ReductionPlan``: validates settings against a config
            (upstream defaults for what it omits) without building anything; raises ValueError naming the
            parameter.
        plan_module: ``(backbone: nn.Module, **settings) -> ReductionPlan``: the same on a built backbone.
        apply: ``(backbone, plan) -> None``: converts the backbone in place; only called with a valid plan.
            Default: swap its class to ``reduced_class`` (unless it is one already) and set the plan.
        options: names of the host's options beyond :data:`SETTINGS`.
        qv_slots: ``model -> [QVSlot]`` per block (where a compensator goes), or None.
        distill_output: ``(model, x) -> (tensor, 'logits' | 'features')``: what self-distillation compares.
        family: the family name a compensator file records (default: ``name``).
        reduced_class: the reduced class the default ``apply`` swaps an upstream backbone to.
        token_map: ``(backbone, maps (B', h, w), image (H, W)) -> ((h0, w0) map of the first image, pixels per
            token)``: lays out per-item maps of the first reduction (one per image, or per window) on the first
            image's token grid, for pictures. Default: ``maps[0]`` with the patch size of ``patch_embed``.
    """

    def __init__(self, name: str, upstream, reduced_types: Tuple[str, ...], plan_cfg: Callable,
                 plan_module: Callable, apply: Optional[Callable] = None, options: Tuple[str, ...] = (),
                 qv_slots: Optional[Callable] = None, distill_output: Optional[Callable] = None,
                 family: Optional[str] = None, reduced_class: Optional[type] = None,
                 token_map: Optional[Callable] = None):
        self.name, self._upstream, self.reduced_types = name, upstream, tuple(reduced_types)
        self.family = family or name
        self.plan_cfg, self.plan_module, self.reduced_class = plan_cfg, plan_module, reduced_class
        self.apply = apply or self._swap_class
        self.token_map = token_map or _first_item_map
        self.options = tuple(options)
        self._qv_slots, self._distill_output = qv_slots, distill_output

    @property
    def upstream(self) -> Tuple[type, ...]:
        return tuple(self._upstream() if callable(self._upstream) and not isinstance(self._upstream, type)
                     else self._upstream)

    def config_types(self) -> Tuple[str, ...]:
        return tuple(c.__name__ for c in self.upstream) + self.reduced_types

    def valid_arguments(self) -> Tuple[str, ...]:
        return SETTINGS + self.options

    def _swap_class(self, backbone, plan: ReductionPlan):
        if not isinstance(backbone, self.reduced_class):
            backbone.__class__ = self.reduced_class
        set_plan(backbone, plan)

    @property
    def takes_compensator(self) -> bool:
        return self._qv_slots is not None

    def qv_slots(self, model) -> List[QVSlot]:
        if self._qv_slots is None:
            raise TypeError(f'no compensator for {self.name}: it does not declare where q / v live')
        return self._qv_slots(model)

    def distill_output(self, model, x):
        if self._distill_output is None:
            raise TypeError(f'no self-distillation target declared for {self.name}')
        return self._distill_output(model, x)

    def __repr__(self):
        return f'Host({self.name!r})'


HOSTS = Registry('host')


def register_host(host: Host) -> Host:
    return HOSTS.register(host, host.name)


def supported_hosts() -> str:
    return '; '.join(HOSTS)


def host_for_module(backbone) -> Host:
    for host in HOSTS.values():
        try:
            upstream = host.upstream
        except ImportError:      # an optional package (timm) that is not installed
            continue
        if isinstance(backbone, upstream):
            return host
    raise TypeError(f'token reduction is not supported on a {type(backbone).__name__} backbone; supported hosts: '
                    f'{supported_hosts()}')


def host_for_type(type_name) -> Optional[Host]:
    """The host of a config ``type`` (upstream or reduced class name, with or without a scope prefix)."""
    name = str(getattr(type_name, '__name__', type_name)).split('.')[-1]
    for host in HOSTS.values():
        try:
            if name in host.config_types():
                return host
        except ImportError:
            continue
    return None


def upstream_defaults(cls, *names) -> Dict[str, object]:
    """Default values of ``cls.__init__`` arguments (what a config leaves out)."""
    params = inspect.signature(cls.__init__).parameters
    return {n: params[n].default for n in names}
