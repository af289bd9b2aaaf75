"""Facts about a presented TLS certificate (subject, issuer, fingerprint, validity, SANs).

The egress probe reports them on success and, above all, on failure: the issuer of an
untrusted certificate is how a TLS-inspecting proxy shows up. On success the verified
connection already holds the parsed certificate (`getpeercert()`, OpenSSL's own
decoding): nothing else is loaded. A certificate that failed verification is parsed
from its DER bytes by the same decoder the standard library uses for `getpeercert()`
(`_ssl._test_decode_cert`), so the two paths render names alike. `cryptography` is only
used when asked (`use_cryptography=True`: the tests check that both parsers agree): it
cost the agent about 16 MiB of resident memory on the first TLS failure, which is when
an operator most needs the agent to stay small (docs/performance.md, "Agent footprint").
Names are rendered RFC 4514 style (`CN=...,O=...`), fingerprints as lower-case hex of
the SHA-256 of the DER encoding.
"""

from __future__ import annotations

import hashlib
import os
import ssl
import tempfile
from typing import Any

from agent.probes.results import Certificate

__all__ = ["certificate_from_der", "certificate_from_peercert"]

# RFC 4514 short names for the attributes the stdlib decoder spells out.
_STDLIB_SHORT_NAMES = {
    "commonName": "CN",
    "countryName": "C",
    "localityName": "L",
    "stateOrProvinceName": "ST",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "streetAddress": "STREET",
    "domainComponent": "DC",
    "userId": "UID",
}


def certificate_from_der(
    der: bytes, *, verified: bool, tls_version: str = "", use_cryptography: bool = False
) -> Certificate:
    """A Certificate record from a DER-encoded X.509 certificate.

    Raises ValueError when the bytes are not a certificate.
    """
    fingerprint = hashlib.sha256(der).hexdigest()
    fields = _parse_with_cryptography(der) if use_cryptography else _parse_with_stdlib(der)
    return Certificate(
        sha256_fingerprint=fingerprint, verified=verified, tls_version=tls_version, **fields
    )


def certificate_from_peercert(
    decoded: dict[str, Any], der: bytes, *, tls_version: str = ""
) -> Certificate:
    """A Certificate record of a verified connection from `getpeercert()` and its DER."""
    return Certificate(
        sha256_fingerprint=hashlib.sha256(der).hexdigest(),
        verified=True,
        tls_version=tls_version,
        **_fields_from_decoded(decoded),
    )


def _parse_with_cryptography(der: bytes) -> dict[str, Any]:
    from cryptography import x509  # only for a certificate that failed verification

    cert = x509.load_der_x509_certificate(der)
    names: list[str] = []
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        pass
    else:
        names.extend(san.get_values_for_type(x509.DNSName))
        names.extend(str(ip) for ip in san.get_values_for_type(x509.IPAddress))
    return {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "not_before": cert.not_valid_before_utc.timestamp(),
        "not_after": cert.not_valid_after_utc.timestamp(),
        "dns_names": names,
    }


def _render_stdlib_name(name: Any) -> str:
    # The stdlib gives ((("countryName", "US"),), (("commonName", "x"),)) in DER order;
    # RFC 4514 lists the most specific attribute first, as cryptography does.
    parts = []
    for rdn in reversed(name or ()):
        parts.append(
            "+".join(f"{_STDLIB_SHORT_NAMES.get(key, key)}={_escape(value)}" for key, value in rdn)
        )
    return ",".join(parts)


def _escape(value: str) -> str:
    out = value.replace("\\", "\\\\")
    for char in ',+"<>;=':
        out = out.replace(char, "\\" + char)
    if out.startswith(("#", " ")):
        out = "\\" + out
    if out.endswith(" ") and not out.endswith("\\ "):
        out = out[:-1] + "\\ "
    return out


def _parse_with_stdlib(der: bytes) -> dict[str, Any]:
    pem = ssl.DER_cert_to_PEM_cert(der)
    fd, path = tempfile.mkstemp(prefix="preflight-cert-", suffix=".pem")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(pem)
        try:
            decoded: dict[str, Any] = ssl._ssl._test_decode_cert(path)  # type: ignore[attr-defined]
        except ssl.SSLError as error:
            raise ValueError(f"not a certificate: {error}") from None
    finally:
        os.unlink(path)
    return _fields_from_decoded(decoded)


def _fields_from_decoded(decoded: dict[str, Any]) -> dict[str, Any]:
    """The fields of the stdlib's decoded form (getpeercert(), _test_decode_cert)."""
    names = [
        value for kind, value in decoded.get("subjectAltName", ()) if kind in ("DNS", "IP Address")
    ]
    return {
        "subject": _render_stdlib_name(decoded.get("subject")),
        "issuer": _render_stdlib_name(decoded.get("issuer")),
        "not_before": float(ssl.cert_time_to_seconds(decoded["notBefore"])),
        "not_after": float(ssl.cert_time_to_seconds(decoded["notAfter"])),
        "dns_names": [n.rstrip() for n in names],
    }
