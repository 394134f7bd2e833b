# One image for the three entry points of netshift:
#   netshift operator   the kopf operator (default command; runs as uid 65532)
#   netshift agent      the redirect agent of an egress router pod (its Deployment sets uid 0 + NET_ADMIN)
#   netshift router     the Route data plane (HAProxy)
#
# Build:  docker build -t localhost/netshift:0.1.0 .
# hack/build-image.sh builds this same file without a registry, with
# --build-arg BASE_IMAGE=<a local Debian bookworm + python3 image>.
# BASE_IMAGE must be Debian bookworm based with python3 >= 3.11 and the venv module; both stages use
# it, so the virtual environment's interpreter link resolves in the final stage.
ARG BASE_IMAGE=python:3.11-slim-bookworm

# ---- builder: the package and its dependencies in a virtual environment --------------------------
FROM ${BASE_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN python3 -m venv /opt/netshift
WORKDIR /src
# Dependencies first, from pyproject.toml alone: this layer is reused while only the sources change.
COPY pyproject.toml README.md ./
RUN python3 -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' \
        > /tmp/requirements.txt \
 && /opt/netshift/bin/pip install --prefer-binary -r /tmp/requirements.txt
COPY operator ./operator
# The package itself; bytecode is compiled here because the root filesystem is read-only at run time.
RUN /opt/netshift/bin/pip install --no-deps . \
 && /opt/netshift/bin/pip uninstall -y -q pip setuptools \
 && /opt/netshift/bin/python -m compileall -q /opt/netshift/lib \
 && /opt/netshift/bin/netshift version

# ---- final -----------------------------------------------------------------------------------------
FROM ${BASE_IMAGE}
# WITH_HAPROXY=0 leaves out HAProxy (only `netshift router` needs it).
ARG WITH_HAPROXY=1
RUN set -eux; \
    pkgs="nftables"; \
    if [ "$WITH_HAPROXY" = 1 ]; then pkgs="$pkgs haproxy"; fi; \
    apt-get update; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $pkgs; \
    apt-get clean; \
    rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log /usr/share/doc/* /usr/share/man/*; \
    groupadd --system --gid 65532 netshift; \
    useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin netshift; \
    nft --version
COPY --from=builder /opt/netshift /opt/netshift
ENV PATH=/opt/netshift/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
LABEL org.opencontainers.image.title="netshift" \
      org.opencontainers.image.description="OpenShift's EgressRouter and Route APIs on any Kubernetes cluster" \
      org.opencontainers.image.licenses="Apache-2.0"
USER 65532:65532
WORKDIR /
EXPOSE 9102 8081
ENTRYPOINT ["netshift"]
CMD ["operator"]
