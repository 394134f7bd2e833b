"""kopf handlers, one module per kind. Importing this package registers them all."""
from netshift.handlers import (
    egressrouter,  # noqa: F401 -- imported for kopf to register its handlers
    route,  # noqa: F401  Route admission
)
