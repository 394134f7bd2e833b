"""Routes as Gateway API v1.6 objects: the translator behind `netshift export gateway-api`."""
from .translate import Export, Note, Options, admitted, export

__all__ = ["Export", "Note", "Options", "admitted", "export"]
