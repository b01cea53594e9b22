"""Host adapters: thin wrappers that run an upstream model's layers around a reducer."""
from .registry import HOSTS, host_for_module, host_for_type
from .segmentor import TokenReductionEncoderDecoder, TokenReductionHook, attach_head_restore, insert_token_reduction
from .swin import REDUCED_SWIN, WindowReductionMixin
from .vit import ReducedVisionTransformer, configure_reduction, validate_reduction
from .compensated_vit import CompensatedVisionTransformer  # noqa: E402  (after vit: it subclasses it)

__all__ = ['ReducedVisionTransformer', 'TokenReductionEncoderDecoder', 'TokenReductionHook',
           'insert_token_reduction', 'attach_head_restore', 'configure_reduction', 'validate_reduction',
           'REDUCED_SWIN', 'WindowReductionMixin', 'HOSTS', 'host_for_module', 'host_for_type',
           'CompensatedVisionTransformer']
