"""Extended validation of a Route's inline TLS material (the router's ``ExtendedValidationFailed``).

Pure functions over PEM strings, using ``cryptography``. What is checked, as OpenShift's router
does (messages follow its wording so that users can search them):

- every PEM block of every field is of a known type and parses;
- ``caCertificate`` and ``destinationCACertificate`` hold at least one certificate;
- ``certificate`` holds at least one certificate; when ``caCertificate`` is given the first one
  (the leaf) must verify against it (expiry is not checked: clients decide about that);
- a key is given (in ``key`` or with the certificate) and pairs with the leaf;
- no CA-signed certificate in any field uses SHA1, MD5 or MD2 signatures (self-signed roots may:
  nothing verifies their signature);
- stricter than OpenShift: the ``key`` field holds private keys only (OpenShift skips a
  certificate pasted there as long as a key follows).
"""
from __future__ import annotations

import base64
import binascii
import dataclasses
import re

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtensionOID, SignatureAlgorithmOID

from netshift.models.route import TLSConfig

from .validation import invalid

_PEM_RE = re.compile(
    r"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----", re.DOTALL)

_PRIVATE_KEY_TYPES = {"RSA PRIVATE KEY", "ECDSA PRIVATE KEY", "EC PRIVATE KEY", "PRIVATE KEY"}
_PUBLIC_KEY_TYPES = {"PUBLIC KEY", "RSA PUBLIC KEY", "DSA PUBLIC KEY", "ECDSA PUBLIC KEY"}
_IGNORED_TYPES = {"EC PARAMETERS"}  # openssl writes it before EC keys; carries nothing we need

# The private key types _parse_private_key accepts.
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

_WEAK = {
    SignatureAlgorithmOID.RSA_WITH_SHA1: "SHA1",
    SignatureAlgorithmOID._RSA_WITH_SHA1: "SHA1",
    SignatureAlgorithmOID.ECDSA_WITH_SHA1: "SHA1",
    SignatureAlgorithmOID.DSA_WITH_SHA1: "SHA1",
    SignatureAlgorithmOID.RSA_WITH_MD5: "MD5",
    x509.ObjectIdentifier("1.2.840.113549.1.1.2"): "MD2",
}

NO_CERTIFICATES = "data does not contain any valid RSA or ECDSA certificates"
UNKNOWN_AUTHORITY = "error verifying certificate: x509: certificate signed by unknown authority"


@dataclasses.dataclass(frozen=True)
class PemBlock:
    type: str
    der: bytes


class PemError(ValueError):
    pass


def pem_blocks(data: str) -> list[PemBlock]:
    """The PEM blocks of ``data`` (text outside blocks is ignored, like Go's pem.Decode loop)."""
    blocks = []
    for m in _PEM_RE.finditer(data):
        body = "".join(line for line in m.group(2).splitlines() if ":" not in line)
        try:
            der = base64.b64decode(body, validate=False)
        except (binascii.Error, ValueError) as exc:
            raise PemError(f"block {m.group(1)} is not valid base64") from exc
        blocks.append(PemBlock(m.group(1), der))
    return blocks


def _parse_private_key(block: PemBlock) -> PrivateKey:
    try:
        key = serialization.load_der_private_key(block.der, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise PemError(f"block {block.type} is not valid") from None
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        raise PemError(f"block private key {type(key).__name__} is not valid")
    return key


def _parse_certificate(block: PemBlock) -> x509.Certificate:
    try:
        return x509.load_der_x509_certificate(block.der)
    except ValueError as exc:
        raise PemError(f"x509: malformed certificate ({exc})") from None


def sanitize_errors(data: str) -> str | None:
    """Why ``data`` is not clean PEM (unknown block type, unparsable block), or None."""
    try:
        for block in pem_blocks(data):
            if block.type in _PRIVATE_KEY_TYPES:
                _parse_private_key(block)
            elif block.type in _PUBLIC_KEY_TYPES:
                try:
                    serialization.load_der_public_key(block.der)
                except (ValueError, UnsupportedAlgorithm):
                    raise PemError(f"block {block.type} is not valid") from None
            elif block.type == "CERTIFICATE":
                _parse_certificate(block)
            elif block.type not in _IGNORED_TYPES:
                raise PemError(f"unrecognized PEM block {block.type}")
    except PemError as exc:
        return str(exc)
    return None


def parse_certificates(data: str) -> list[x509.Certificate]:
    """All CERTIFICATE blocks of ``data``; other blocks are skipped. Raises PemError when none."""
    certs = [_parse_certificate(b) for b in pem_blocks(data) if b.type == "CERTIFICATE"]
    if not certs:
        raise PemError(NO_CERTIFICATES)
    return certs


def is_self_signed(cert: x509.Certificate) -> bool:
    """Issuer equals subject and the authority key id, when present, is the subject key id
    (OpenSSL's notion, which decides whether a signature is ever checked)."""
    if cert.issuer != cert.subject:
        return False
    try:
        aki = cert.extensions.get_extension_for_oid(ExtensionOID.AUTHORITY_KEY_IDENTIFIER).value
    except x509.ExtensionNotFound:
        return True
    if not isinstance(aki, x509.AuthorityKeyIdentifier) or aki.key_identifier is None:
        return True
    try:
        ski = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_KEY_IDENTIFIER).value
    except x509.ExtensionNotFound:
        return False
    return isinstance(ski, x509.SubjectKeyIdentifier) and aki.key_identifier == ski.digest


