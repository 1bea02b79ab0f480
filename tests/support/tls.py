# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Certificates for the tests' TLS servers: a CA and the server certificates it signs, or a self-signed one.

Server certificates name ``localhost`` and ``127.0.0.1``. Keys are ECDSA P-256, written unencrypted (PKCS#8 PEM).
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import os
import pathlib
import ssl

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DAY = datetime.timedelta(days=1)


def subject(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, 'Dihya tests'), x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_certificate(
    key: ec.EllipticCurvePrivateKey,
    issuer_key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    name: x509.Name,
    not_before: datetime.datetime,
    not_after: datetime.datetime,
    ca: bool,
) -> x509.Certificate:
    """A CA certificate, or a server certificate for localhost/127.0.0.1, for ``key``, signed by ``issuer_key``."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True,
        ).add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    else:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName('localhost'), x509.IPAddress(ipaddress.ip_address('127.0.0.1'))]), critical=False,
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False).add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def write_certificate(path: str | os.PathLike[str], certificate: x509.Certificate) -> None:
    pathlib.Path(path).write_bytes(certificate.public_bytes(serialization.Encoding.PEM))


def write_key(path: str | os.PathLike[str], key: ec.EllipticCurvePrivateKey) -> None:
    pathlib.Path(path).write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


def server_context(cert_path: str | os.PathLike[str], key_path: str | os.PathLike[str]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    return context


@dataclasses.dataclass
class TLSMaterial:
    """The files :func:`make_tls_material` wrote."""

    directory: str
    ca_path: str
    cert_path: str
    key_path: str

    def server_context(self, cert_path: str | None = None) -> ssl.SSLContext:
        return server_context(cert_path or self.cert_path, self.key_path)


def make_tls_material(directory: str | os.PathLike[str]) -> TLSMaterial:
    """A CA (``ca.pem``) and a server certificate it signed that expires in 5 days (``server.pem``, ``server.key``).

    ``expired.pem`` and ``future.pem`` hold certificates for the same key that expired
    two days ago and become valid tomorrow.
    """
    folder = pathlib.Path(directory)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = subject('Dihya test CA')
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = subject('localhost')
    certificates = {
        'server.pem': make_certificate(key, ca_key, ca_name, leaf, now - DAY, now + datetime.timedelta(days=5, hours=1), ca=False),
        'expired.pem': make_certificate(key, ca_key, ca_name, leaf, now - 30 * DAY, now - datetime.timedelta(days=2, hours=1), ca=False),
        'future.pem': make_certificate(key, ca_key, ca_name, leaf, now + DAY, now + 90 * DAY, ca=False),
        'ca.pem': make_certificate(ca_key, ca_key, ca_name, ca_name, now - DAY, now + 365 * DAY, ca=True),
    }
    for name, certificate in certificates.items():
        write_certificate(folder / name, certificate)
    write_key(folder / 'server.key', key)
    return TLSMaterial(str(folder), str(folder / 'ca.pem'), str(folder / 'server.pem'), str(folder / 'server.key'))


def self_signed(directory: str | os.PathLike[str], common_name: str = 'localhost') -> ssl.SSLContext:
    """A server context with a self-signed certificate (``cert.pem``, ``key.pem`` in ``directory``) that no client trusts."""
    folder = pathlib.Path(directory)
    key = ec.generate_private_key(ec.SECP256R1())
    name = subject(common_name)
    now = datetime.datetime.now(datetime.UTC)
    write_certificate(folder / 'cert.pem', make_certificate(key, key, name, name, now - DAY, now + 30 * DAY, ca=False))
    write_key(folder / 'key.pem', key)
    return server_context(folder / 'cert.pem', folder / 'key.pem')
