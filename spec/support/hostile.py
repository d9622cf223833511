#!/usr/bin/python3
"""A deliberately hostile SMTP server for the deadline specs: what no real
server can be made to do on purpose, after a session that is normal up to
the point named by --behaviour.

usage: hostile.py --dir DIR --behaviour B [--greeting-delay-ms N] [--oauth]
                  [--mechs "PLAIN LOGIN"]

  quit_silent         the message is accepted (250 queued); QUIT is never
                      answered and the connection stays open
  rcpt_refused_silent RCPT gets 550; QUIT is never answered
  final_drip          the reply to the message's final dot comes one byte a
                      second: "250 2.0.0 Ok: queued as DRIP"
  final_flood         the final dot is answered with an endless stream of
                      "250-flood" lines (for at most 120 s)
  auth_refused        AUTH (any mechanism) gets 535 5.7.8; used with --oauth
                      to refuse every access token
  greylist            RCPT gets postgrey's "450 4.2.0 ... Greylisted" reply
  mail_flood          MAIL is answered with an endless stream of "550-flood"
                      lines (for at most 120 s)
  cram_broken         AUTH offers CRAM-MD5 PLAIN LOGIN; CRAM-MD5 is always
                      refused (a server keeping only password hashes), PLAIN
                      and LOGIN accepted
  starttls_plain      STARTTLS is offered and answered 220, and then the
                      session goes on in plain text (the ClientHello gets a
                      500), as a broken relay or an inspecting firewall does
  echo_auth           AUTH PLAIN, LOGIN or XOAUTH2 gets a 535 that repeats
                      what the client sent: each base64 line as received,
                      and the password or token decoded

--cert and --key offer STARTTLS with that certificate.
--greeting-delay-ms holds the 220 greeting back. --oauth offers AUTH
XOAUTH2 OAUTHBEARER in the EHLO reply; --mechs offers these mechanisms. Every command line goes to
DIR/commands.log (AUTH payloads as ***); DIR/port and DIR/pid as
spec/support/smtpd.py writes them.
"""
import argparse
import asyncio
import ssl
import base64
import binascii
import os

BEHAVIOURS = ["quit_silent", "rcpt_refused_silent", "final_drip", "final_flood", "auth_refused",
              "echo_auth", "starttls_plain", "greylist", "cram_broken", "mail_flood"]


def atomic_write(path, data):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(data)
    os.rename(tmp, path)


