"""Measurement: named phases of a forward pass, the MAC counter, timing and evaluation helpers (used by
tools/analysis_tools). Import the submodules directly (``from mmtokred.analysis import flops``)."""
