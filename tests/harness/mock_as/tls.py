"""Throw-away PKI for the mock: a self-signed CA, a server certificate for 127.0.0.1/localhost, client certs."""

from __future__ import annotations

import datetime as _dt
import ipaddress
import ssl

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")


def _pem_cert(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def _builder(subject: str, issuer: x509.Name, pub: ec.EllipticCurvePublicKey) -> x509.CertificateBuilder:
    now = _dt.datetime.now(_dt.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(pub)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(minutes=5))
        .not_valid_after(now + _dt.timedelta(days=2))
    )


def cert_der(cert_pem: str) -> bytes:
    return x509.load_pem_x509_certificate(cert_pem.encode("ascii")).public_bytes(serialization.Encoding.DER)


class Pki:
    """CA + server certificate. ``server_context()`` builds SSL contexts for the listeners."""

    def __init__(self, extra_hosts: tuple[str, ...] = ()):
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = _name("mock-as test CA")
        self.ca_cert = (
            _builder("mock-as test CA", ca_name, self.ca_key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self.ca_key, hashes.SHA256())
        )
        self.ca_pem = _pem_cert(self.ca_cert)
        sans: list[x509.GeneralName] = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        for h in extra_hosts:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(h)))
            except ValueError:
                sans.append(x509.DNSName(h))
        self.server_key = ec.generate_private_key(ec.SECP256R1())
        self.server_cert = (
            _builder("127.0.0.1", self.ca_cert.subject, self.server_key.public_key())
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(self.ca_key, hashes.SHA256())
        )
        self.server_cert_pem = _pem_cert(self.server_cert)
        self.server_key_pem = _pem_key(self.server_key)

    def issue_client_cert(self, cn: str = "mcp-client", self_signed: bool = False) -> tuple[str, str]:
        """(cert_pem, key_pem) for a TLS client: CA-issued, or self-signed."""
        key = ec.generate_private_key(ec.SECP256R1())
        issuer = _name(cn) if self_signed else self.ca_cert.subject
        b = _builder(cn, issuer, key.public_key()).add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        cert = b.sign(key if self_signed else self.ca_key, hashes.SHA256())
        return _pem_cert(cert), _pem_key(key)

    def server_context(self, tmpdir: str, request_client_cert: bool) -> ssl.SSLContext:
        import os

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        cf, kf = os.path.join(tmpdir, "server.crt"), os.path.join(tmpdir, "server.key")
        with open(cf, "w") as f:
            f.write(self.server_cert_pem)
        with open(kf, "w") as f:
            f.write(self.server_key_pem)
        ctx.load_cert_chain(cf, kf)
        if request_client_cert:
            # Client certificates are optional at the handshake; whether one identifies a client is decided
            # per request (clientauth.py). The CA and every registered client certificate are trust anchors;
            # PARTIAL_CHAIN lets a registered leaf (e.g. self-signed) anchor itself.
            ctx.verify_mode = ssl.CERT_OPTIONAL
            ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
            ctx.load_verify_locations(cadata=self.ca_pem)
        return ctx
