"""netshift: OpenShift's EgressRouter and Route APIs on any Kubernetes cluster."""

__version__ = "0.1.0"
