"""Extended TLS validation with certificates made in the test (cryptography)."""
from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from netshift.models.route import TLSConfig
from netshift.route import admission
from netshift.route.tls import extended_tls_errors
from tests.support.routes import POLICY, cand

NOW = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


def key_rsa():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_cert(subject_key, cn: str, *, issuer_key=None, issuer_cert=None, ca: bool = False,
              algorithm=None, days: int = 365) -> x509.Certificate:
    builder = (x509.CertificateBuilder()
               .subject_name(name(cn))
               .issuer_name(issuer_cert.subject if issuer_cert else name(cn))
               .public_key(subject_key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(NOW - dt.timedelta(days=1))
               .not_valid_after(NOW + dt.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    signer = issuer_key or subject_key
    cert = builder.sign(signer, hashes.SHA256())
    if algorithm is not None:
        cert = resign(cert, signer, algorithm)
    return cert


# cryptography refuses to sign certificates with SHA1 or MD5; the tests need such certificates,
# so the TBS part is re-labelled and signed by hand (PKCS#1 v1.5 signing of raw data still works).
_OIDS = {"sha1": bytes.fromhex("2a864886f70d010105"), "md5": bytes.fromhex("2a864886f70d010104")}
_SHA256_RSA = bytes.fromhex("2a864886f70d01010b")


def _der(tag: int, body: bytes) -> bytes:
    n = len(body)
    if n < 0x80:
        length = bytes([n])
    else:
        raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(raw)]) + raw
    return bytes([tag]) + length + body


def resign(cert: x509.Certificate, key, algorithm) -> x509.Certificate:
    oid = _OIDS[algorithm.name]
    tbs = cert.tbs_certificate_bytes.replace(_SHA256_RSA, oid, 1)
    sig = key.sign(tbs, padding.PKCS1v15(), algorithm)
    alg = _der(0x30, _der(0x06, oid) + b"\x05\x00")
    return x509.load_der_x509_certificate(_der(0x30, tbs + alg + _der(0x03, b"\x00" + sig)))


def pem(obj) -> str:
    if isinstance(obj, x509.Certificate):
        return obj.public_bytes(serialization.Encoding.PEM).decode()
    return obj.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption()).decode()


@pytest.fixture(scope="module")
def pki():
    ca_key = key_rsa()
    ca = make_cert(ca_key, "test-ca", ca=True)
    leaf_key = key_rsa()
    leaf = make_cert(leaf_key, "www.example.com", issuer_key=ca_key, issuer_cert=ca)
    return {"ca_key": ca_key, "ca": ca, "leaf_key": leaf_key, "leaf": leaf}


def edge(**fields) -> TLSConfig:
    return TLSConfig(termination="edge", **fields)


def test_valid_edge_route_with_ca(pki):
    assert extended_tls_errors(edge(certificate=pem(pki["leaf"]), key=pem(pki["leaf_key"]),
                                    ca_certificate=pem(pki["ca"]))) == []


def test_valid_ec_key_and_pkcs8(pki):
    k = ec.generate_private_key(ec.SECP256R1())
    c = make_cert(k, "ec.example.com")
    pkcs8 = k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    assert extended_tls_errors(edge(certificate=pem(c), key=pkcs8)) == []


def test_key_may_travel_with_the_certificate(pki):
    assert extended_tls_errors(edge(certificate=pem(pki["leaf"]) + pem(pki["leaf_key"]))) == []


def test_mismatched_key(pki):
    errs = extended_tls_errors(edge(certificate=pem(pki["leaf"]), key=pem(key_rsa())))
    assert errs == ['spec.tls.key: Invalid value: "redacted key data": tls: private key does not match public key']


def test_key_type_mismatch(pki):
    errs = extended_tls_errors(edge(certificate=pem(pki["leaf"]),
                                    key=pem(ec.generate_private_key(ec.SECP256R1()))))
    assert errs == ['spec.tls.key: Invalid value: "redacted key data": '
                    'tls: private key type does not match public key type']


def test_key_field_containing_a_certificate(pki):
    errs = extended_tls_errors(edge(certificate=pem(pki["leaf"]), key=pem(pki["leaf"])))
    assert errs == ['spec.tls.key: Invalid value: "redacted key data": '
                    'tls: found a certificate rather than a key in the PEM for the private key']


def test_key_field_with_certificate_and_key_is_refused(pki):
    errs = extended_tls_errors(edge(certificate=pem(pki["leaf"]),
                                    key=pem(pki["leaf"]) + pem(pki["leaf_key"])))
    assert len(errs) == 1 and "must hold only a private key, found CERTIFICATE" in errs[0]


def test_missing_key(pki):
    errs = extended_tls_errors(edge(certificate=pem(pki["leaf"])))
    assert errs == ['spec.tls.key: Invalid value: "": no key specified']


