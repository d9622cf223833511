-- The reply lines real mail servers sent kfsmtp in each failure situation,
-- captured by spec/realmail_spec.lua (KFSMTP_CAPTURE_REPLIES=FILE) from the
-- servers of spec/support/realmail.lua: Postfix 3.7.11 with Dovecot 2.3.19.1 for SASL
-- and postgrey 1.37, and Exim 4.96, as Debian 12 ships them.
-- realmail_spec compares each entry with what the live server says, so the
-- fixture cannot drift from them; the diagnosis specs read it.
--
--   [situation][server] = { command = the client's command the reply
--   answered ("" for the greeting, nil where no reply came), reply = its
--   lines, ehlo = the server's last EHLO reply before it }
-- Host names: Postfix is mx.example.test, Exim exim.example.test, the
-- client says EHLO kfsmtp-client.test from 127.0.0.1.
return {
  servers = {
    dovecot = "Dovecot 2.3.19.1",
    exim = "Exim 4.96",
    postfix = "Postfix 3.7.11",
    postgrey = "postgrey 1.37",
  },
  auth_failed = {
    about = "a wrong password (CRAM-MD5)",
    exim = {
      command = "AUTH PLAIN ***",
      reply = {
        "535 Incorrect authentication data",
      },
      ehlo = {
        "250-exim.example.test Hello kfsmtp-client.test [127.0.0.1]",
        "250-SIZE 52428800",
        "250-8BITMIME",
        "250-PIPELINING",
        "250-PIPECONNECT",
        "250-AUTH PLAIN LOGIN CRAM-MD5",
        "250-CHUNKING",
        "250-SMTPUTF8",
        "250 HELP",
      },
    },
    postfix = {
      command = "AUTH PLAIN ***",
      reply = {
        "535 5.7.8 Error: authentication failed: (reason unavailable)",
      },
      ehlo = {
        "250-mx.example.test",
        "250-PIPELINING",
        "250-SIZE 10240000",
        "250-VRFY",
        "250-ETRN",
        "250-AUTH PLAIN LOGIN CRAM-MD5",
        "250-ENHANCEDSTATUSCODES",
        "250-8BITMIME",
        "250-DSN",
        "250-SMTPUTF8",
        "250 CHUNKING",
      },
    },
  },
  auth_only_after_tls = {
    about = "credentials with UseSSL false where AUTH is offered only after STARTTLS; outside recipient: no AUTH is sent",
    exim = {
      command = "RCPT TO:<someone@example.org>",
      reply = {
        "550 relay not permitted",
      },
      ehlo = {
        "250-exim.example.test Hello kfsmtp-client.test [127.0.0.1]",
        "250-SIZE 52428800",
        "250-8BITMIME",
        "250-PIPELINING",
        "250-PIPECONNECT",
        "250-CHUNKING",
        "250-STARTTLS",
        "250-SMTPUTF8",
        "250 HELP",
      },
    },
    postfix = {
      command = "RCPT TO:<someone@example.org>",
      reply = {
        "554 5.7.1 <someone@example.org>: Relay access denied",
      },
      ehlo = {
        "250-mx.example.test",
        "250-PIPELINING",
        "250-SIZE 10240000",
        "250-VRFY",
        "250-ETRN",
        "250-STARTTLS",
        "250-ENHANCEDSTATUSCODES",
        "250-8BITMIME",
        "250-DSN",
        "250-SMTPUTF8",
        "250 CHUNKING",
      },
    },
  },
  auth_only_after_tls_local_recipient = {
    about = "the same with a recipient in the server's own domain: kfsmtp stops at DATA, after its 354",
    exim = {
      reply = {},
      ehlo = {
        "250-exim.example.test Hello kfsmtp-client.test [127.0.0.1]",
        "250-SIZE 52428800",
        "250-8BITMIME",
        "250-PIPELINING",
        "250-PIPECONNECT",
        "250-CHUNKING",
        "250-STARTTLS",
        "250-SMTPUTF8",
        "250 HELP",
      },
    },
    postfix = {
      reply = {},
      ehlo = {
        "250-mx.example.test",
        "250-PIPELINING",
        "250-SIZE 10240000",
        "250-VRFY",
        "250-ETRN",
        "250-STARTTLS",
        "250-ENHANCEDSTATUSCODES",
        "250-8BITMIME",
        "250-DSN",
        "250-SMTPUTF8",
        "250 CHUNKING",
      },
    },
  },
  client_host_rejected = {
    about = "anonymous client on the submission port (smtpd_client_restrictions = permit_sasl_authenticated, reject)",
    postfix = {
      command = "RCPT TO:<someone@example.org>",
      reply = {
        "554 5.7.1 <localhost[127.0.0.1]>: Client host rejected: Access denied",
      },
      ehlo = {
        "250-mx.example.test",
        "250-PIPELINING",
        "250-SIZE 10240000",
        "250-VRFY",
        "250-ETRN",
        "250-AUTH PLAIN LOGIN CRAM-MD5",
        "250-ENHANCEDSTATUSCODES",
        "250-8BITMIME",
        "250-DSN",
        "250-SMTPUTF8",
        "250 CHUNKING",
      },
    },
  },
  connection_rate_limited = {
    about = "the second connection within a minute (smtpd_client_connection_rate_limit = 1)",
    postfix = {
      command = "",
      reply = {
        "421 4.7.0 mx.example.test Error: too many connections from 127.0.0.1",
      },
      ehlo = {},
    },
  },
  cram_md5_hash_only = {
    about = "the right password, CRAM-MD5 offered, the password stored only as a SHA512-CRYPT hash: refused like a wrong one",
    postfix = {
      command = "AUTH CRAM-MD5",
      reply = {
        "535 5.7.8 Error: authentication failed: (reason unavailable)",
      },
      ehlo = {
        "250-mx.example.test",
        "250-PIPELINING",
        "250-SIZE 10240000",
        "250-VRFY",
        "250-ETRN",
        "250-AUTH PLAIN LOGIN CRAM-MD5",
        "250-ENHANCEDSTATUSCODES",
        "250-8BITMIME",
        "250-DSN",
        "250-SMTPUTF8",
        "250 CHUNKING",
      },
    },
  },
  greylisted = {
    about = "the first attempt of this client, sender and recipient (postgrey, delay 300 s)",
    postfix = {
      command = "RCPT TO:<ops@mx.example.test>",
      reply = {
        "450 4.2.0 <ops@mx.example.test>: Recipient address rejected: Greylisted, see http://postgrey.schweikert.ch/help/mx.example.test.html",
      },
      ehlo = {
        "250-mx.example.test",
        "250-PIPELINING",
        "250-SIZE 10240000",
        "250-VRFY",
        "250-ETRN",
        "250-STARTTLS",
        "250-ENHANCEDSTATUSCODES",
        "250-8BITMIME",
        "250-DSN",
        "250-SMTPUTF8",
        "250 CHUNKING",
      },
    },
  },
  implicit_tls_port_without_tls = {
    about = "UseSSL true on an implicit-TLS port other than 465, so STARTTLS: the server waits for TLS, no greeting comes (kfsmtp times out)",
    exim = {
      reply = {},
      ehlo = {},
    },
    postfix = {
      reply = {},
      ehlo = {},
    },
  },
  plain_port_with_implicit_tls = {
    about = "tls_mode implicit on a STARTTLS port: the server's plain greeting comes where TLS was expected",
    exim = {
      reply = {},
      ehlo = {},
    },
    postfix = {
      reply = {},
      ehlo = {},
    },
  },
  relay_denied = {
    about = "anonymous client, a recipient outside the server's domains (127.0.0.1 is not a trusted network)",
    exim = {
      command = "RCPT TO:<someone@example.org>",
      reply = {
        "550 relay not permitted",
      },
      ehlo = {
        "250-exim.example.test Hello kfsmtp-client.test [127.0.0.1]",
        "250-SIZE 52428800",
        "250-8BITMIME",
        "250-PIPELINING",
        "250-PIPECONNECT",
        "250-AUTH PLAIN LOGIN CRAM-MD5",
        "250-CHUNKING",
        "250-SMTPUTF8",
        "250 HELP",
      },
    },
    postfix = {
      command = "RCPT TO:<someone@example.org>",
      reply = {
        "554 5.7.1 <someone@example.org>: Relay access denied",
      },
      ehlo = {
        "250-mx.example.test",
        "250-PIPELINING",
        "250-SIZE 10240000",
        "250-VRFY",
        "250-ETRN",
        "250-AUTH PLAIN LOGIN CRAM-MD5",
        "250-ENHANCEDSTATUSCODES",
        "250-8BITMIME",
        "250-DSN",
        "250-SMTPUTF8",
        "250 CHUNKING",
      },
    },
  },
  sender_not_logged_in = {
    about = "anonymous client sending as alice's address on a port with reject_sender_login_mismatch",
    postfix = {
      command = "RCPT TO:<someone@example.org>",
      reply = {
        "553 5.7.1 <alice@example.test>: Sender address rejected: not logged in",
      },
      ehlo = {
        "250-mx.example.test",
        "250-PIPELINING",
        "250-SIZE 10240000",
        "250-VRFY",
        "250-ETRN",
        "250-STARTTLS",
        "250-ENHANCEDSTATUSCODES",
        "250-8BITMIME",
        "250-DSN",
        "250-SMTPUTF8",
        "250 CHUNKING",
      },
    },
  },
  sender_not_owned = {
    about = "alice logged in, MAIL FROM bob's address (reject_sender_login_mismatch)",
    postfix = {
      command = "RCPT TO:<someone@example.org>",
      reply = {
        "553 5.7.1 <bob@example.test>: Sender address rejected: not owned by user alice",
      },
      ehlo = {
        "250-mx.example.test",
        "250-PIPELINING",
        "250-SIZE 10240000",
        "250-VRFY",
        "250-ETRN",
        "250-AUTH PLAIN LOGIN CRAM-MD5",
        "250-ENHANCEDSTATUSCODES",
        "250-8BITMIME",
        "250-DSN",
        "250-SMTPUTF8",
        "250 CHUNKING",
      },
    },
  },
  starttls_required = {
    about = "plain MAIL FROM on the submission port (smtpd_tls_security_level = encrypt)",
    postfix = {
      command = "MAIL FROM:<alice@example.test>",
      reply = {
        "530 5.7.0 Must issue a STARTTLS command first",
      },
      ehlo = {
        "250-mx.example.test",
        "250-PIPELINING",
        "250-SIZE 10240000",
        "250-VRFY",
        "250-ETRN",
        "250-STARTTLS",
        "250-ENHANCEDSTATUSCODES",
        "250-8BITMIME",
        "250-DSN",
        "250-SMTPUTF8",
        "250 CHUNKING",
      },
    },
  },
}