class Session:
    def __init__(self, args, reader, writer):
        self.args, self.reader, self.writer = args, reader, writer
        self.log = os.path.join(args.dir, "commands.log")
        self.tls = False

    def note(self, line):
        with open(self.log, "a") as f:
            f.write(line + "\n")

    async def send(self, text):
        # Bytes as received go back as they came (latin-1 is byte for byte).
        self.writer.write(text.encode("latin-1"))
        await self.writer.drain()

    async def hang(self):
        # Keep the connection open, answering nothing, until the client goes.
        while await self.reader.read(4096):
            pass

    async def line(self):
        raw = await self.reader.readline()
        return raw.decode("latin-1").rstrip("\r\n")

    async def echo_auth(self, line):
        """535 repeating every base64 line the client sent, and its secret
        decoded: the PLAIN password, the LOGIN password, the bearer token."""
        parts = line.split(" ")
        mech = parts[1].upper() if len(parts) > 1 else ""
        sent = parts[2:3]
        if mech == "LOGIN":
            for prompt in ([] if sent else ["VXNlcm5hbWU6"]) + ["UGFzc3dvcmQ6"]:
                await self.send("334 %s\r\n" % prompt)
                sent.append(await self.line())
        elif not sent:
            await self.send("334 \r\n")
            sent.append(await self.line())
        try:
            decoded = base64.b64decode(sent[-1]).decode("latin-1")
        except (binascii.Error, ValueError):
            decoded = ""
        if mech == "PLAIN":
            secret = decoded.split("\0")[-1]
        elif mech == "XOAUTH2":
            secret = decoded.split("auth=Bearer ")[-1].rstrip("\x01")
        else:
            secret = decoded
        await self.send("".join("535-5.7.8 you sent %s\r\n" % s for s in sent) +
                        "535 5.7.8 Authentication failed for secret %s\r\n" % secret)

    async def cram_broken(self, line):
        parts = line.split(" ")
        mech = parts[1].upper() if len(parts) > 1 else ""
        if mech == "CRAM-MD5":
            await self.send("334 PDEyMzQ1LjY3ODlAaG9zdGlsZS5leGFtcGxlPg==\r\n")
            await self.line()
            await self.send("535 5.7.8 Error: authentication failed: authentication failure\r\n")
            return
        if mech == "LOGIN":
            for prompt in ([] if len(parts) > 2 else ["VXNlcm5hbWU6"]) + ["UGFzc3dvcmQ6"]:
                await self.send("334 %s\r\n" % prompt)
                await self.line()
        elif len(parts) < 3:
            await self.send("334 \r\n")
            await self.line()
        await self.send("235 2.7.0 Authentication successful\r\n")

    async def flood(self, line):
        """Reply lines as fast as the client takes them, for 120 s at most."""
        loop = asyncio.get_running_loop()
        end = loop.time() + 120
        while loop.time() < end:
            await self.send(line * 256)

    async def final_reply(self):
        b = self.args.behaviour
        if b == "final_drip":
            for ch in "250 2.0.0 Ok: queued as DRIP\r\n":
                await self.send(ch)
                await asyncio.sleep(1)
        elif b == "final_flood":
            await self.flood("250-flood\r\n")
        else:
            await self.send("250 2.0.0 Ok: queued as HOSTILE\r\n")

    async def run(self):
        await asyncio.sleep(self.args.greeting_delay_ms / 1000)
        await self.send("220 hostile.example ESMTP\r\n")
        b = self.args.behaviour
        while True:
            raw = await self.reader.readline()
            if not raw:
                return
            line = raw.decode("latin-1").rstrip("\r\n")
            verb = line.split(" ", 1)[0].upper()
            self.note(" ".join(line.split(" ")[:2]) + " ***" if verb == "AUTH" else line)
            if verb in ("EHLO", "HELO"):
                mechs = ("XOAUTH2 OAUTHBEARER " if self.args.oauth else "") + (self.args.mechs or "")
                if b == "cram_broken":
                    mechs = "CRAM-MD5 PLAIN LOGIN"
                await self.send("250-hostile.example\r\n" +
                                ("250-STARTTLS\r\n" if b == "starttls_plain" or (self.args.cert and not self.tls) else "") +
                                ("250-AUTH %s\r\n" % mechs.strip() if mechs.strip() else "") +
                                "250 8BITMIME\r\n")
            elif verb == "STARTTLS" and self.args.cert and b != "starttls_plain":
                await self.send("220 2.0.0 Ready to start TLS\r\n")
                ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
                ctx.load_cert_chain(self.args.cert, self.args.key)
                await self.writer.start_tls(ctx)
                self.tls = True
            elif verb == "AUTH" and b == "cram_broken":
                await self.cram_broken(line)
            elif verb == "AUTH":
                if b == "echo_auth":
                    await self.echo_auth(line)
                elif b == "auth_refused":
                    await self.send("535 5.7.8 Authentication credentials invalid\r\n")
                else:
                    await self.send("235 2.7.0 Authentication successful\r\n")
            elif verb == "MAIL" and b == "mail_flood":
                await self.flood("550-flood\r\n")
            elif verb == "MAIL":
                await self.send("250 2.1.0 Ok\r\n")
            elif verb == "RCPT":
                if b == "greylist":
                    await self.send("450 4.2.0 <ops@example.com>: Recipient address rejected: Greylisted, "
                                    "see http://postgrey.schweikert.ch/help/example.com.html\r\n")
                elif b == "rcpt_refused_silent":
                    await self.send("550 5.1.1 <nobody@example.com>: Recipient address rejected\r\n")
                else:
                    await self.send("250 2.1.5 Ok\r\n")
            elif verb == "DATA":
                await self.send("354 End data with <CR><LF>.<CR><LF>\r\n")
                while True:
                    body = await self.reader.readline()
                    if not body or body in (b".\r\n", b".\n"):
                        break
                self.note("[message]")
                await self.final_reply()
            elif verb == "QUIT":
                if b in ("quit_silent", "rcpt_refused_silent"):
                    await self.hang()
                    return
                await self.send("221 2.0.0 Bye\r\n")
                return
            elif verb == "STARTTLS" and b == "starttls_plain":
                await self.send("220 2.0.0 Ready to start TLS\r\n")
                await self.reader.read(4096)  # the ClientHello, answered in plain text
                await self.send("500 5.5.1 Error: command not recognized\r\n")
            elif verb in ("RSET", "NOOP"):
                await self.send("250 2.0.0 Ok\r\n")
            else:
                await self.send("502 5.5.2 Error: command not recognized\r\n")


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dir", required=True)
    p.add_argument("--behaviour", choices=BEHAVIOURS, required=True)
    p.add_argument("--greeting-delay-ms", type=int, default=0)
    p.add_argument("--oauth", action="store_true")
    p.add_argument("--mechs", default="")
    p.add_argument("--cert")
    p.add_argument("--key")
    args = p.parse_args()

    async def handle(reader, writer):
        try:
            await Session(args, reader, writer).run()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    atomic_write(os.path.join(args.dir, "pid"), str(os.getpid()))
    atomic_write(os.path.join(args.dir, "port"), str(server.sockets[0].getsockname()[1]))
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
