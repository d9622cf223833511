#!/usr/bin/python3
"""delay_relay: a TCP relay on loopback that makes every round trip cost 2×D.

  /usr/bin/python3 bench/delay_relay.py --to HOST:PORT [--delay-ms 10] [--port N]

The kernel on these machines has no netem queueing discipline, so a distant
relay is played by this one: every chunk read from either side is held D ms
and then written on, in the order it came, and the connection to the server
is itself opened D ms after the client's connect (its SYN travelling). Both
sockets have TCP_NODELAY, so the relay adds no coalescing of its own; what
the client's and the server's own TCP stacks do (Nagle, delayed ACKs) shows
as it would.

It counts round trips as the number of times the conversation turned from
the client to the server: a server chunk that arrives when the last thing
seen was the client's (its connect, or a chunk it sent). Counted at arrival,
before the delay, so the count is the exchange's shape and not a timing.

Used in-process by bench/latency.py (Relay(...).start(), then .turns, a
live count over all its connections) or on its own: it prints
"conn N turns T up B down B ms M" per closed connection.
"""
import argparse
import asyncio
import collections
import socket
import sys
import threading


class _Side(asyncio.Protocol):
    """One socket of a relayed connection; data goes to the pair's other side."""

    def __init__(self, pair, name):
        self.pair, self.name, self.transport = pair, name, None

    def connection_made(self, transport):
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.pair.side_up(self)

    def data_received(self, data):
        self.pair.arrived(self.name, data)

    def eof_received(self):
        self.pair.arrived(self.name, None)
        return True  # keep our write half open until the delayed EOF is passed on

    def connection_lost(self, exc):
        self.pair.lost(self.name)


class _Pair:
    """A client connection and its delayed connection to the server."""

    def __init__(self, relay):
        self.relay, self.loop = relay, relay.loop
        self.client = self.server = None
        # Chunks (or None, EOF) for each side, with the time they may go.
        self.queue = {"client": collections.deque(), "server": collections.deque()}
        self.last_speaker = "client"  # the connect: the client spoke first
        self.turns = 0
        self.bytes = {"client": 0, "server": 0}
        self.opened = self.loop.time()
        self.eof_passed = set()  # the sides an EOF has been written to
        self.closed = False

    def side_up(self, side):
        if side.name == "client":
            self.client = side
            self.loop.call_later(self.relay.delay, self.connect_server)
        else:
            self.server = side
            self.flush("server")

    def connect_server(self):
        if self.closed:
            return
        coro = self.loop.create_connection(lambda: _Side(self, "server"), self.relay.host, self.relay.port)
        task = self.loop.create_task(coro)
        task.add_done_callback(self._connected)

    def _connected(self, task):
        if task.cancelled() or task.exception() is not None:
            self.close()

    def arrived(self, speaker, data):
        if data is not None:
            if self.relay.trace is not None:
                self.relay.trace.append((self.loop.time(), id(self), speaker, len(data)))
            self.bytes[speaker] += len(data)
            if speaker == "server" and self.last_speaker == "client":
                self.turns += 1
                self.relay.turns += 1
            self.last_speaker = speaker
        target = "server" if speaker == "client" else "client"
        self.queue[target].append((self.loop.time() + self.relay.delay, data))
        self.loop.call_later(self.relay.delay, self.flush, target)

    def flush(self, target):
        side = self.client if target == "client" else self.server
        if side is None or side.transport is None or side.transport.is_closing():
            return
        q, now = self.queue[target], self.loop.time()
        # Everything due goes, oldest first: order is kept even where two
        # timers fire in one pass.
        while q and q[0][0] <= now + 0.0005:
            _, data = q.popleft()
            if data is None:
                try:
                    side.transport.write_eof()
                except OSError:
                    pass  # that side has closed already: nothing to tell it
                self.eof_passed.add(target)
                if len(self.eof_passed) == 2:  # both halves closed: done
                    self._close_side("client")
                    self._close_side("server")
                    return
            else:
                side.transport.write(data)

    def lost(self, name):
        # The other side is closed once what is queued for it has gone.
        other = "server" if name == "client" else "client"
        self.queue[other].append((self.loop.time() + self.relay.delay, None))
        self.loop.call_later(self.relay.delay + 0.001, self._drain_and_close, other)
        if name == "client" and self.server is None:
            self.close()

    def _close_side(self, name):
        side = self.client if name == "client" else self.server
        if side is not None and side.transport is not None:
            side.transport.close()
        self.close()

    def _drain_and_close(self, name):
        self.flush(name)
        self._close_side(name)

    def close(self):
        if self.closed:
            return
        self.closed = True
        self.relay.record(self)


class Relay:
    """Listens on 127.0.0.1 (an ephemeral port unless given), relays to
    host:port with delay_ms each way, in a thread of its own."""

    def __init__(self, host, port, delay_ms=10.0, listen_port=0, on_close=None):
        self.host, self.port, self.delay = host, port, delay_ms / 1000.0
        self.listen_port, self.on_close = listen_port, on_close
        self.loop = asyncio.new_event_loop()
        self.open_pairs = set()
        # Live counts over every connection, open or closed: read from
        # another thread between tests (an int's read is atomic).
        self.turns = 0
        self.connections = 0
        # Set to a list to keep (time, connection, speaker, bytes) of every
        # chunk: where a test's time goes (bench/README.md).
        self.trace = None
        self.thread = None

    def start(self):
        ready = threading.Event()

        def run():
            asyncio.set_event_loop(self.loop)

            def accept():
                pair = _Pair(self)
                self.open_pairs.add(pair)
                self.connections += 1
                return _Side(pair, "client")

            server = self.loop.run_until_complete(
                self.loop.create_server(accept, "127.0.0.1", self.listen_port, reuse_address=True))
            self.listen_port = server.sockets[0].getsockname()[1]
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        ready.wait(10)
        return self

    def record(self, pair):
        """on_close((turns, bytes up, bytes down, ms open)) for a closed
        connection."""
        self.open_pairs.discard(pair)
        if self.on_close:
            self.on_close((pair.turns, pair.bytes["client"], pair.bytes["server"],
                           (self.loop.time() - pair.opened) * 1000.0))

    def stop(self):
        self.loop.call_soon_threadsafe(self.loop.stop)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--to", required=True, help="HOST:PORT of the server")
    ap.add_argument("--delay-ms", type=float, default=10.0)
    ap.add_argument("--port", type=int, default=0)
    a = ap.parse_args()
    host, _, port = a.to.rpartition(":")
    count = [0]

    def report(entry):
        count[0] += 1
        print("conn %d turns %d up %d down %d ms %.1f" % ((count[0],) + entry), flush=True)

    relay = Relay(host, int(port), a.delay_ms, a.port, on_close=report).start()
    print("listening 127.0.0.1:%d" % relay.listen_port, flush=True)
    try:
        relay.thread.join()
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
