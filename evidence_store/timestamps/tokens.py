"""Reading and checking RFC 3161 timestamp tokens, with a reason for every rejection.

A token proves that a TSA saw a digest at its genTime only if all of this holds, and
:func:`verify_token` checks each in turn:

1. the message imprint is SHA-256 and equals the digest we expect (the snapshot id);
2. the CMS SignedData has one signer, whose certificate is in the token (or given to us);
3. the signed attributes are those of a TSA token: contentType id-ct-TSTInfo, a messageDigest
   equal to the hash of the TSTInfo bytes, and a signingCertificate(V2) naming the signer
   certificate (RFC 5816), so that the certificate cannot be swapped;
4. the signature over the signed attributes holds;
5. the signer certificate chains, signature by signature, to one of the trust anchors;
6. every certificate of that chain was valid at the genTime (not now: a timestamp stays
   valid after its TSA certificate expires, which is the point of having one);
7. the TSA certificate's extendedKeyUsage is critical and is exactly timeStamping
   (RFC 3161 section 2.3), and its keyUsage, if any, allows signatures.

Our own code (asn1crypto + cryptography) runs every check, so that each failure says what is
wrong. When ``rfc3161-client`` can parse the token and the chain needs nothing from outside it,
its verifier runs as well, as an independent second opinion; it cannot parse tokens whose
certificate SET is not DER-sorted (OpenSSL's own TSA writes such tokens), which our code reads.
8. with CRLs given, no certificate of the chain was revoked by its issuer's CRL at the
   genTime, and none was revoked for key (or CA) compromise at any time, since the token's
   time is then worthless. A CRL counts only if its issuer's key signed it; one that covers
   no certificate of the chain, or was issued before the genTime, cannot show the status
   at that time, which the result's ``revocation`` says. OCSP is not asked: see
   docs/timestamps.md.
"""

from __future__ import annotations

import contextlib
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

from asn1crypto import algos, cms, core, parser, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID

from evidence_store.errors import EvidenceError

#: The hash our digests use (snapshot ids are SHA-256 of the manifest bytes).
DIGEST_ALGORITHM = "sha256"
#: Longest certificate chain we follow from the TSA certificate to a trust anchor.
MAX_CHAIN_LENGTH = 8

_TST_INFO_OID = "1.2.840.113549.1.9.16.1.4"
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha224": hashes.SHA224,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
    "sha3_256": hashes.SHA3_256,
    "sha3_384": hashes.SHA3_384,
    "sha3_512": hashes.SHA3_512,
}
#: Hashes too weak to protect a signature over the TSTInfo (SHA-1 stays readable in ESS
#: certificate ids, where it only names a certificate that the signature already binds).
_WEAK_SIGNATURE_HASHES = {"sha1"}
#: Critical certificate extensions this module understands; any other critical one fails
#: the chain, as RFC 5280 section 4.2 requires.
_HANDLED_CRITICAL = {
    ExtensionOID.BASIC_CONSTRAINTS,
    ExtensionOID.KEY_USAGE,
    ExtensionOID.EXTENDED_KEY_USAGE,
    ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
    ExtensionOID.ISSUER_ALTERNATIVE_NAME,
    ExtensionOID.CERTIFICATE_POLICIES,
    ExtensionOID.SUBJECT_KEY_IDENTIFIER,
    ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
}

OUR_VERIFIER = "dsa-evidence"
RFC3161_CLIENT_VERIFIER = "rfc3161-client"


