"""``spec.tls.externalCertificate``: TLS Secrets as certificates of the routes that name them (pure).

The router watches Secrets of type ``kubernetes.io/tls`` (field selector ``type=``) and keeps their
``tls.crt`` / ``tls.key`` as text. ``resolve`` gives each edge/reencrypt route that names a Secret of
its namespace that certificate and key, when they are usable: PEM, a certificate and a private key
that belong together. Otherwise the route keeps no certificate (HAProxy serves the default one for
its host) and a problem is reported for the router to log: one bad Secret never makes the whole
configuration invalid.
"""
from __future__ import annotations

import base64
import binascii
import dataclasses
import functools
from collections.abc import Iterable, Mapping
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from .routes import ServedRoute

TLS_TYPE = "kubernetes.io/tls"


@dataclasses.dataclass(frozen=True)
class TLSSecret:
    cert: str = ""
    key: str = ""
    problem: str = ""  # why it cannot be used ("" when it can, as far as decoding goes)


def tls_secret(obj: Mapping[str, Any]) -> TLSSecret:
    """The certificate and key of a Secret object (plain dict from the API)."""
    if obj.get("type") != TLS_TYPE:
        return TLSSecret(problem=f"type is {obj.get('type')!r}, not {TLS_TYPE}")
    data = obj.get("data") or {}
    out = {}
    for field in ("tls.crt", "tls.key"):
        raw = data.get(field)
        if not raw:
            return TLSSecret(problem=f"no {field}")
        try:
            out[field] = base64.b64decode(raw, validate=True).decode("ascii")
        except (binascii.Error, ValueError, UnicodeDecodeError):
            return TLSSecret(problem=f"{field} is not base64 of PEM text")
    return TLSSecret(out["tls.crt"], out["tls.key"])


@functools.lru_cache(maxsize=1024)
def pair_problem(cert_pem: str, key_pem: str) -> str:
    """Why a PEM certificate (chain) and key cannot be served together; "" when they can."""
    try:
        chain = x509.load_pem_x509_certificates(cert_pem.encode())
    except ValueError:
        return "tls.crt holds no PEM certificate"
    try:
        key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    except (ValueError, TypeError):
        return "tls.key holds no unencrypted PEM private key"
    except Exception:
        return "tls.key holds an unsupported private key"
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if chain[0].public_key().public_bytes(*fmt) != key.public_key().public_bytes(*fmt):
        return "tls.key does not match the first certificate of tls.crt"
    return ""


def resolve(routes: Iterable[ServedRoute], secrets: Mapping[tuple[str, str], TLSSecret]
            ) -> tuple[list[ServedRoute], list[str]]:
    """Routes with their external certificates filled in, and the problems (one line each)."""
    out, problems = [], []
    for r in routes:
        if not r.external_certificate:
            out.append(r)
            continue
        secret = secrets.get((r.namespace, r.external_certificate))
        problem = ("Secret not found (or not of type kubernetes.io/tls)" if secret is None
                   else secret.problem or pair_problem(secret.cert, secret.key))
        if problem or secret is None:
            problems.append(f"route {r.namespace}/{r.name}: externalCertificate {r.external_certificate}: "
                            f"{problem}; serving the default certificate")
            out.append(dataclasses.replace(r, certificate="", key=""))
        else:
            out.append(dataclasses.replace(r, certificate=secret.cert, key=secret.key))
    return out, problems
