"""rebuy: retention decisions from a shop's own data, and the uplift they cause.

The core package holds what every stage shares (data contract, config, import, simulator) and
imports no stage; `rebuy.cli` is the one module that sees them all.
"""

__version__ = "0.1.0"
