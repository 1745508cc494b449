"""AMQP content headers (basic properties) on the bus's hot path, in pika's own bytes.

    publish: Properties(...).encode()  ──▶ the same bytes as pika.BasicProperties.encode()
    deliver: decode_frame(buffer)      ──▶ Basic.Deliver, header, body here; the rest by pika

Every message the bus sends carries content type, type, message id, timestamp,
delivery mode and a table of two or three headers. pika encodes and decodes
them with generic code, one function call and one struct call per field and
per table entry: a few microseconds a message on each side, as much as the
rest of the bus's own work. Here the usual cases (string and integer table
values, one flag word) take a short path; anything else goes to pika's code,
so the result, and any error, is pika's. tests/unit/test_wire.py checks the
bytes and the decoded values against pika.
"""

from __future__ import annotations

import struct
from typing import Any

from pika import data, frame, spec
from pika.compat import long
from pika.spec import BasicProperties

_PACK_LENGTH = struct.Struct(">I").pack
_PACK_INT = struct.Struct(">i").pack
_PACK_FLAGS = struct.Struct(">H").pack
_PACK_TIMESTAMP = struct.Struct(">Q").pack
_UNPACK_FRAME = struct.Struct(">BHL").unpack_from
_UNPACK_CONTENT_HEADER = struct.Struct(">HHQ").unpack_from
_UNPACK_FLAGS = struct.Struct(">H").unpack_from
_UNPACK_LENGTH = struct.Struct(">I").unpack_from
_UNPACK_TIMESTAMP = struct.Struct(">Q").unpack_from  # also a delivery tag: unsigned 64
_UNPACK_LONG = struct.Struct(">q").unpack_from
_UNPACK_INT = struct.Struct(">i").unpack_from
_OCTETS = [bytes((i,)) for i in range(256)]
_SHORT_CACHE_MAX = 1024

F = BasicProperties
_RARE = (F.FLAG_CONTENT_ENCODING | F.FLAG_PRIORITY | F.FLAG_USER_ID | F.FLAG_APP_ID
         | F.FLAG_CLUSTER_ID | 1)  # 1: a second flag word follows


_OURS = (spec.FRAME_METHOD, spec.FRAME_HEADER, spec.FRAME_BODY)
_HEAD = spec.FRAME_HEADER_SIZE  # type, channel, size
_DELIVER = spec.Basic.Deliver.INDEX


class _Unusual(Exception):
    """Not a case the short path handles: let pika do it (and raise what it raises)."""


# --- encoding -----------------------------------------------------------------------------------


class Properties(BasicProperties):
    """pika.BasicProperties whose encode() takes the short path when it can."""

    def encode(self) -> list[bytes]:
        try:
            return [self._encode_usual()]
        except _Unusual:
            return super().encode()

    def _encode_usual(self) -> bytes:
        if (self.content_encoding is not None or self.priority is not None
                or self.user_id is not None or self.app_id is not None
                or self.cluster_id is not None):
            raise _Unusual
        flags, pieces = 0, [b""]
        if self.content_type is not None:
            flags |= F.FLAG_CONTENT_TYPE
            pieces.append(_repeated_short(self.content_type))
        if self.headers is not None:
            flags |= F.FLAG_HEADERS
            pieces.append(encode_table(self.headers))
        if self.delivery_mode is not None:
            flags |= F.FLAG_DELIVERY_MODE
            pieces.append(_octet(self.delivery_mode))
        if self.correlation_id is not None:
            flags |= F.FLAG_CORRELATION_ID
            pieces.append(_short(self.correlation_id))
        if self.reply_to is not None:
            flags |= F.FLAG_REPLY_TO
            pieces.append(_repeated_short(self.reply_to))
        if self.expiration is not None:
            flags |= F.FLAG_EXPIRATION
            pieces.append(_short(self.expiration))
        if self.message_id is not None:
            flags |= F.FLAG_MESSAGE_ID
            pieces.append(_short(self.message_id))
        if self.timestamp is not None:
            if type(self.timestamp) is not int or not 0 <= self.timestamp < 1 << 64:
                raise _Unusual
            flags |= F.FLAG_TIMESTAMP
            pieces.append(_PACK_TIMESTAMP(self.timestamp))
        if self.type is not None:
            flags |= F.FLAG_TYPE
            pieces.append(_repeated_short(self.type))
        pieces[0] = _PACK_FLAGS(flags)
        return b"".join(pieces)


def _octet(value: Any) -> bytes:
    if type(value) is not int or not 0 <= value < 256:
        raise _Unusual
    return _OCTETS[value]


def _short(value: Any) -> bytes:
    if type(value) is str:
        value = value.encode()
    elif type(value) is not bytes:
        raise _Unusual
    if len(value) > 255:
        raise _Unusual
    return _OCTETS[len(value)] + value


_SHORTS: dict[Any, bytes] = {}  # content types, schema names, header keys: a few values


def _repeated_short(value: Any) -> bytes:
    if type(value) is not str:
        return _short(value)
    encoded = _SHORTS.get(value)
    if encoded is None:
        encoded = _short(value)
        if len(_SHORTS) >= _SHORT_CACHE_MAX:
            _SHORTS.clear()
        _SHORTS[value] = encoded
    return encoded


def encode_table(table: dict) -> bytes:
    """pika's encoding of an AMQP field table, with short ways for str and int values."""
    pieces = []
    for key, value in table.items():
        pieces.append(_repeated_short(key))
        kind = type(value)
        if kind is str:
            value = value.encode()
            pieces += (b"S", _PACK_LENGTH(len(value)), value)
        elif kind is int and -(1 << 31) <= value < 1 << 31:
            pieces += (b"I", _PACK_INT(value))
        else:
            data.encode_value(pieces, value)
    encoded = b"".join(pieces)
    return _PACK_LENGTH(len(encoded)) + encoded