def weak_signature_errors(certs: list[x509.Certificate]) -> list[str]:
    return [f"router does not support CA-signed certs using {_WEAK[cert.signature_algorithm_oid]}"
            for cert in certs if cert.signature_algorithm_oid in _WEAK and not is_self_signed(cert)]


def verifies_against(leaf: x509.Certificate, pool: list[x509.Certificate]) -> bool:
    """The leaf is signed by a certificate of ``pool``. Go verifies with Roots = Intermediates =
    pool, so every pool certificate is a trust anchor and a direct signature is enough."""
    for parent in pool:
        if parent.subject != leaf.issuer:
            continue
        try:
            leaf.verify_directly_issued_by(parent)
        except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
            continue
        return True
    return False


def _public_der(key: CertificatePublicKeyTypes) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _key_pair_error(cert: x509.Certificate, key: PrivateKey) -> str | None:
    """Go's ``tls.X509KeyPair`` checks between the leaf and the key."""
    pub = cert.public_key()
    if isinstance(pub, rsa.RSAPublicKey) != isinstance(key, rsa.RSAPrivateKey) or \
            isinstance(pub, ec.EllipticCurvePublicKey) != isinstance(key, ec.EllipticCurvePrivateKey):
        return "tls: private key type does not match public key type"
    if _public_der(pub) != _public_der(key.public_key()):
        return "tls: private key does not match public key"
    return None


def _key_field_errors(key_pem: str) -> tuple[list[str], PrivateKey | None]:
    path, redacted = "spec.tls.key", "redacted key data"
    if problem := sanitize_errors(key_pem):
        return [invalid(path, redacted, problem)], None
    blocks = pem_blocks(key_pem)
    others = [b.type for b in blocks if b.type not in _PRIVATE_KEY_TYPES | _IGNORED_TYPES]
    keys = [b for b in blocks if b.type in _PRIVATE_KEY_TYPES]
    if not keys and "CERTIFICATE" in others:
        return [invalid(path, redacted,
                        "tls: found a certificate rather than a key in the PEM for the private key")], None
    if others:
        return [invalid(path, redacted, "the key field must hold only a private key, found "
                        + ", ".join(dict.fromkeys(others)))], None
    if not keys:
        return [invalid(path, redacted, "tls: failed to find any PEM data in key input")], None
    return [], _parse_private_key(keys[0])


def extended_tls_errors(tls: TLSConfig | None) -> list[str]:
    """Field errors of the inline PEM material of ``spec.tls`` (empty when all is well)."""
    if tls is None:
        return []
    errs: list[str] = []
    pool: list[x509.Certificate] | None = None

    if tls.ca_certificate:
        pool = _ca_field_errors(errs, tls.ca_certificate, "spec.tls.caCertificate",
                                "redacted ca certificate data", "CA certificate")

    leaf = None
    cert_ok = False
    if tls.certificate:
        path, redacted = "spec.tls.certificate", "redacted certificate data"
        try:
            certs = parse_certificates(tls.certificate)
        except PemError as exc:
            errs.append(invalid(path, redacted, str(exc)))
        else:
            leaf = certs[0]
            if weak := weak_signature_errors(certs):
                errs.append(invalid(path, redacted, "; ".join(dict.fromkeys(weak))))
            elif pool is not None and not verifies_against(leaf, pool):
                errs.append(invalid(path, redacted, UNKNOWN_AUTHORITY))
            elif problem := sanitize_errors(tls.certificate):
                errs.append(invalid(path, redacted, problem))
            else:
                cert_ok = True

    key = None
    if tls.key:
        key_errs, key = _key_field_errors(tls.key)
        errs.extend(key_errs)

    if tls.certificate and cert_ok and not (tls.key and key is None):
        if key is None:
            # A key may also travel with the certificate, as OpenShift allows.
            in_cert = [b for b in pem_blocks(tls.certificate) if b.type in _PRIVATE_KEY_TYPES]
            key = _parse_private_key(in_cert[0]) if in_cert else None
        if key is None:
            errs.append(invalid("spec.tls.key", "", "no key specified"))
        elif leaf is not None and (problem := _key_pair_error(leaf, key)):
            errs.append(invalid("spec.tls.key", "redacted key data", problem))

    if tls.destination_ca_certificate:
        _ca_field_errors(errs, tls.destination_ca_certificate, "spec.tls.destinationCACertificate",
                         "redacted destination ca certificate data", "destination CA certificate")
    return errs


def _ca_field_errors(errs: list[str], pem: str, path: str, redacted: str,
                     what: str) -> list[x509.Certificate] | None:
    """Append the errors of one CA bundle field; return its certificates when they parse."""
    try:
        certs = parse_certificates(pem)
    except PemError as exc:
        errs.append(invalid(path, redacted, f"failed to parse {what}: {exc}"))
        return None
    if problem := sanitize_errors(pem):
        errs.append(invalid(path, redacted, problem))
    errs.extend(invalid(path, redacted, e) for e in weak_signature_errors(certs))
    return certs
