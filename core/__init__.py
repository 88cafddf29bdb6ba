"""erpsync core: the canonical model and the engine that keeps many shops in step."""

__version__ = "0.1.0"
