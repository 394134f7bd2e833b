"""netshift: OpenShift's EgressRouter and Route APIs on any Kubernetes cluster."""

__version__ = "0.1.0"
# The tag hack/build-image.sh builds and imports; the chart sets the image it deploys itself.
IMAGE = f"localhost/netshift:{__version__}"
