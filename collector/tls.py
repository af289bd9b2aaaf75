"""TLS for the gRPC port, with the certificate re-read when its files change.

cert-manager and a re-applied Secret replace the mounted files in place; gRPC asks the
fetcher below at every new handshake, so a rotated certificate is served from the next
connection on without a restart (connections already open keep their session). A file
caught half-written (key and certificate that do not match, unreadable PEM) is ignored
and the previous pair stays in use until the files are whole again.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
from pathlib import Path

import grpc

from collector.config import ConfigError, TlsConfig

log = logging.getLogger(__name__)

_Stamp = tuple[tuple[int, int, int], ...]


def _stamp(paths: tuple[Path, ...]) -> _Stamp:
    # Secret volumes swap a symlink (..data), so follow links: st_ino changes with it.
    stamps = []
    for path in paths:
        st = os.stat(path)
        stamps.append((st.st_ino, st.st_mtime_ns, st.st_size))
    return tuple(stamps)


class CertificateSource:
    """Holds the current key pair; `fetch` is gRPC's certificate configuration fetcher."""

    def __init__(self, config: TlsConfig) -> None:
        assert config.cert_file is not None and config.key_file is not None
        self.cert_file = config.cert_file
        self.key_file = config.key_file
        self.client_ca_file = config.client_ca_file
        self._paths = tuple(
            p for p in (self.cert_file, self.key_file, self.client_ca_file) if p is not None
        )
        self._lock = threading.Lock()
        self.reloads = 0
        for key, path in (
            ("tls.cert_file", self.cert_file),
            ("tls.key_file", self.key_file),
            ("tls.client_ca_file", self.client_ca_file),
        ):
            if path is not None and not os.access(path, os.R_OK):
                raise ConfigError(f"{key}: cannot read {path}")
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(self.cert_file, self.key_file)
            self._stamp = _stamp(self._paths)
            self._material = self._read()
        except (OSError, ssl.SSLError) as error:
            raise ConfigError(
                f"tls.cert_file/tls.key_file: {self.cert_file}, {self.key_file}: "
                f"not a matching PEM certificate and key ({error})"
            ) from None

    def _read(self) -> tuple[bytes, bytes, bytes | None]:
        ca = self.client_ca_file.read_bytes() if self.client_ca_file is not None else None
        return self.key_file.read_bytes(), self.cert_file.read_bytes(), ca

    def configuration(self) -> grpc.ServerCertificateConfiguration:
        key, cert, ca = self._material
        return grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=ca)

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """Called per handshake; None while the files are unchanged (gRPC keeps the pair)."""
        with self._lock:
            try:
                stamp = _stamp(self._paths)
                if stamp == self._stamp:
                    return None
                # A key that does not match its certificate (caught mid-rotation) raises here.
                ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(
                    self.cert_file, self.key_file
                )
                material = self._read()
            except (OSError, ssl.SSLError) as error:
                log.warning("tls: keeping the current certificate: %s", error)
                return None
            self._stamp = stamp
            if not _looks_like_pem(material):
                log.warning(
                    "tls: %s or %s is not PEM yet; keeping the current pair",
                    self.cert_file,
                    self.key_file,
                )
                return None
            self._material = material
            self.reloads += 1
            log.info("tls: certificate reloaded from %s", self.cert_file)
            return self.configuration()

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(
            self.configuration(),
            self.fetch,
            require_client_authentication=self.client_ca_file is not None,
        )


def _looks_like_pem(material: tuple[bytes, bytes, bytes | None]) -> bool:
    key, cert, ca = material
    return (
        b"-----BEGIN" in key
        and b"PRIVATE KEY-----" in key
        and b"-----BEGIN CERTIFICATE-----" in cert
        and (ca is None or b"-----BEGIN CERTIFICATE-----" in ca)
    )
