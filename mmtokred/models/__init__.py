"""Models ported into OpenMMLab packages, registered in their registries on import.

MaskDINO registers in mmdet's registry; mmdet is an optional requirement (requirements/optional.txt), so mmseg-only
installations import mmtokred without it (MaskDINO configs then fail to build with mmdet's own missing-package error).
"""
import importlib.util

if importlib.util.find_spec('mmdet') is not None:
    from . import maskdino  # noqa: F401
