"""One way to build a `kubernetes` ApiClient: in-cluster service account, else $KUBECONFIG."""
from __future__ import annotations

from kubernetes import client, config

from netshift import __version__


def new_api_client(component: str, pool_size: int | None = None) -> client.ApiClient:
    """An ApiClient whose user agent names the component (`netshift-<component>/<version>`)."""
    cfg = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=cfg)
    except config.ConfigException:
        config.load_kube_config(client_configuration=cfg)
    if pool_size:
        cfg.connection_pool_maxsize = pool_size
    api = client.ApiClient(cfg)
    api.user_agent = f"netshift-{component}/{__version__}"
    return api
