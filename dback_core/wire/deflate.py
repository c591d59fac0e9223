"""permessage-deflate (RFC 7692) without per-connection compression state.

``websockets``' own permessage-deflate keeps a compressor and a decompressor per connection
(about 45 KiB) and compresses every message once per viewer. dback negotiates the extension
itself instead and lets the fan-out compress each frame once for many viewers:

- ``SharedDeflateFactory`` answers a client's offer, asking for ``client_no_context_takeover``
  so that inflating what a client sends needs an inflater only while a message is read.
- ``SharedDeflate`` is what one connection negotiated. It passes outgoing frames through
  unchanged: what ``websockets`` sends (the server list, pings, close frames) goes out
  uncompressed with RSV1 unset, which RFC 7692 allows and which never touches the client's
  inflater window. Compressed frames are written by the fan-out.
- ``HistoryFree`` compresses a message so that it refers to nothing sent before; every
  client can inflate it whatever its window holds. ``deflate_fresh`` does the same with a
  compressor of its own, so it can run on a worker thread: large messages for one viewer
  (joins) are compressed that way and cached (``dback_core.wire.joins``).
- ``SharedStream`` is one guild's broadcast compressor, whose output refers back to earlier
  broadcasts: it is shared byte for byte by the viewers whose inflaters received exactly the
  stream's messages since its last reset (see ``dback_core.wire.fanout``).
"""

from __future__ import annotations

import zlib
from collections.abc import Hashable, Sequence
from dataclasses import replace
from typing import Generic, TypeVar

from websockets.exceptions import NegotiationError, PayloadTooBig, ProtocolError
from websockets.extensions.base import Extension, ServerExtensionFactory
from websockets.frames import CTRL_OPCODES, Frame, Opcode
from websockets.typing import ExtensionName, ExtensionParameter

NAME = ExtensionName("permessage-deflate")

#: What a sync flush ends with; RFC 7692 removes it from the wire and the receiver adds it.
TAIL = b"\x00\x00\xff\xff"

#: Window and memory of a guild's broadcast compressor: about 32 KiB of zlib state per watched
#: guild. Presence frames (~160 B) compress to 18-27 B with it, 1-2 B less with the largest
#: window.
STREAM_WINDOW_BITS = 12
STREAM_MEM_LEVEL = 5

#: History-free messages (joins, mostly): one such compressor per server. A 4 KiB window
#: compresses the benchmark's 1.14 MB join to 79 KB, the largest window to 86 KB (zlib's
#: hash chains suit the smaller window here), in about 7 ms, once per cached join.
FRESH_WINDOW_BITS = 12

#: The ``server_max_window_bits`` a client may ask for: no less than the compressors use.
WINDOWS_ACCEPTED = {str(bits) for bits in range(max(STREAM_WINDOW_BITS, FRESH_WINDOW_BITS), 16)}

#: Payloads below this many bytes go to one viewer uncompressed (errors, small replies):
#: deflating them saves little, and an uncompressed message keeps the viewer in its guild's
#: shared stream.
PLAIN_BELOW = 512

#: Messages for one viewer from this many bytes up (joins, member lists) are compressed off the
#: event loop and cached (``dback_core.wire.joins``): below it compressing takes microseconds.
OFF_LOOP_FROM = 4096


class SharedDeflate(Extension):
    """One connection's permessage-deflate: inflates what the client sends, nothing else.

    ``history`` is False when the client demanded ``server_no_context_takeover``: it then
    only ever gets history-free messages. Slotted and empty between messages, because there
    is one per connection.
    """

    __slots__ = ("_inflater", "history")
    name = NAME

    def __init__(self, history: bool) -> None:
        self.history = history
        #: Only while a fragmented compressed message is being read.
        self._inflater: zlib._Decompress | None = None

    def encode(self, frame: Frame) -> Frame:
        return frame

    def decode(self, frame: Frame, *, max_size: int | None = None) -> Frame:
        """Inflate a compressed client message, never to more than ``max_size`` bytes.

        With ``client_no_context_takeover`` each message starts from an empty window, so
        the inflater lives only as long as the message.
        """
        if frame.opcode in CTRL_OPCODES:
            return frame
        if frame.opcode is Opcode.CONT:
            if self._inflater is None:
                return frame
            if frame.rsv1:
                raise ProtocolError("RSV1 set on a continuation frame")
            inflater = self._inflater
        else:
            if not frame.rsv1:
                return frame
            inflater = zlib.decompressobj(wbits=-15)
            self._inflater = inflater
        if frame.fin:
            self._inflater = None
        data = bytes(frame.data) + TAIL if frame.fin else frame.data
        limit = 0 if max_size is None else max_size
        try:
            inflated = inflater.decompress(data, limit)
            # Output stopped at the limit with input left. A final frame always has input
            # left when cut short (``TAIL`` comes after the last code); output held back in a
            # non-final frame comes out with the next frame, under what remains of the limit.
            if inflater.unconsumed_tail:
                raise PayloadTooBig(None, max_size)
        except zlib.error as error:
            raise ProtocolError("decompression failed") from error
        return replace(frame, data=inflated, rsv1=False)


def _parameters(params: Sequence[ExtensionParameter]) -> dict[str, str | None]:
    known = {
        "server_no_context_takeover",
        "client_no_context_takeover",
        "server_max_window_bits",
        "client_max_window_bits",
    }
    found: dict[str, str | None] = {}
    for name, value in params:
        if name not in known:
            raise NegotiationError(f"unknown permessage-deflate parameter {name}")
        if name in found:
            raise NegotiationError(f"duplicate permessage-deflate parameter {name}")
        if name.endswith("takeover") and value is not None:
            raise NegotiationError(f"{name} takes no value")
        found[name] = value
    return found


