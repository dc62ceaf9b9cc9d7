"""The secrets of a secured local cluster, generated per cluster into its folder.

    <cluster>/secrets/            mode 0700
        ca.pem                    the cluster's own CA certificate (clients trust it: ssl.ca.location)
        broker.pem                the brokers' private key (PKCS#8) and certificate chain, for
                                  Kafka's PEM keystore (ssl.keystore.type=PEM)
        <user>.password           one SCRAM (or controller PLAIN) password per user

Every file is written with mode 0600 and never printed. The CA's private key is not kept:
once the broker certificate is signed nobody can issue another certificate the cluster's
clients trust. Keys are EC P-256; the broker certificate names 127.0.0.1 and localhost, so
clients verify the host name (librdkafka's ssl.endpoint.identification.algorithm=https).

Python `cryptography` is imported only here and only when a secured cluster is created.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import os
import secrets
from pathlib import Path

SECRETS_DIR_NAME = "secrets"
CERTIFICATE_VALIDITY_DAYS = 825  # the longest validity TLS clients commonly accept
PASSWORD_BYTES = 24  # 192 bits, URL-safe base64: no quoting needed in JAAS or properties
SCRAM_SALT_BYTES = 32
SCRAM_ITERATIONS = 8192  # Kafka accepts 4096 to 16384
SCRAM_HASHES = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}


def write_secret(path: Path, data: bytes) -> None:
    """Create `path` with mode 0600 (never readable by others, even for a moment)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(descriptor, 0o600)
        os.write(descriptor, data)
    finally:
        os.close(descriptor)


def private_folder(folder: Path) -> Path:
    """`folder`, created if needed, with mode 0700."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)
    return folder


def password(folder: Path, user: str) -> str:
    """The user's password, generated on first use."""
    path = private_folder(folder) / f"{user}.password"
    if not path.exists():
        write_secret(path, secrets.token_urlsafe(PASSWORD_BYTES).encode())
    return path.read_text().strip()


def scram_credential(mechanism: str, user: str, secret: str) -> str:
    """A `kafka-storage format --add-scram` argument with a salted password, so the plain
    password never appears on a command line (which any local user can list)."""
    salt = secrets.token_bytes(SCRAM_SALT_BYTES)
    salted = hashlib.pbkdf2_hmac(SCRAM_HASHES[mechanism], secret.encode(), salt, SCRAM_ITERATIONS)
    fields = [
        f"name={user}",
        f"iterations={SCRAM_ITERATIONS}",
        f'salt="{base64.b64encode(salt).decode()}"',
        f'saltedpassword="{base64.b64encode(salted).decode()}"',
    ]
    return f"{mechanism}=[{','.join(fields)}]"


def ensure_certificates(folder: Path) -> None:
    """A CA and a broker certificate signed by it, unless both exist already."""
    if (folder / "ca.pem").exists() and (folder / "broker.pem").exists():
        return
    private_folder(folder)
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    valid_until = now + datetime.timedelta(days=CERTIFICATE_VALIDITY_DAYS)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"streamwallet local CA {folder.parent.name}")])
    ca_certificate = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(valid_until)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    broker_key = ec.generate_private_key(ec.SECP256R1())
    broker_certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(broker_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(valid_until)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.IPv4Address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        # A broker is a TLS server to clients and a TLS client to the other brokers and the controllers.
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_pem = ca_certificate.public_bytes(serialization.Encoding.PEM)
    key_pem = broker_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_secret(folder / "broker.pem", key_pem + broker_certificate.public_bytes(serialization.Encoding.PEM) + ca_pem)
    write_secret(folder / "ca.pem", ca_pem)
