"""The metadata service: boot tokens in, sealed pilot configurations out.

    factory ─pilot.launched─▶ [metadata] on_launched: remember which instance each pilot got
    VM ─POST /v1/boot {token, instance_id, public_key}─▶ exchange():
         bootstrap.read (MAC) ─▶ logic.refusal ─▶ store.consume (single use)
         ─▶ 200 {"sealed": the context and the pilot's key, sealed to public_key}
         ─▶ 403 one-line reason, and a token.refused event

It holds the pool key (a service), so it checks tokens and derives each pilot's key
itself: the factory never hands a key to a cloud VM, and user data holds nothing that
works twice.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from dataclasses import dataclass

from opentelemetry import trace

from schemas.pilot import PilotLaunched
from schemas.token import TokenRefused
from services.runtime import bootstrap, credentials, sealing, security
from services.runtime.bus import Bus, Context, Subscription
from services.runtime.config import PoolConfig, Settings

from . import logic
from .server import MetadataServer
from .store import BootStore

log = logging.getLogger("burst.metadata")

PURGE_EVERY_S = 600.0


@dataclass(frozen=True)
class Answer:
    status: int  # 200, 400 (not a boot request), 403 (refused)
    body: bytes
    content_type: str = "text/plain; charset=utf-8"

    @classmethod
    def text(cls, status: int, line: str) -> Answer:
        return cls(status, (line + "\n").encode())


class MetadataBroker:
    """The service object `services.runtime.service.run` drives."""

    def __init__(self, settings: Settings, pool: PoolConfig, bus: Bus, server: MetadataServer,
                 store: BootStore | None = None, clock=time.time):
        if bus.verifier is None:
            raise security.AuthError("the metadata service needs the pool key")
        self.settings, self.pool, self.bus, self.server = settings, pool, bus, server
        self.pool_key = bus.verifier.pool_key
        self.entries = {e.name: e for e in pool.entries}
        self.store = store or BootStore(settings.path("metadata", "boot.sqlite"))
        self.clock = clock
        server.broker = self
        # Serve and say where before run() writes the pid file: once `burst up -d` sees the
        # pid, factories find the URL and it answers.
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                         name="metadata-http", daemon=True).start()
        bootstrap.write_location(settings, server.url)
        log.info("event=listening url=%s advertised=%s", server.url,
                 bootstrap.metadata_url(settings, pool.services))

    def subscriptions(self) -> list[Subscription]:
        return [Subscription("metadata", events={"pilot.launched": self.on_launched},
                             expires_s=3600.0)]

    def started(self) -> None:
        self.bus.call_every(PURGE_EVERY_S, lambda: self.store.purge(self.clock()))

    def stopping(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        bootstrap.remove_location(self.settings)
        self.store.close()

    # --- the bus ------------------------------------------------------------------------------

    def on_launched(self, msg: PilotLaunched, ctx: Context) -> None:
        """Bind the pilot to its instance: only that instance may exchange its token."""
        if msg.instance_id and msg.entry in self.entries:
            lifetime = self.pool.services.boot_token_lifetime_s
            self.store.launched(msg.pilot_id, msg.instance_id,
                                (msg.time or self.clock()) + lifetime + 60.0)

    # --- the exchange (HTTP threads) ----------------------------------------------------------

    def exchange(self, request: dict, peer: str) -> Answer:
        token, instance_id = request.get("token"), request.get("instance_id", "")
        public_key = request.get("public_key")
        if not isinstance(token, str) or not isinstance(instance_id, str) or \
                not isinstance(public_key, str):
            return Answer.text(400, "expected JSON {\"token\", \"instance_id\", \"public_key\"}")
        try:
            claims = bootstrap.read(self.pool_key, token)
        except bootstrap.TokenInvalid as exc:
            return self._refuse(bootstrap.peek(token), str(exc), instance_id, peer)
        trace.get_current_span().set_attribute("burst.pilot", claims.pilot_id)
        now = self.clock()
        reason = logic.refusal(claims, pool=self.settings.namespace, entries=set(self.entries),
                               now=now, instance_id=instance_id,
                               launched_instance=self.store.launched_instance(claims.pilot_id))
        if reason is not None:
            return self._refuse(vars(claims), reason, instance_id, peer)
        try:  # what could fail comes before the token is spent
            sealing.parse_public(public_key)
        except security.AuthError as exc:
            return Answer.text(400, f"public_key: {exc}")
        try:
            broker = credentials.setting(self.pool.services.pilot_amqp_url,
                                         self.pool.path.parent)
        except credentials.CredentialUnavailable as exc:
            log.error("event=pilot_broker_url_unavailable reason=%r", str(exc))
            return Answer.text(503, "the pilots' broker URL is unavailable; ask again later")
        if not self.store.consume(claims, instance_id, now):
            return self._refuse(vars(claims), logic.ALREADY_USED, instance_id, peer)
        context = logic.boot_context(
            self.entries[claims.entry], claims, settings=self.settings, pilot_amqp_url=broker,
            pilot_key=self.bus.verifier.key_for(security.pilot(claims.pilot_id)))
        box = sealing.seal(public_key, json.dumps(context).encode(), bootstrap.digest(token))
        log.info("event=boot_exchanged pilot=%s entry=%s instance=%s peer=%s", claims.pilot_id,
                 claims.entry, instance_id, peer)
        return Answer(200, json.dumps({"sealed": base64.b64encode(box).decode()}).encode(),
                      "application/json")

    def _refuse(self, claims: dict, reason: str, instance_id: str, peer: str) -> Answer:
        # What a forged token claims is the caller's text: keep it short and on one line.
        pilot_id, entry, instance_id = (_printable(claims.get("pilot_id")),
                                        _printable(claims.get("entry")), _printable(instance_id))
        log.warning("event=boot_refused pilot=%s entry=%s instance=%s peer=%s reason=%r",
                    pilot_id, entry, instance_id, peer, reason)
        self.bus.emit(TokenRefused(pilot_id=pilot_id, entry=entry, reason=reason,
                                   instance_id=instance_id, peer=peer, time=self.clock()))
        return Answer.text(403, f"refused: {reason}")


def _printable(value: object, limit: int = 200) -> str:
    return "".join(c for c in str(value or "")[:limit] if c.isprintable())
