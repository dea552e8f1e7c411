"""The official documents API for registered senders (state bodies).

* ``POST /api/v1/official/messages``: JSON ``{"recipient": "IIN…"|"BIN…", "subject",
  "filename", "document": <Base64>, "signature": <Base64 CMS, optional>, "text"}`` ->
  ``201 {"id", "state": "delivered", "evidence": [...]}``; no EDS-confirmed mailbox ->
  ``409 {"error": "no_confirmed_mailbox", "id", "evidence_url"}`` (send it on paper).
* ``GET /api/v1/official/messages/{id}/evidence``: the signed chain
  (``esam-evidence-chain/1``), the sender's own messages only.

A sender authenticates each request in one of two ways:

1. **HTTP Message Signatures** (RFC 9421, the ``http-message-signatures`` library):
   ``keyid`` is the sender's registered name, the key the one given to ``esam official
   sender add --public-key`` (Ed25519, ECDSA P-256/P-384 or RSA-PSS); the signature must
   cover ``@method``, ``@target-uri`` and, with a body, ``content-digest`` (RFC 9530), and
   be at most ``official.signature_max_skew`` seconds old.
2. **TLS client certificate**, checked by the TLS-terminating reverse proxy, which passes
   the certificate's SHA-256 fingerprint in the header named by
   ``official.client_cert_header`` (off by default).  Only configure it when the HTTP
   listener is reachable solely through that proxy and the proxy overwrites the header.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from types import SimpleNamespace
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from http_message_signatures import HTTPMessageVerifier, InvalidSignature, MappingKeyResolver, algorithms
from http_message_signatures.exceptions import HTTPMessageSignaturesException
from starlette.requests import Request
from starlette.responses import Response

from esam_mail.errors import AuthError, ValidationError
from esam_mail.services.official.channel import M_, OfficialError, SenderRecord
from esam_mail.web.server import Router, error_response, json_body, json_response, request_id

PREFIX = "/api/v1/official"


class SenderAuthFailed(AuthError):
    code = "sender_authentication_failed"
    public = "the request is not signed by a registered sender (HTTP Message Signatures or client certificate)"


def _algorithm(pem: str) -> Any:
    key = serialization.load_pem_public_key(pem.encode("ascii"))
    if isinstance(key, ed25519.Ed25519PublicKey):
        return algorithms.ED25519
    if isinstance(key, ec.EllipticCurvePublicKey):
        return algorithms.ECDSA_P384_SHA384 if key.curve.name == "secp384r1" else algorithms.ECDSA_P256_SHA256
    if isinstance(key, rsa.RSAPublicKey):
        return algorithms.RSA_PSS_SHA512
    raise ValueError("unsupported key")


async def authenticate(request: Request, official: Any, body: bytes | None) -> SenderRecord:
    """The registered sender of this request, or :class:`SenderAuthFailed`."""
    cfg = official.cfg
    if "signature-input" in request.headers:
        key_id = _key_id(request.headers["signature-input"])
        sender = await official.sender(name=key_id) if key_id else None
        if sender is None or not sender.public_key_pem:
            raise SenderAuthFailed()
        message = SimpleNamespace(method=request.method, url=str(request.url), headers=request.headers)
        try:
            verifier = HTTPMessageVerifier(
                signature_algorithm=_algorithm(sender.public_key_pem),
                key_resolver=MappingKeyResolver(public_keys={sender.name: sender.public_key_pem.encode()},
                                                private_keys={}),
            )
            required = ("@method", "@target-uri") + (("content-digest",) if body else ())
            verifier.verify(message, max_age=dt.timedelta(seconds=cfg.signature_max_skew),
                            require_components=required, body=body or None)
        except (InvalidSignature, HTTPMessageSignaturesException, ValueError, KeyError, TypeError):
            raise SenderAuthFailed() from None
        return sender
    header = cfg.client_cert_header
    if header and header.lower() in request.headers:
        fp = request.headers[header.lower()].replace(":", "").strip().lower()
        sender = await official.sender(fingerprint=fp)
        if sender is not None:
            return sender
    raise SenderAuthFailed()


def _key_id(signature_input: str) -> str | None:
    """``keyid`` of the (first) signature in a Signature-Input field, bounded."""
    text = signature_input[:4096]
    marker = 'keyid="'
    i = text.find(marker)
    if i < 0:
        return None
    j = text.find('"', i + len(marker))
    return text[i + len(marker):j] if j > 0 else None


def _b64(value: Any, field: str) -> bytes:
    if not isinstance(value, str):
        raise ValidationError(field, M_("Base64 text"))
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValidationError(field, M_("not Base64")) from None


def _text(data: dict[str, Any], field: str, *, required: bool = True) -> str:
    value = data.get(field, "")
    if not isinstance(value, str) or (required and not value.strip()):
        raise ValidationError(field, M_("required text"))
    return value


def register(router: Router, services: Any) -> None:
    official = services.extras.get("official")
    if official is None:
        return

    async def submit(request: Request) -> Response:
        body = await request.body()
        sender = await authenticate(request, official, body)
        data = await json_body(request)
        if not isinstance(data, dict):
            raise ValidationError("body", M_("a JSON object"))
        signature = _b64(data["signature"], "signature") if data.get("signature") else None
        try:
            sub = await official.submit(
                sender, recipient=_text(data, "recipient"), document=_b64(data.get("document"), "document"),
                filename=_text(data, "filename"), subject=_text(data, "subject"), signature=signature,
                text=_text(data, "text", required=False),
            )
        except OfficialError as exc:
            resp = error_response(exc, request_id(request))
            if exc.message_id:
                import json

                payload = json.loads(bytes(resp.body))
                payload.update(id=exc.message_id, evidence_url=f"{PREFIX}/messages/{exc.message_id}/evidence")
                return json_response(payload, resp.status_code)
            return resp
        return json_response({**sub.to_dict(), "evidence_url": f"{PREFIX}/messages/{sub.message_id}/evidence"},
                             201)

    async def evidence(request: Request) -> Response:
        sender = await authenticate(request, official, None)
        return json_response(await official.chain(request.path_params["id"], sender=sender))

    router.add("POST", f"{PREFIX}/messages", submit)
    router.add("GET", f"{PREFIX}/messages/{{id}}/evidence", evidence)
