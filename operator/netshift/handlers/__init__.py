"""kopf handlers, one module per kind. Importing this package registers them all."""
