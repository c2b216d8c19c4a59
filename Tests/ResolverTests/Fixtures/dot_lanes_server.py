#!/usr/bin/env python3
"""Test-only DNS-over-TLS server for the unit tests of Sotto's extra DoT connections (DoTLanes).
Not the lab server.

Listens on 127.0.0.1 (port from --port, 0 = any free port) with a fresh self-signed certificate
(the DoQ fixture's, CN "doq.test"), RFC 7766 framing, pipelined queries. The first connection
answers every query "A 192.0.2.1", --delay seconds after it came (1.0 by default), each on its
own, so that queries stay outstanding on it. Every later connection misbehaves as --extra says:

  close   read one query, then close the connection (FIN) without answering it
  silent  read queries and never answer them, connection left open

Prints "LISTENING <port>" once ready, "CONN <n>" per connection accepted (1 = the first) and
"QUERY <n> <name>" per query read on connection n.
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
    parser.add_argument("--extra", choices=["close", "silent"], default="close")
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

    async def handle(reader, writer):
        nonlocal count
        count += 1
        n = count
        say(f"CONN {n}")
        tasks = []
        try:
            while True:
                length = struct.unpack("!H", await reader.readexactly(2))[0]
                wire = await reader.readexactly(length)
                say(f"QUERY {n} {dns.message.from_wire(wire).question[0].name}")
                if n == 1:
                    tasks.append(asyncio.ensure_future(answer(writer, wire, args.delay)))
                elif args.extra == "close":
                    writer.close()
                    return
                # silent: read on, answer nothing
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            for t in tasks:
                t.cancel()

    server = await asyncio.start_server(handle, "127.0.0.1", args.port, ssl=context)
    say(f"LISTENING {server.sockets[0].getsockname()[1]}")
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
