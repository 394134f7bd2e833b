"""Route admission, as OpenShift's router does it, for one router name and one domain.

Pure modules (no I/O): ``hosts`` (host assignment), ``validation`` (host and spec checks),
``tls`` (extended validation of inline PEM), ``admission`` (who gets a host), ``status``
(the ``status.ingress`` entry and whether a patch is needed). ``netshift.operator.route`` wires them
to the API server.
"""