class SharedDeflateFactory(ServerExtensionFactory):
    """Accepts a client's permessage-deflate offer on the terms shared compression needs.

    The answer always carries ``client_no_context_takeover`` (RFC 7692 lets a server ask for
    it whether or not the client offered it). An offer that limits the server's window below
    what dback's compressors use (``server_max_window_bits`` under 12) is declined, so the
    client's next offer, or no compression, is used; a larger limit is accepted. An offer of
    ``server_no_context_takeover`` is accepted; that connection then gets history-free
    messages only. ``client_max_window_bits`` needs no answer: an inflater with the largest
    window reads any smaller one.
    """

    name = NAME

    def process_request_params(
        self,
        params: Sequence[ExtensionParameter],
        accepted_extensions: Sequence[Extension],
    ) -> tuple[list[ExtensionParameter], SharedDeflate]:
        if any(other.name == NAME for other in accepted_extensions):
            raise NegotiationError("permessage-deflate is already accepted")
        found = _parameters(params)
        window = found.get("server_max_window_bits")
        if window is not None and window not in WINDOWS_ACCEPTED:
            raise NegotiationError(f"server_max_window_bits={window} is not supported")
        client_window = found.get("client_max_window_bits")
        if client_window is not None and client_window not in {str(n) for n in range(8, 16)}:
            raise NegotiationError(f"client_max_window_bits={client_window} is invalid")
        response: list[ExtensionParameter] = [("client_no_context_takeover", None)]
        history = "server_no_context_takeover" not in found
        if not history:
            response.insert(0, ("server_no_context_takeover", None))
        if window is not None:
            response.append(("server_max_window_bits", window))  # accepting it means echoing it
        return response, SharedDeflate(history)


def negotiated(extensions: Sequence[Extension]) -> SharedDeflate | None:
    """The connection's ``SharedDeflate``, if the client accepted compression."""
    for extension in extensions:
        if isinstance(extension, SharedDeflate):
            return extension
    return None


def _deflate(compressor: zlib._Compress, payload: bytes, mode: int) -> bytes:
    data = compressor.compress(payload) + compressor.flush(mode)
    return data[:-4]  # both flush modes end with TAIL


def _fresh_compressor() -> zlib._Compress:
    return zlib.compressobj(6, zlib.DEFLATED, -FRESH_WINDOW_BITS)


def deflate_fresh(payload: bytes) -> bytes:
    """``payload`` deflated without history by a compressor of its own: safe on any thread
    (zlib releases the GIL while it compresses), and the same bytes ``HistoryFree`` makes."""
    return _deflate(_fresh_compressor(), payload, zlib.Z_FULL_FLUSH)


class HistoryFree:
    """Compresses messages that refer to nothing sent before, with one compressor.

    A full flush after each message makes zlib forget it, so the next message starts from an
    empty window: any client can inflate the result whatever its window holds. Used on the
    event loop only, for broadcasts and small messages.
    """

    def __init__(self) -> None:
        self._compressor = _fresh_compressor()

    def compress(self, payload: bytes) -> bytes:
        """``payload`` deflated without history."""
        return _deflate(self._compressor, payload, zlib.Z_FULL_FLUSH)


#: Whatever identifies a viewer (the server uses its connection).
Viewer = TypeVar("Viewer", bound=Hashable)


class SharedStream(Generic[Viewer]):
    """One guild's broadcast compressor and the viewers its output is good for.

    ``synced`` viewers' inflaters received exactly this stream's messages since its last
    reset, in order (uncompressed messages do not count: they never enter the window), so
    the stream's output, which refers only to those messages, inflates correctly for all of
    them. ``behind`` viewers joined since, or were sent a compressed message of their own;
    ``history_free`` viewers refused context takeover. Both get history-free messages. A
    reset starts the compressor afresh: its next message refers to nothing, so every
    ``behind`` viewer can share from then on.
    """

    __slots__ = ("_compressor", "behind", "history_free", "plain", "reset_at", "synced")

    def __init__(self, now: float) -> None:
        #: Created by the first compressed broadcast: a guild watched only by viewers without
        #: compression never pays for one.
        self._compressor: zlib._Compress | None = None
        self.synced: set[Viewer] = set()
        self.behind: set[Viewer] = set()
        self.history_free: set[Viewer] = set()
        #: Viewers of the guild without compression, so one broadcast splits in set operations.
        self.plain: set[Viewer] = set()
        self.reset_at = now

    def reset(self, now: float) -> None:
        """Start from an empty window and admit every ``behind`` viewer."""
        self._compressor = None
        self.synced |= self.behind
        self.behind.clear()
        self.reset_at = now

    def compress(self, payload: bytes) -> bytes:
        if self._compressor is None:
            self._compressor = zlib.compressobj(
                6, zlib.DEFLATED, -STREAM_WINDOW_BITS, STREAM_MEM_LEVEL
            )
        return _deflate(self._compressor, payload, zlib.Z_SYNC_FLUSH)

    def discard(self, connection: Viewer) -> None:
        self.synced.discard(connection)
        self.behind.discard(connection)
        self.history_free.discard(connection)
        self.plain.discard(connection)

    def fall_behind(self, connection: Viewer) -> None:
        """``connection`` got a compressed message outside the stream."""
        if connection in self.synced:
            self.synced.discard(connection)
            self.behind.add(connection)

    def __len__(self) -> int:
        return len(self.synced) + len(self.behind) + len(self.history_free) + len(self.plain)
