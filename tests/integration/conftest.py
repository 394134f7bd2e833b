"""Fixtures of the integration tier (shared fixtures of every tier: tests/conftest.py)."""
from __future__ import annotations

import pytest

from tests.support.egressrouters import NAD_CRD


@pytest.fixture(scope="module")
def nad_crd(cluster):
    """The NetworkAttachmentDefinition CRD (Multus's), which EgressRouter children need."""
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(NAD_CRD))
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(NAD_CRD))
    return NAD_CRD
