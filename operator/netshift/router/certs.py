"""Certificates the router makes itself: the self-signed default certificate (when none is given),
and small CA/leaf helpers the tests and the benchmark use. ECDSA P-256, SHA-256.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclasses.dataclass(frozen=True)
class Pem:
    cert: str
    key: str
    _cert_obj: x509.Certificate | None = dataclasses.field(default=None, repr=False, compare=False)
    _key_obj: ec.EllipticCurvePrivateKey | None = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def bundle(self) -> str:
        """Certificate then key: the file HAProxy's ``crt`` wants."""
        return self.cert + self.key


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn[:64])])


def _san(names: list[str]) -> x509.SubjectAlternativeName:
    out: list[x509.GeneralName] = []
    for n in names:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            out.append(x509.DNSName(n))
    return x509.SubjectAlternativeName(out)


def _pem(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> Pem:
    return Pem(cert.public_bytes(serialization.Encoding.PEM).decode(),
               key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption()).decode(),
               cert, key)


def _builder(subject: x509.Name, issuer: x509.Name, public_key, days: int) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days)))


def make_ca(cn: str = "netshift test CA", days: int = 30) -> Pem:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (_builder(_name(cn), _name(cn), key.public_key(), days)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    return _pem(cert, key)


def issue(ca: Pem, names: list[str], days: int = 30) -> Pem:
    """A server certificate for ``names`` signed by ``ca``."""
    assert ca._cert_obj is not None and ca._key_obj is not None
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (_builder(_name(names[0]), ca._cert_obj.subject, key.public_key(), days)
            .add_extension(_san(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca._key_obj, hashes.SHA256()))
    return _pem(cert, key)


def self_signed(names: list[str], days: int = 3650) -> Pem:
    """The router's fallback default certificate (clients will not trust it, by design)."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (_builder(_name(names[0]), _name(names[0]), key.public_key(), days)
            .add_extension(_san(names), critical=False)
            .sign(key, hashes.SHA256()))
    return _pem(cert, key)