def test_garbage_key_and_unknown_block(pki):
    assert "tls: failed to find any PEM data in key input" in \
        extended_tls_errors(edge(certificate=pem(pki["leaf"]), key="garbage"))[0]
    bad = "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n"
    assert "block RSA PRIVATE KEY is not valid" in extended_tls_errors(edge(key=bad))[0]
    odd = "-----BEGIN FOO-----\nAAAA\n-----END FOO-----\n"
    assert "unrecognized PEM block FOO" in extended_tls_errors(edge(key=odd))[0]


def test_certificate_not_signed_by_given_ca(pki):
    other_key = key_rsa()
    other_ca = make_cert(other_key, "other-ca", ca=True)
    errs = extended_tls_errors(edge(certificate=pem(pki["leaf"]), key=pem(pki["leaf_key"]),
                                    ca_certificate=pem(other_ca)))
    assert errs == ['spec.tls.certificate: Invalid value: "redacted certificate data": '
                    "error verifying certificate: x509: certificate signed by unknown authority"]


def test_expired_certificate_is_not_an_error(pki):
    leaf_key = key_rsa()
    old = make_cert(leaf_key, "old.example.com", issuer_key=pki["ca_key"], issuer_cert=pki["ca"], days=-1)
    assert extended_tls_errors(edge(certificate=pem(old), key=pem(leaf_key),
                                    ca_certificate=pem(pki["ca"]))) == []


def test_sha1_signed_by_ca_is_rejected(pki):
    leaf_key = key_rsa()
    sha1 = make_cert(leaf_key, "sha1.example.com", issuer_key=pki["ca_key"], issuer_cert=pki["ca"],
                     algorithm=hashes.SHA1())
    errs = extended_tls_errors(edge(certificate=pem(sha1), key=pem(leaf_key), ca_certificate=pem(pki["ca"])))
    assert errs == ['spec.tls.certificate: Invalid value: "redacted certificate data": '
                    "router does not support CA-signed certs using SHA1"]


def test_sha1_signed_intermediate_ca_is_rejected_but_self_signed_sha1_root_is_fine(pki):
    root_key = key_rsa()
    root = make_cert(root_key, "sha1-root", ca=True, algorithm=hashes.SHA1())
    leaf_key = key_rsa()
    leaf = make_cert(leaf_key, "a.example.com", issuer_key=root_key, issuer_cert=root)
    assert extended_tls_errors(edge(certificate=pem(leaf), key=pem(leaf_key),
                                    ca_certificate=pem(root))) == []
    inter_key = key_rsa()
    inter = make_cert(inter_key, "sha1-intermediate", issuer_key=root_key, issuer_cert=root, ca=True,
                      algorithm=hashes.SHA1())
    errs = extended_tls_errors(edge(ca_certificate=pem(inter) + pem(root)))
    assert errs == ['spec.tls.caCertificate: Invalid value: "redacted ca certificate data": '
                    "router does not support CA-signed certs using SHA1"]


def test_md5_signed_destination_ca_is_rejected(pki):
    k = key_rsa()
    md5 = make_cert(k, "md5-ca", issuer_key=pki["ca_key"], issuer_cert=pki["ca"], ca=True,
                    algorithm=hashes.MD5())
    errs = extended_tls_errors(TLSConfig(termination="reencrypt", destination_ca_certificate=pem(md5)))
    assert errs == ['spec.tls.destinationCACertificate: Invalid value: "redacted destination ca '
                    'certificate data": router does not support CA-signed certs using MD5']


def test_unparsable_ca_and_destination_ca():
    errs = extended_tls_errors(TLSConfig(termination="reencrypt", ca_certificate="nope",
                                         destination_ca_certificate="nope"))
    assert errs == [
        'spec.tls.caCertificate: Invalid value: "redacted ca certificate data": failed to parse CA '
        "certificate: data does not contain any valid RSA or ECDSA certificates",
        'spec.tls.destinationCACertificate: Invalid value: "redacted destination ca certificate data": '
        "failed to parse destination CA certificate: data does not contain any valid RSA or ECDSA certificates",
    ]


def test_admission_reports_extended_validation_failed(pki):
    c = cand("a", host="www.example.com",
             tls={"termination": "edge", "certificate": pem(pki["leaf"]), "key": pem(key_rsa())})
    assert c.rejection == admission.reject(
        "ExtendedValidationFailed",
        'spec.tls.key: Invalid value: "redacted key data": tls: private key does not match public key')


def test_several_errors_are_aggregated_in_brackets(pki):
    c = cand("a", host="www.example.com",
             tls={"termination": "passthrough", "certificate": pem(pki["leaf"])}, path="/x")
    assert c.rejection.reason == "ExtendedValidationFailed"
    assert c.rejection.message.startswith("[spec.path: Invalid value: \"/x\": passthrough termination "
                                          "does not support paths, spec.tls.certificate:")
    assert POLICY.extended_validation
