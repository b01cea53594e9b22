"""MaskDINO (inference) for mmdet 3.x: ``MaskDINO`` detector, ``MaskDINOHead``, ``MaskDINOPixelDecoder`` and the
official-checkpoint converter (``convert_maskdino``)."""
from .convert import convert_maskdino  # noqa: F401
from .detector import MaskDINO  # noqa: F401
from .head import MaskDINOHead, MaskDINOTransformerDecoder  # noqa: F401
from .pixel_decoder import MaskDINOPixelDecoder  # noqa: F401
