"""The schema registry over HTTP (the Confluent API, which Apicurio serves under
/apis/ccompat/v7), and the codec a deployment's settings ask for.

    codec = codec_for(settings)   # single-object, or Confluent framing with the registry's ids

Every request has a bounded timeout; every failure is a SchemaRegistryError (a refused
incompatible schema, SchemaIncompatibleError), never a hang or another exception.
"""

from __future__ import annotations

import http.client
import json
import urllib.parse
from typing import Any

from codec import Codec
from codec.confluent import Framing, SchemaIncompatibleError, SchemaRegistryError
from foundation.http import request_json
from foundation.settings import Settings

REGISTRY_REQUEST_TIMEOUT_MS = 2_000  # looking up a schema id while decoding: a stalled registry stalls readers
REGISTRY_REGISTER_TIMEOUT_MS = 30_000  # registering at start (a cold registry compiles its checks on the first)
CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
HTTP_OK, HTTP_NOT_FOUND, HTTP_CONFLICT = 200, 404, 409
COMPATIBILITY_ATTEMPTS_MAX = 3  # a PUT /config that lost a race to create the rule is sent again


class RegistryClient:
    """The three calls the codec makes (codec.confluent.SchemaRegistry)."""

    def __init__(
        self,
        url: str,
        *,
        timeout_ms: int = REGISTRY_REQUEST_TIMEOUT_MS,
        register_timeout_ms: int = REGISTRY_REGISTER_TIMEOUT_MS,
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout_ms = timeout_ms
        self.register_timeout_ms = register_timeout_ms

    def set_compatibility(self, subject: str, level: str) -> None:
        """PUT /config/{subject}. Apicurio answers 409 ("A rule named 'COMPATIBILITY' already
        exists") to a PUT that raced another process's first one on the same subject (the
        processes of a deployment start together): the rule exists now, so a retry updates it."""
        for _attempt in range(COMPATIBILITY_ATTEMPTS_MAX):
            status, body = self._request(
                "PUT", f"/config/{_quoted(subject)}", {"compatibility": level}, timeout_ms=self.register_timeout_ms
            )
            if status != HTTP_CONFLICT:
                break
        if status != HTTP_OK:
            raise SchemaRegistryError(f"setting {level} on {subject}: HTTP {status} {body}")

    def register(self, subject: str, schema: dict[str, Any]) -> int:
        status, body = self._request(
            "POST",
            f"/subjects/{_quoted(subject)}/versions",
            {"schema": json.dumps(schema), "schemaType": "AVRO"},
            timeout_ms=self.register_timeout_ms,
        )
        if status == HTTP_CONFLICT:
            raise SchemaIncompatibleError(f"{subject}: {_message(body)}")
        if status != HTTP_OK or not isinstance(body, dict) or type(body.get("id")) is not int:
            raise SchemaRegistryError(f"registering {subject}: HTTP {status} {body}")
        schema_id: int = body["id"]
        return schema_id

    def schema_by_id(self, schema_id: int) -> dict[str, Any] | None:
        status, body = self._request("GET", f"/schemas/ids/{schema_id}", timeout_ms=self.timeout_ms)
        if status == HTTP_NOT_FOUND:
            return None
        if status != HTTP_OK or not isinstance(body, dict) or not isinstance(body.get("schema"), str):
            raise SchemaRegistryError(f"schema id {schema_id}: HTTP {status} {body}")
        if body.get("schemaType", "AVRO") != "AVRO":
            return None  # a Protobuf or JSON schema: no Avro record of ours has it
        try:
            schema: Any = json.loads(body["schema"])
        except ValueError as error:
            raise SchemaRegistryError(f"schema id {schema_id}: not a JSON schema: {error}") from error
        return schema if isinstance(schema, dict) else {"type": schema}

    def _request(self, method: str, path: str, body: Any = None, *, timeout_ms: int) -> tuple[int, Any]:
        try:
            return request_json(
                method,
                self.url + path,
                body=body,
                timeout_s=timeout_ms / 1000,
                headers={"Content-Type": CONTENT_TYPE, "Accept": CONTENT_TYPE},
            )
        except (OSError, http.client.HTTPException) as error:  # URLError, refused, reset, timed out, garbage
            raise SchemaRegistryError(f"the schema registry at {self.url} did not answer: {error}") from error


def _quoted(subject: str) -> str:
    return urllib.parse.quote(subject, safe="")


def _message(body: Any) -> str:
    return str(body.get("message", body)) if isinstance(body, dict) else str(body)


def codec_for(settings: Settings) -> Codec:
    """The codec of a process of this deployment: it writes the framing `avro_framing` names
    (registering the public schemas first if that is "confluent") and reads both."""
    try:
        framing = Framing(settings.avro_framing)
    except ValueError:
        choices = ", ".join(repr(framing.value) for framing in Framing)
        raise ValueError(f"STREAMWALLET_AVRO_FRAMING={settings.avro_framing!r}: choose one of {choices}") from None
    if framing is Framing.CONFLUENT and not settings.schema_registry_url:
        raise ValueError("STREAMWALLET_AVRO_FRAMING=confluent needs STREAMWALLET_SCHEMA_REGISTRY_URL")
    registry = RegistryClient(settings.schema_registry_url) if settings.schema_registry_url else None
    return Codec(framing=framing, registry=registry)
