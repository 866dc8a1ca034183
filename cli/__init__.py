"""The `rebuy` command line: the one package that sees every stage.

It sits above the stages it drives (pipelines → serving → training → features → rebuy core) and
only parses arguments, loads the config and calls stage functions; no stage imports it.
"""