class TimestampError(EvidenceError):
    """No usable timestamp: every TSA failed, or a token is unusable.

    ``failures`` lists (TSA URL, reason) when the error comes from asking TSAs.
    """

    def __init__(self, message: str, failures: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        self.failures = tuple(failures)


class TimestampVerificationError(TimestampError):
    """A timestamp token does not prove what it should; the message says why."""


class TimestampRefused(TimestampVerificationError):
    """The TSA answered with a status other than granted (the message names it)."""


@dataclass(frozen=True)
class TokenInfo:
    """What a token says (from its TSTInfo and certificates), before any check of who says it."""

    token_der: bytes
    """The TimeStampToken: a DER CMS ContentInfo (``openssl ts -verify -token_in``)."""
    response_der: bytes | None
    """The TimeStampResp the token came in (an ``.tsr`` file), when that was what was read."""
    gen_time: datetime
    serial_number: int
    policy: str
    hash_algorithm: str
    message_imprint: bytes
    nonce: int | None
    accuracy: timedelta | None
    tsa_name: str | None
    certificates: tuple[bytes, ...]
    """DER certificates the token carries (the TSA's chain when the request set certReq)."""
    tsa_certificate: bytes | None
    """The signer's certificate (DER), if the token carries it."""
    qualified_claim: bool = False
    """The token says it is a qualified electronic time-stamp under eIDAS (ETSI EN 319 422
    esi4-qtstStatement-1). A claim, signed by the TSA: whether the TSA really is a qualified
    one is for the EU Trusted List to say."""


@dataclass(frozen=True)
class VerifiedTimestamp:
    """A token that passed :func:`verify_token`, and what it was checked against."""

    info: TokenInfo
    tsa_subject: str
    """RFC 4514 subject of the TSA (signer) certificate."""
    chain: tuple[bytes, ...]
    """DER certificates from the TSA certificate to the trust anchor, both included."""
    trust_anchor_subject: str
    checked_by: tuple[str, ...]
    """The verifiers that accepted the token: ours always, ``rfc3161-client`` when it could."""
    notes: tuple[str, ...] = ()
    """Why a second verifier did not run, and similar remarks for the record."""
    revocation: tuple[str, ...] = ()
    """What the CRLs said of each certificate of the chain (empty when none were given)."""
    revocation_unknown: tuple[str, ...] = ()
    """The certificates of the chain whose revocation status at the genTime no CRL showed
    (no CRL of their issuer, or only CRLs older than the token): not checked, not failed."""

    @property
    def gen_time(self) -> datetime:
        return self.info.gen_time

    @property
    def serial_number(self) -> int:
        return self.info.serial_number


@dataclass(frozen=True)
class _Parsed:
    info: TokenInfo
    signed_data: cms.SignedData
    signer_info: cms.SignerInfo
    tst_der: bytes
    signed_attrs_der: bytes = b""  # the SignerInfo's signedAttrs as received ([0] IMPLICIT)


#: id-pe-qcStatements (RFC 3739), and the statement of ETSI EN 319 422 (clause 9.1, Annex B)
#: by which a TSA declares a token a qualified electronic time-stamp.
QC_STATEMENTS_OID = "1.3.6.1.5.5.7.1.3"
QTST_STATEMENT_OID = "0.4.0.19422.1.1"


class _QcStatement(core.Sequence):
    _fields: ClassVar[list[Any]] = [
        ("statement_id", core.ObjectIdentifier),
        ("statement_info", core.Any, {"optional": True}),
    ]


class _QcStatements(core.SequenceOf):
    _child_spec = _QcStatement


def _claims_qualified(tst_info: tsp.TSTInfo) -> bool:
    extensions = tst_info["extensions"]
    if extensions.native is None:
        return False
    for extension in extensions:
        if extension["extn_id"].dotted != QC_STATEMENTS_OID:
            continue
        try:
            statements = _QcStatements.load(extension["extn_value"].native, strict=True)
            ids = [statement["statement_id"].dotted for statement in statements]
        except (ValueError, TypeError) as exc:
            raise TimestampVerificationError(
                f"the token's qcStatements extension is malformed: {exc}"
            ) from None
        if QTST_STATEMENT_OID in ids:
            return True
    return False


# --------------------------------------------------------------------------------------------
# Certificates
# --------------------------------------------------------------------------------------------


def load_certificates(data: bytes) -> list[x509.Certificate]:
    """Certificates from PEM (one or many, as in a CA bundle) or from one DER certificate."""
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificates(data)
        return [x509.load_der_x509_certificate(data)]
    except (ValueError, x509.InvalidVersion) as exc:
        raise TimestampVerificationError(f"cannot read a certificate: {exc}") from None


def _load_all(items: Iterable[bytes]) -> list[x509.Certificate]:
    found: list[x509.Certificate] = []
    for item in items:
        for cert in load_certificates(item):
            if cert not in found:
                found.append(cert)
    return found


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _subject(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string()


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------


def _status_text(status_info: tsp.PKIStatusInfo) -> str:
    status = status_info["status"].native
    parts = [f"status {status}"]
    fail_info = status_info["fail_info"].native
    if fail_info:
        parts.append("failInfo " + ", ".join(sorted(str(bit) for bit in fail_info)))
    text = status_info["status_string"].native
    if text:
        parts.append("text " + repr("; ".join(text)))
    return ", ".join(parts)


def _children(data: bytes) -> list[bytes]:
    """The DER elements inside one outer SEQUENCE (which must span all of ``data``)."""
    class_, method, tag, _header, contents, _trailer = parser.parse(data, strict=True)
    if (class_, method, tag) != (0, 1, 16):
        raise ValueError("the outer element is not a SEQUENCE")
    children = []
    position = 0
    while position < len(contents):
        length = parser.peek(contents[position:])
        children.append(contents[position : position + length])
        position += length
    return children


def _split_response(data: bytes) -> tuple[bytes, bytes | None]:
    """(token DER, response DER or None) from a TimeStampResp or a bare TimeStampToken."""
    try:
        children = _children(data)
    except (ValueError, TypeError) as exc:
        raise TimestampVerificationError(
            f"not a DER timestamp token or response ({len(data)} bytes): {exc}"
        ) from None
    # A ContentInfo starts with its content type (an OID); a TimeStampResp with its status
    # (a SEQUENCE).
    if children and children[0][:1] == b"\x06":
        return data, None
    if not children or children[0][:1] != b"\x30":
        raise TimestampVerificationError("not a timestamp token or response: unexpected content")
    try:
        status_info = tsp.PKIStatusInfo.load(children[0], strict=True)
        status = status_info["status"].native
    except (ValueError, TypeError) as exc:
        raise TimestampVerificationError(
            f"not a timestamp response: its status cannot be read: {exc}"
        ) from None
    if status not in ("granted", "granted_with_mods"):
        raise TimestampRefused(f"the TSA refused: {_status_text(status_info)}")
    if len(children) < 2:
        raise TimestampVerificationError(
            f"the response says {status} but carries no timestamp token"
        )
    return children[1], data


def _parse(data: bytes) -> _Parsed:
    token_der, response_der = _split_response(data)
    try:
        content_info = cms.ContentInfo.load(token_der, strict=True)
        if content_info["content_type"].native != "signed_data":
            raise TimestampVerificationError(
                f"the token is CMS {content_info['content_type'].native}, not signed_data"
            )
        signed_data: cms.SignedData = content_info["content"]
        encap = signed_data["encap_content_info"]
        if encap["content_type"].dotted != _TST_INFO_OID:
            raise TimestampVerificationError(
                f"the token signs {encap['content_type'].native}, not a TSTInfo"
            )
        tst_der = encap["content"].contents
        tst_info = tsp.TSTInfo.load(tst_der, strict=True)
        fields = tst_info.native  # parses every field now, so malformed ones fail here
        signer_infos = signed_data["signer_infos"]
        if len(signer_infos) != 1:
            raise TimestampVerificationError(
                f"the token has {len(signer_infos)} signers; a TSA token has exactly one"
            )
        signer_info = signer_infos[0]
        # Taken before anything is parsed: these are the bytes as received. Once the
        # attributes have been read, asn1crypto's dump() re-encodes them (slowly, and a
        # re-encoding is not what the TSA signed).
        signed_attrs_der = signer_info["signed_attrs"].dump()
        signer_info.native  # noqa: B018 - parses the signer info now, as above
        certificates = tuple(
            choice.chosen.dump()
            for choice in signed_data["certificates"]
            if choice.name == "certificate"
        )
        signer_certificate = _find_signer(
            [asn1_x509.Certificate.load(c) for c in certificates], signer_info
        )
        policy = tst_info["policy"].dotted
    except TimestampVerificationError:
        raise
    except (ValueError, TypeError, KeyError) as exc:
        raise TimestampVerificationError(f"the timestamp token is malformed: {exc}") from None
    if fields["version"] != "v1":
        raise TimestampVerificationError(f"TSTInfo version {fields['version']} is not v1")
    accuracy = fields["accuracy"]
    tsa_name = None
    if tst_info["tsa"].native is not None:
        general_name = tst_info["tsa"]
        tsa_name = (
            general_name.chosen.human_friendly
            if general_name.name == "directory_name"
            else str(general_name.native)
        )
    gen_time = fields["gen_time"]
    if gen_time.tzinfo is None:
        raise TimestampVerificationError("the token's genTime has no time zone")
    info = TokenInfo(
        token_der=token_der,
        response_der=response_der,
        gen_time=gen_time.astimezone(UTC),
        serial_number=fields["serial_number"],
        policy=policy,
        hash_algorithm=fields["message_imprint"]["hash_algorithm"]["algorithm"],
        message_imprint=fields["message_imprint"]["hashed_message"],
        nonce=fields["nonce"],
        accuracy=None
        if accuracy is None
        else timedelta(
            seconds=accuracy.get("seconds") or 0,
            milliseconds=accuracy.get("millis") or 0,
            microseconds=accuracy.get("micros") or 0,
        ),
        tsa_name=tsa_name,
        certificates=certificates,
        tsa_certificate=signer_certificate,
        qualified_claim=_claims_qualified(tst_info),
    )
    return _Parsed(
        info=info,
        signed_data=signed_data,
        signer_info=signer_info,
        tst_der=tst_der,
        signed_attrs_der=signed_attrs_der,
    )


def parse_token(data: bytes) -> TokenInfo:
    """Read a TimeStampResp (``.tsr``) or a bare TimeStampToken without checking it.

    Raises :class:`TimestampVerificationError` if the bytes are neither, or if the response's
    status is not ``granted``/``granted_with_mods`` (the message names the status, failInfo
    and text).
    """
    return _parse(data).info


def _same_name(left: asn1_x509.Name, right: asn1_x509.Name) -> bool:
    # The same encoding is the same name; only names encoded differently need RFC 5280's
    # normalised comparison, which asn1crypto does in pure Python (several ms per pair).
    return left.dump() == right.dump() or left == right


def _find_signer(
    candidates: Sequence[asn1_x509.Certificate], signer_info: cms.SignerInfo
) -> bytes | None:
    sid = signer_info["sid"]
    for cert in candidates:
        if sid.name == "issuer_and_serial_number":
            # The serial first: comparing names (RFC 5280's normalised comparison, in pure
            # Python) cost 6 ms per certificate, and every other certificate differs in serial.
            if cert.serial_number == sid.chosen["serial_number"].native and _same_name(
                cert.issuer, sid.chosen["issuer"]
            ):
                return cert.dump()
        elif cert.key_identifier is not None and cert.key_identifier == sid.chosen.native:
            return cert.dump()
    return None


# --------------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------------


def _hash(name: str, data: bytes) -> bytes:
    if name not in _HASHES:
        raise TimestampVerificationError(f"unsupported digest algorithm {name}")
    digest = hashes.Hash(_HASHES[name]())
    digest.update(data)
    return digest.finalize()


def _check_imprint(info: TokenInfo, digest: bytes) -> None:
    if info.hash_algorithm != DIGEST_ALGORITHM:
        raise TimestampVerificationError(
            f"message imprint does not match: the token covers a {info.hash_algorithm} digest, "
            f"expected {DIGEST_ALGORITHM}"
        )
    if info.message_imprint != digest:
        raise TimestampVerificationError(
            f"message imprint does not match: the token covers sha256:"
            f"{info.message_imprint.hex()}, expected sha256:{digest.hex()}"
        )


def _single_attribute(attrs: cms.CMSAttributes, name: str) -> Any | None:
    found = [attr for attr in attrs if attr["type"].native == name]
    if not found:
        return None
    if len(found) > 1 or len(found[0]["values"]) != 1:
        raise TimestampVerificationError(f"the signed attribute {name} appears more than once")
    return found[0]["values"][0]


def _check_signed_attributes(parsed: _Parsed, signer: x509.Certificate) -> None:
    signer_info = parsed.signer_info
    attrs = signer_info["signed_attrs"]
    if not attrs.native:
        raise TimestampVerificationError(
            "the token has no signed attributes, so its signature does not cover a TSTInfo"
        )
    content_type = _single_attribute(attrs, "content_type")
    if content_type is None or content_type.dotted != _TST_INFO_OID:
        raise TimestampVerificationError("the signed contentType attribute is not id-ct-TSTInfo")
    message_digest = _single_attribute(attrs, "message_digest")
    if message_digest is None:
        raise TimestampVerificationError("the token has no signed messageDigest attribute")
    digest_algorithm = signer_info["digest_algorithm"]["algorithm"].native
    listed = {item["algorithm"].native for item in parsed.signed_data["digest_algorithms"]}
    if digest_algorithm not in listed:
        raise TimestampVerificationError(
            f"the signer's digest algorithm {digest_algorithm} is not among the SignedData's "
            "digestAlgorithms"
        )
    if digest_algorithm in _WEAK_SIGNATURE_HASHES:
        raise TimestampVerificationError(f"the token is signed over {digest_algorithm}: too weak")
    if message_digest.native != _hash(digest_algorithm, parsed.tst_der):
        raise TimestampVerificationError(
            "signature invalid: the signed messageDigest does not match the TSTInfo "
            "(the token was altered after signing)"
        )
    _check_ess_certificate_id(attrs, signer)


def _check_ess_certificate_id(attrs: cms.CMSAttributes, signer: x509.Certificate) -> None:
    signer_der = _der(signer)
    v2 = _single_attribute(attrs, "signing_certificate_v2")
    v1 = _single_attribute(attrs, "signing_certificate")
    if v2 is not None:
        cert_id = v2["certs"][0]
        algorithm = cert_id["hash_algorithm"]["algorithm"].native
        label = "signingCertificateV2"
    elif v1 is not None:
        cert_id = v1["certs"][0]
        algorithm = "sha1"
        label = "signingCertificate"
    else:
        raise TimestampVerificationError(
            "the token has no signingCertificate(V2) attribute binding the TSA certificate"
        )
    if cert_id["cert_hash"].native != _hash(algorithm, signer_der):
        raise TimestampVerificationError(
            f"{label} does not identify the signer certificate {_subject(signer)}"
        )
    issuer_serial = cert_id["issuer_serial"]
    if issuer_serial.native is not None:
        signer_asn1 = asn1_x509.Certificate.load(signer_der)
        names = [name.chosen for name in issuer_serial["issuer"] if name.name == "directory_name"]
        if issuer_serial["serial_number"].native != signer.serial_number or not any(
            _same_name(signer_asn1.issuer, name) for name in names
        ):
            raise TimestampVerificationError(
                f"{label} names another issuer/serial than the signer certificate"
            )


def _verify_signature(
    key: Any,
    signature_algorithm: algos.SignedDigestAlgorithm,
    hash_name: str,
    signature: bytes,
    data: bytes,
) -> None:
    """Raise InvalidSignature (or TimestampVerificationError for what we cannot check)."""
    algorithm = signature_algorithm.signature_algo
    if algorithm in ("ed25519", "ed448"):
        if not isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
            raise InvalidSignature
        key.verify(signature, data)
        return
    # Plain rsaEncryption names no hash: the SignerInfo's digestAlgorithm applies.
    with contextlib.suppress(ValueError):
        hash_name = signature_algorithm.hash_algo
    if hash_name in _WEAK_SIGNATURE_HASHES or hash_name not in _HASHES:
        raise TimestampVerificationError(f"unsupported or weak signature hash {hash_name}")
    hash_algorithm = _HASHES[hash_name]()
    if algorithm == "rsassa_pkcs1v15" and isinstance(key, rsa.RSAPublicKey):
        key.verify(signature, data, padding.PKCS1v15(), hash_algorithm)
    elif algorithm == "rsassa_pss" and isinstance(key, rsa.RSAPublicKey):
        params = signature_algorithm["parameters"]
        pss_hash = _HASHES[params["hash_algorithm"]["algorithm"].native]()
        mgf_hash = _HASHES[params["mask_gen_algorithm"]["parameters"]["algorithm"].native]()
        key.verify(
            signature,
            data,
            padding.PSS(mgf=padding.MGF1(mgf_hash), salt_length=params["salt_length"].native),
            pss_hash,
        )
    elif algorithm == "ecdsa" and isinstance(key, ec.EllipticCurvePublicKey):
        key.verify(signature, data, ec.ECDSA(hash_algorithm))
    elif algorithm == "dsa" and isinstance(key, dsa.DSAPublicKey):
        key.verify(signature, data, hash_algorithm)
    else:
        raise InvalidSignature


def _check_signature(parsed: _Parsed, signer: x509.Certificate) -> None:
    signer_info = parsed.signer_info
    # The signature covers the signed attributes as a DER SET OF (tag 0x31), not with the
    # [0] IMPLICIT tag they carry inside the SignerInfo (RFC 5652 section 5.4). The bytes as
    # received are used, so that a re-encoding cannot make an altered token verify.
    signed_bytes = b"\x31" + parsed.signed_attrs_der[1:]
    try:
        _verify_signature(
            signer.public_key(),
            signer_info["signature_algorithm"],
            signer_info["digest_algorithm"]["algorithm"].native,
            signer_info["signature"].native,
            signed_bytes,
        )
    except (InvalidSignature, ValueError, UnsupportedAlgorithm):
        raise TimestampVerificationError(
            f"signature invalid: the token's signature does not verify with the key of "
            f"{_subject(signer)}"
        ) from None


def _issued(child: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        child.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def _same_key(left: x509.Certificate, right: x509.Certificate) -> bool:
    form = serialization.PublicFormat.SubjectPublicKeyInfo
    return left.public_key().public_bytes(
        serialization.Encoding.DER, form
    ) == right.public_key().public_bytes(serialization.Encoding.DER, form)


def _anchor_for(
    cert: x509.Certificate, anchors: Sequence[x509.Certificate]
) -> x509.Certificate | None:
    # An anchor may be the CA or the TSA certificate itself (the EU Trusted Lists name
    # either); a re-issued anchor with the same name and key counts as the same anchor.
    for anchor in anchors:
        if anchor == cert or (anchor.subject == cert.subject and _same_key(anchor, cert)):
            return anchor
    return None


def _build_chain(
    signer: x509.Certificate,
    pool: Sequence[x509.Certificate],
    anchors: Sequence[x509.Certificate],
) -> list[x509.Certificate]:
    """[signer, ..., anchor], each certificate's signature checked against the next one."""
    chain = [signer]
    current = signer
    while len(chain) <= MAX_CHAIN_LENGTH:
        anchor = _anchor_for(current, anchors)
        if anchor is not None:
            if len(chain) > 1:
                chain[-1] = anchor  # the configured anchor is what is trusted
            return chain
        issuer = next((a for a in anchors if _issued(current, a)), None)
        if issuer is not None:
            chain.append(issuer)
            return chain
        issuer = next((c for c in pool if c not in chain and _issued(current, c)), None)
        if issuer is None:
            break
        chain.append(issuer)
        current = issuer
    raise TimestampVerificationError(
        f"not signed by a trusted TSA: the TSA certificate {_subject(signer)} (issued by "
        f"{signer.issuer.rfc4514_string()}) does not chain to any of the {len(anchors)} "
        f"trust anchor(s)"
    )


def _check_validity(chain: Sequence[x509.Certificate], gen_time: datetime) -> None:
    for position, cert in enumerate(chain):
        what = "TSA certificate" if position == 0 else f"CA certificate {_subject(cert)}"
        not_before = cert.not_valid_before_utc
        not_after = cert.not_valid_after_utc
        if gen_time > not_after:
            raise TimestampVerificationError(
                f"{what} expired at {_utc(not_after)}, before the token's genTime {_utc(gen_time)}"
            )
        if gen_time < not_before:
            raise TimestampVerificationError(
                f"{what} was not yet valid at the token's genTime {_utc(gen_time)} "
                f"(valid from {_utc(not_before)})"
            )


def load_crls(data: bytes) -> list[x509.CertificateRevocationList]:
    """CRLs from PEM (one or many) or from one DER CRL."""
    try:
        if b"-----BEGIN X509 CRL-----" in data:
            blocks = data.split(b"-----END X509 CRL-----")[:-1]
            return [x509.load_pem_x509_crl(block + b"-----END X509 CRL-----\n") for block in blocks]
        return [x509.load_der_x509_crl(data)]
    except ValueError as exc:
        raise TimestampVerificationError(f"not a CRL (PEM or DER): {exc}") from None


_COMPROMISE = {x509.ReasonFlags.key_compromise, x509.ReasonFlags.ca_compromise}


def _revocation_reason(entry: x509.RevokedCertificate) -> x509.ReasonFlags | None:
    with contextlib.suppress(x509.ExtensionNotFound):
        return entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    return None


def _check_revocation(
    chain: Sequence[x509.Certificate],
    gen_time: datetime,
    crls: Sequence[x509.CertificateRevocationList],
    existed_by: datetime | None = None,
) -> tuple[list[str], list[str]]:
    """Raise if the CRLs revoke a certificate of the chain for this token; else say what they
    showed, certificate by certificate (the anchor at the end is trusted as configured), and
    which certificates' status they could not show.

    ``existed_by``: when a valid renewal timestamp shows the token existed at that time, a
    key compromise reported for a later time does not touch it.
    """
    said: list[str] = []
    unknown: list[str] = []
    for position, cert in enumerate(chain[:-1]):
        what = "TSA certificate" if position == 0 else f"CA certificate {_subject(cert)}"
        issuer = chain[position + 1]
        relevant = [crl for crl in crls if crl.issuer == cert.issuer]
        for crl in relevant:
            if not crl.is_signature_valid(issuer.public_key()):  # type: ignore[arg-type]
                raise TimestampVerificationError(
                    f"a CRL naming {crl.issuer.rfc4514_string()} as issuer is not signed by "
                    f"that issuer's key: a forged or damaged CRL"
                )
        for crl in relevant:
            entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
            if entry is None:
                continue
            when = entry.revocation_date_utc
            reason = _revocation_reason(entry)
            named = f" ({reason.name})" if reason is not None else ""
            if reason in _COMPROMISE:
                if existed_by is None or existed_by >= when:
                    raise TimestampVerificationError(
                        f"{what} was revoked at {_utc(when)}{named}: after a key compromise no "
                        f"token under it can be trusted, whatever its genTime"
                    )
                said.append(
                    f"{what}: revoked at {_utc(when)}{named}, but a renewal shows the token "
                    f"existed at {_utc(existed_by)}: stands"
                )
                break
            if when <= gen_time:
                raise TimestampVerificationError(
                    f"{what} was revoked at {_utc(when)}{named}, before the token's genTime "
                    f"{_utc(gen_time)}"
                )
            said.append(f"{what}: revoked at {_utc(when)}{named}, after the genTime: stands")
            break
        else:
            covering = [crl for crl in relevant if crl.last_update_utc >= gen_time]
            if covering:
                newest = max(c.last_update_utc for c in covering)
                said.append(f"{what}: not revoked (CRL of {_utc(newest)})")
            elif relevant:
                newest = max(c.last_update_utc for c in relevant)
                said.append(
                    f"{what}: status at the genTime unknown: the newest CRL ({_utc(newest)}) "
                    "is older than the token"
                )
                unknown.append(said[-1])
            else:
                said.append(f"{what}: status unknown: no CRL of {cert.issuer.rfc4514_string()}")
                unknown.append(said[-1])
    return said, unknown


def _extension(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> x509.Extension[Any] | None:
    try:
        return cert.extensions.get_extension_for_oid(oid)
    except x509.ExtensionNotFound:
        return None


def _check_ca_constraints(chain: Sequence[x509.Certificate]) -> None:
    for position, cert in enumerate(chain):
        for extension in cert.extensions:
            if extension.critical and extension.oid not in _HANDLED_CRITICAL:
                raise TimestampVerificationError(
                    f"certificate {_subject(cert)} has a critical extension "
                    f"{extension.oid.dotted_string} this verifier does not handle"
                )
        if position == 0:
            continue
        basic = _extension(cert, ExtensionOID.BASIC_CONSTRAINTS)
        if basic is None or not basic.value.ca:
            raise TimestampVerificationError(
                f"not signed by a trusted TSA: {_subject(cert)} issued the chain's next "
                "certificate but is not a CA"
            )
        # Intermediate CAs below this one (the TSA certificate itself does not count).
        below = position - 1
        if basic.value.path_length is not None and below > basic.value.path_length:
            raise TimestampVerificationError(
                f"CA certificate {_subject(cert)} allows {basic.value.path_length} intermediate "
                f"CA(s) below it, the chain has {below}"
            )
        usage = _extension(cert, ExtensionOID.KEY_USAGE)
        if usage is not None and not usage.value.key_cert_sign:
            raise TimestampVerificationError(
                f"CA certificate {_subject(cert)} is not allowed to sign certificates"
            )


def _check_tsa_usage(cert: x509.Certificate) -> None:
    eku = _extension(cert, ExtensionOID.EXTENDED_KEY_USAGE)
    if eku is None or ExtendedKeyUsageOID.TIME_STAMPING not in eku.value:
        raise TimestampVerificationError(
            f"TSA certificate lacks the timeStamping extended key usage ({_subject(cert)})"
        )
    if not eku.critical:
        raise TimestampVerificationError(
            "TSA certificate's timeStamping extended key usage is not marked critical "
            "(RFC 3161 section 2.3)"
        )
    others = [oid.dotted_string for oid in eku.value if oid != ExtendedKeyUsageOID.TIME_STAMPING]
    if others:
        raise TimestampVerificationError(
            "TSA certificate's extended key usage is not timeStamping alone: also "
            + ", ".join(others)
        )
    usage = _extension(cert, ExtensionOID.KEY_USAGE)
    if usage is not None and not (usage.value.digital_signature or usage.value.content_commitment):
        raise TimestampVerificationError(
            "TSA certificate's keyUsage allows neither digitalSignature nor nonRepudiation"
        )


def _rfc3161_client_check(
    parsed: _Parsed, digest: bytes, anchors: Sequence[x509.Certificate]
) -> str | None:
    """Run rfc3161-client's verifier; None if it accepted, else why it did not run.

    Raises TimestampVerificationError if it rejects the token.
    """
    try:
        import rfc3161_client
    except ImportError:
        return "rfc3161-client is not installed"
    # A fresh 'granted' response around the token: the verifier only takes responses, and the
    # signed content (the token) is the same bytes whatever the status wrapper said.
    wrapper_body = b"\x30\x03\x02\x01\x00" + parsed.info.token_der
    wrapper = b"\x30" + _der_length(len(wrapper_body)) + wrapper_body
    try:
        response = rfc3161_client.decode_timestamp_response(wrapper)
    except ValueError as exc:
        return f"rfc3161-client cannot parse the token ({exc})"
    builder = rfc3161_client.VerifierBuilder()
    for anchor in anchors:
        builder = builder.add_root_certificate(anchor)
    try:
        builder.build().verify(response, digest)
    except (rfc3161_client.VerificationError, ValueError) as exc:
        raise TimestampVerificationError(f"rejected by rfc3161-client: {exc}") from None
    return None


def _der_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    raw = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def verify_token(
    token_der: bytes,
    digest: bytes,
    trust_anchors: Sequence[bytes],
    *,
    untrusted_chain: Sequence[bytes] | None = None,
    crls: Sequence[bytes | x509.CertificateRevocationList] = (),
    existed_by: datetime | None = None,
) -> VerifiedTimestamp:
    """Check that a TSA trusted through ``trust_anchors`` timestamped ``digest``.

    ``token_der`` is a TimeStampResp (``.tsr``) or a bare TimeStampToken; ``digest`` the
    32-byte SHA-256 the token should cover (for a snapshot, the snapshot id); ``trust_anchors``
    PEM (bundles allowed) or DER certificates of the CAs, or the TSA certificates themselves,
    that we trust to issue timestamps; ``untrusted_chain`` certificates that may complete the
    chain when the token does not carry them (they are checked, never trusted); ``crls`` PEM
    or DER CRLs, or CRLs loaded once with :func:`load_crls` when checking many tokens, to
    check the chain's revocation status against; ``existed_by`` the time by which a
    (verified) renewal timestamp shows the token existed.

    Raises :class:`TimestampVerificationError` naming the first check that failed.
    """
    if len(digest) != 32:
        raise ValueError(f"digest must be the 32-byte SHA-256, got {len(digest)} bytes")
    anchors = _load_all(trust_anchors)
    if not anchors:
        raise TimestampVerificationError("no trust anchors given: no TSA can be trusted")
    parsed = _parse(token_der)
    info = parsed.info
    _check_imprint(info, digest)

    try:
        in_token = _load_all(info.certificates)
        extra = _load_all(untrusted_chain or [])
        signer_der = _find_signer(
            [asn1_x509.Certificate.load(_der(c)) for c in [*in_token, *extra, *anchors]],
            parsed.signer_info,
        )
        if signer_der is None:
            raise TimestampVerificationError(
                "the TSA certificate is neither in the token nor in the chain given: request "
                "tokens with certReq, or pass the TSA certificate as untrusted_chain"
            )
        signer = x509.load_der_x509_certificate(signer_der)
        _check_signed_attributes(parsed, signer)
        _check_signature(parsed, signer)
        chain = _build_chain(signer, [*in_token, *extra], anchors)
        _check_validity(chain, info.gen_time)
        _check_ca_constraints(chain)
        _check_tsa_usage(signer)
        revocation: list[str] = []
        loaded = [
            crl for item in crls for crl in (load_crls(item) if isinstance(item, bytes) else [item])
        ]
        said, unknown = _check_revocation(chain, info.gen_time, loaded, existed_by)
        # Without any CRL nothing was said; what stays unknown is still recorded, so that a
        # caller can report the revocation check as not made.
        if crls:
            revocation = said
    except (ValueError, TypeError, x509.InvalidVersion) as exc:
        # cryptography parses certificate fields lazily; a damaged one fails here.
        raise TimestampVerificationError(
            f"a certificate in the token is malformed: {exc}"
        ) from None

    checked_by = [OUR_VERIFIER]
    notes: list[str] = []
    if chain[-1].subject != chain[-1].issuer:
        skipped = "rfc3161-client skipped: the trust anchor is not a self-signed root"
    elif any(cert not in in_token and cert not in anchors for cert in chain):
        skipped = "rfc3161-client skipped: the chain needs certificates from outside the token"
    else:
        skipped = _rfc3161_client_check(parsed, digest, anchors)
    if skipped is None:
        checked_by.append(RFC3161_CLIENT_VERIFIER)
    else:
        notes.append(skipped)
    return VerifiedTimestamp(
        info=info,
        tsa_subject=_subject(signer),
        chain=tuple(_der(cert) for cert in chain),
        trust_anchor_subject=_subject(chain[-1]),
        checked_by=tuple(checked_by),
        notes=tuple(notes),
        revocation=tuple(revocation),
        revocation_unknown=tuple(unknown),
    )


# --------------------------------------------------------------------------------------------
# The same check with openssl, for people
# --------------------------------------------------------------------------------------------


def openssl_verify_argv(
    token_file: str | Path,
    digest: bytes,
    ca_file: str | Path,
    *,
    untrusted_file: str | Path | None = None,
    token_only: bool = False,
    at_time: datetime | None = None,
    partial_chain: bool = False,
) -> list[str]:
    """The ``openssl ts -verify`` argument list that checks a token against a digest.

    ``token_file`` holds the TimeStampResp (``.tsr``), or the bare token with ``token_only``;
    ``ca_file`` the trust anchors (PEM); ``untrusted_file`` the TSA's chain when the token
    lacks it. ``at_time`` (normally the token's genTime) makes openssl judge certificate
    validity at that moment rather than now, which matters once the TSA certificate has
    expired. ``partial_chain`` lets ``ca_file`` hold a trust anchor that is not a self-signed
    root (an intermediate CA or the TSA certificate itself, as trusted lists name them).
    """
    if len(digest) != 32:
        raise ValueError(f"digest must be the 32-byte SHA-256, got {len(digest)} bytes")
    argv = ["openssl", "ts", "-verify", "-digest", digest.hex(), "-in", str(token_file)]
    if token_only:
        argv.append("-token_in")
    argv += ["-CAfile", str(ca_file)]
    if untrusted_file is not None:
        argv += ["-untrusted", str(untrusted_file)]
    if partial_chain:
        argv.append("-partial_chain")
    if at_time is not None:
        argv += ["-attime", str(int(at_time.timestamp()))]
    return argv


def openssl_verify_command(
    token_file: str | Path,
    digest: bytes,
    ca_file: str | Path,
    *,
    untrusted_file: str | Path | None = None,
    token_only: bool = False,
    at_time: datetime | None = None,
    partial_chain: bool = False,
) -> str:
    """:func:`openssl_verify_argv` as one shell-quoted line, to print in docs and exhibits.

    Success prints ``Verification: OK``.
    """
    return shlex.join(
        openssl_verify_argv(
            token_file,
            digest,
            ca_file,
            untrusted_file=untrusted_file,
            token_only=token_only,
            at_time=at_time,
            partial_chain=partial_chain,
        )
    )
