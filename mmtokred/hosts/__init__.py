"""Host adapters: thin wrappers that run an upstream model's layers around a reducer."""
from .segmentor import TokenReductionEncoderDecoder, TokenReductionHook, attach_head_restore, insert_token_reduction
from .vit import ReducedVisionTransformer, configure_reduction
from .compensated_vit import CompensatedVisionTransformer  # noqa: E402  (after vit: it subclasses it)

__all__ = ['ReducedVisionTransformer', 'TokenReductionEncoderDecoder', 'TokenReductionHook',
           'insert_token_reduction', 'attach_head_restore', 'configure_reduction', 'CompensatedVisionTransformer']
