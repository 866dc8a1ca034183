"""rebuy: retention decisions from a shop's own data, and the uplift they cause.

The core package holds what every stage shares (data contract, config, import, simulator) and
imports no stage; the command line (`cli/`) is the one package that sees them all.
"""

__version__ = "0.1.0"