# --- decoding -----------------------------------------------------------------------------------


def decode_frame(buffer: bytes, start: int = 0) -> tuple[int, Any]:
    """pika.frame.decode_frame of buffer[start:] (bytes used, frame), with deliveries
    (Basic.Deliver, content header, body) decoded here."""
    if len(buffer) - start < _HEAD or buffer[start] not in _OURS:
        return frame.decode_frame(buffer[start:] if start else buffer)
    frame_type, channel, size = _UNPACK_FRAME(buffer, start)
    end = start + _HEAD + size + 1  # the frame-end octet
    if end > len(buffer) or buffer[end - 1] != spec.FRAME_END:
        # incomplete, or pika's InvalidFrameError
        return frame.decode_frame(buffer[start:] if start else buffer)
    payload = start + _HEAD
    if frame_type == spec.FRAME_BODY:
        return end - start, frame.Body(channel, buffer[payload:end - 1])
    if frame_type == spec.FRAME_METHOD:
        if size >= 4 and _UNPACK_LENGTH(buffer, payload)[0] == _DELIVER:
            try:
                return end - start, frame.Method(channel,
                                                 decode_deliver(buffer[payload + 4:end - 1]))
            except (IndexError, struct.error):
                pass
    elif size >= 14:  # content header: class, weight, body size, property flags
        class_id, _weight, body_size = _UNPACK_CONTENT_HEADER(buffer, payload)
        if class_id == BasicProperties.INDEX:
            try:
                properties = decode_properties(buffer[payload + 12:end - 1])
                return end - start, frame.Header(channel, body_size, properties)
            except (_Unusual, IndexError, struct.error):
                pass
    # Anything else, and what the short ways leave: what pika makes of it, or its error.
    return frame.decode_frame(buffer[start:end])


def decode_deliver(encoded: bytes) -> spec.Basic.Deliver:
    """What pika's Basic.Deliver.decode makes of `encoded`."""
    method = spec.Basic.Deliver()
    method.consumer_tag, offset = _decode_short(encoded, 0)
    method.delivery_tag = _UNPACK_TIMESTAMP(encoded, offset)[0]
    method.redelivered = (encoded[offset + 8] & 1) != 0
    method.exchange, offset = _decode_short(encoded, offset + 9)
    method.routing_key, offset = _decode_short(encoded, offset)
    return method


def decode_properties(encoded: bytes) -> BasicProperties:
    """What pika's BasicProperties.decode makes of `encoded`, or _Unusual."""
    flags = _UNPACK_FLAGS(encoded, 0)[0]
    if flags & _RARE:
        raise _Unusual
    offset = 2
    content_type = headers = delivery_mode = correlation_id = reply_to = expiration = None
    message_id = timestamp = type_ = None
    if flags & F.FLAG_CONTENT_TYPE:
        content_type, offset = _decode_short(encoded, offset)
    if flags & F.FLAG_HEADERS:
        headers, offset = decode_table(encoded, offset)
    if flags & F.FLAG_DELIVERY_MODE:
        delivery_mode = encoded[offset]
        offset += 1
    if flags & F.FLAG_CORRELATION_ID:
        correlation_id, offset = _decode_short(encoded, offset)
    if flags & F.FLAG_REPLY_TO:
        reply_to, offset = _decode_short(encoded, offset)
    if flags & F.FLAG_EXPIRATION:
        expiration, offset = _decode_short(encoded, offset)
    if flags & F.FLAG_MESSAGE_ID:
        message_id, offset = _decode_short(encoded, offset)
    if flags & F.FLAG_TIMESTAMP:
        timestamp = _UNPACK_TIMESTAMP(encoded, offset)[0]
        offset += 8
    if flags & F.FLAG_TYPE:
        type_, offset = _decode_short(encoded, offset)
    if offset > len(encoded):  # a string ran past the end: pika says what is wrong
        raise _Unusual
    # Every attribute BasicProperties.__init__ sets, in its order, in one go.
    props = _new_properties(BasicProperties)
    props.__dict__ = {
        "content_type": content_type, "content_encoding": None, "headers": headers,
        "delivery_mode": delivery_mode, "priority": None, "correlation_id": correlation_id,
        "reply_to": reply_to, "expiration": expiration, "message_id": message_id,
        "timestamp": timestamp, "type": type_, "user_id": None, "app_id": None,
        "cluster_id": None}
    return props


_new_properties = object.__new__


def _decode_short(buffer: bytes, offset: int) -> tuple[Any, int]:
    start = offset + 1
    offset = start + buffer[offset]
    value = buffer[start:offset]
    try:
        return value.decode(), offset
    except UnicodeDecodeError:
        return value, offset


def decode_table(buffer: bytes, offset: int) -> tuple[dict, int]:
    """pika's data.decode_table, with short ways for string and integer values."""
    limit = offset + 4 + _UNPACK_LENGTH(buffer, offset)[0]
    offset += 4
    table = {}
    while offset < limit:
        key, offset = _decode_short(buffer, offset)
        kind = buffer[offset]
        if kind == 0x53:  # S: long string
            start = offset + 5
            offset = start + _UNPACK_LENGTH(buffer, offset + 1)[0]
            value = buffer[start:offset]
            try:
                value = value.decode()
            except UnicodeDecodeError:
                pass
        elif kind == 0x6C or kind == 0x4C:  # l, L: long long
            value = long(_UNPACK_LONG(buffer, offset + 1)[0])  # pika's int subclass
            offset += 9
        elif kind == 0x49:  # I: long
            value = _UNPACK_INT(buffer, offset + 1)[0]
            offset += 5
        else:
            value, offset = data.decode_value(buffer, offset)
        table[key] = value
    return table, offset
