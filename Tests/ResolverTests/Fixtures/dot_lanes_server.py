#!/usr/bin/env python3
"""Test-only DNS-over-TLS server for the unit tests of Sotto's extra DoT connections (DoTLanes).
Not the lab server.

Listens on 127.0.0.1 (port from --port, 0 = any free port) with a fresh self-signed certificate
(the DoQ fixture's, CN "doq.test"), RFC 7766 framing, pipelined queries. The first connection
answers every query "A 192.0.2.1", --delay seconds after it came (1.0 by default), each on its
own, so that queries stay outstanding on it. Every later connection misbehaves as --extra says:

  close   read one query, then close the connection (FIN) without answering it
  silent  read queries and never answer them, connection left open
  answer  answer as the first does

--handshake-delay S holds the TLS handshake of the third and later connections S seconds after
their TCP connection is accepted.

Prints "LISTENING <port>" once ready, "TCP <n>" per TCP connection accepted (1 = the first),
"CONN <n>" once its TLS handshake is done and "QUERY <n> <name>" per query read on connection n.
"""

import argparse
import asyncio
import ssl
import struct
import sys
import tempfile

import dns.message
import dns.rrset

from doq_server import make_certificate  # the DoQ fixture's self-signed certificate (CN doq.test)


def say(line):
    print(line, flush=True)


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay", type=float, default=1.0)
    parser.add_argument("--extra", choices=["close", "silent", "answer"], default="close")
    parser.add_argument("--handshake-delay", type=float, default=0.0)
    args = parser.parse_args()

    directory = tempfile.mkdtemp(prefix="dot-lanes-")
    cert_path, key_path = make_certificate(directory)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    context.set_alpn_protocols(["dot"])
    count = 0

    async def answer(writer, wire, delay):
        await asyncio.sleep(delay)
        query = dns.message.from_wire(wire)
        response = dns.message.make_response(query)
        response.answer.append(dns.rrset.from_text(query.question[0].name, 300, "IN", "A", "192.0.2.1"))
        out = response.to_wire()
        writer.write(struct.pack("!H", len(out)) + out)
        await writer.drain()

    loop = asyncio.get_running_loop()

    class Accepted(asyncio.Protocol):
        """A TCP connection: nothing read until its TLS handshake starts (the ClientHello stays in
        the socket for it), then served by `handle`."""

        def connection_made(self, transport):
            nonlocal count
            transport.pause_reading()
            count += 1
            say(f"TCP {count}")
            asyncio.ensure_future(handshake(transport, count))

    async def handshake(transport, n):
        if n >= 3 and args.handshake_delay > 0:
            await asyncio.sleep(args.handshake_delay)
        reader = asyncio.StreamReader()
        protocol = asyncio.StreamReaderProtocol(reader)
        try:
            tls = await loop.start_tls(transport, protocol, context, server_side=True)
        except OSError:  # ssl.SSLError and ConnectionError among them
            transport.close()
            return
        protocol.connection_made(tls)  # start_tls does not: the reader gets its transport
        await handle(reader, asyncio.StreamWriter(tls, protocol, reader, loop), n)

    async def handle(reader, writer, n):
        say(f"CONN {n}")
        tasks = []
        try:
            while True:
                length = struct.unpack("!H", await reader.readexactly(2))[0]
                wire = await reader.readexactly(length)
                say(f"QUERY {n} {dns.message.from_wire(wire).question[0].name}")
                if n == 1 or args.extra == "answer":
                    tasks.append(asyncio.ensure_future(answer(writer, wire, args.delay)))
                elif args.extra == "close":
                    writer.close()
                    return
                # silent: read on, answer nothing
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        except Exception as e:  # a query it cannot parse: said, and the connection closed
            say(f"ERROR {n} {e!r}")
        finally:
            for t in tasks:
                t.cancel()
            writer.close()

    server = await loop.create_server(Accepted, "127.0.0.1", args.port)
    say(f"LISTENING {server.sockets[0].getsockname()[1]}")
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
