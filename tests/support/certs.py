"""Certificate factories for the tests and benchmarks: a CA and server certificates it signs.
ECDSA P-256, SHA-256, like the router's own self-signed default (re-exported here with Pem)."""
from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from netshift.router.certs import Pem, alt_names, builder, common_name, self_signed, to_pem

__all__ = ["Pem", "issue", "make_ca", "self_signed"]


def make_ca(cn: str = "netshift test CA", days: int = 30) -> Pem:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (builder(common_name(cn), common_name(cn), key.public_key(), days)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    return to_pem(cert, key)


def issue(ca: Pem, names: list[str], days: int = 30) -> Pem:
    """A server certificate for ``names`` signed by ``ca``."""
    ca_cert = x509.load_pem_x509_certificate(ca.cert.encode())
    ca_key = serialization.load_pem_private_key(ca.key.encode(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (builder(common_name(names[0]), ca_cert.subject, key.public_key(), days)
            .add_extension(alt_names(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return to_pem(cert, key)
