"""The certificate the router makes itself: the self-signed default certificate when none is given.
ECDSA P-256, SHA-256. The tests' CA and leaf factories (tests/support/certs.py) build on these pieces.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclasses.dataclass(frozen=True)
class Pem:
    cert: str
    key: str

    @property
    def bundle(self) -> str:
        """Certificate then key: the file HAProxy's ``crt`` wants."""
        return self.cert + self.key


def common_name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn[:64])])


def alt_names(names: list[str]) -> x509.SubjectAlternativeName:
    out: list[x509.GeneralName] = []
    for n in names:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            out.append(x509.DNSName(n))
    return x509.SubjectAlternativeName(out)


def to_pem(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> Pem:
    return Pem(cert.public_bytes(serialization.Encoding.PEM).decode(),
               key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption()).decode())


def builder(subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey,
            days: int) -> x509.CertificateBuilder:
    """Valid from five minutes ago (clock skew) for ``days``."""
    now = dt.datetime.now(dt.UTC)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days)))


def self_signed(names: list[str], days: int = 3650) -> Pem:
    """The router's fallback default certificate (clients will not trust it, by design)."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (builder(common_name(names[0]), common_name(names[0]), key.public_key(), days)
            .add_extension(alt_names(names), critical=False)
            .sign(key, hashes.SHA256()))
    return to_pem(cert, key)
