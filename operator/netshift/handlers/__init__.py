"""kopf handlers, one module per kind. Importing this package registers them all."""
from netshift.handlers import egressrouter  # noqa: F401
from netshift.handlers import route  # noqa: E402,F401  Route admission
