"""Which upstream backbones take a reduction, and how: one :class:`HostAdapter` per host, registered by the host's
module and looked up by module class (``insert_token_reduction``, the hook) or by config type (the tools' early
checks). Tools and the insertion function never test a host's class themselves."""
import inspect
from typing import Callable, Dict, List, Optional, Tuple


class HostAdapter:
    """How a reduction is validated and inserted on one kind of upstream backbone.

    Args:
        name: what the host is, for messages (e.g. 'mmseg VisionTransformer (Segmenter, DPT)').
        upstream: the upstream backbone classes.
        reduced_types: config ``type`` names of the reduced classes.
        validate_cfg: ``(backbone_cfg: dict, reducer, **settings) -> None``: checks the settings against a backbone
            config (upstream defaults for what it omits) without building anything; raises ValueError naming the
            parameter.
        insert: ``(backbone: nn.Module, reducer, **settings) -> None``: validates against the built backbone, then
            converts it in place (a failure leaves it untouched).
    """

    def __init__(self, name: str, upstream: Tuple[type, ...], reduced_types: Tuple[str, ...],
                 validate_cfg: Callable, insert: Callable):
        self.name, self.upstream, self.reduced_types = name, tuple(upstream), tuple(reduced_types)
        self.validate_cfg, self.insert = validate_cfg, insert

    def config_types(self) -> Tuple[str, ...]:
        return tuple(c.__name__ for c in self.upstream) + self.reduced_types


HOSTS: List[HostAdapter] = []      # filled once, at import, by the host modules


def register_host(adapter: HostAdapter) -> HostAdapter:
    HOSTS.append(adapter)
    return adapter


def supported_hosts() -> str:
    return '; '.join(h.name for h in HOSTS)


def host_for_module(backbone) -> HostAdapter:
    for host in HOSTS:
        if isinstance(backbone, host.upstream):
            return host
    raise TypeError(f'token reduction is not supported on a {type(backbone).__name__} backbone; supported hosts: '
                    f'{supported_hosts()}')


def host_for_type(type_name) -> Optional[HostAdapter]:
    """The adapter of a config ``type`` (upstream or reduced class name, with or without a scope prefix)."""
    name = str(getattr(type_name, '__name__', type_name)).split('.')[-1]
    for host in HOSTS:
        if name in host.config_types():
            return host
    return None


def upstream_defaults(cls, *names) -> Dict[str, object]:
    """Default values of ``cls.__init__`` arguments (what a config leaves out)."""
    params = inspect.signature(cls.__init__).parameters
    return {n: params[n].default for n in names}
