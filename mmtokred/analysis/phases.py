"""The phase markers live in the leaf module :mod:`mmtokred.phases` (hosts mark phases, analysis reads them); this
module re-exports them for the analysis tools."""
from ..phases import (  # noqa: F401
                      BACKBONE_AFTER,
                      BACKBONE_FULL,
                      BACKBONE_REDUCED,
                      HEAD,
                      ORDER,
                      REDUCE,
                      RESTORE,
                      current_phase,
                      listen,
                      phase,
                      phase_depth,
                      pop_phase,
                      push_phase,
)
