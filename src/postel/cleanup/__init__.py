"""cleanup - canonicalize and enqueue a Postel message

SYNOPSIS
    cleanup [generic daemon options]

DESCRIPTION
    cleanup(8) is the only writer of new queue files.  smtpd(8), qmqpd(8),
    pickup(8), sendmail and bounce(8) stream each message to it through
    postel.ipc.cleanup_client; it completes and checks the message, writes
    the queue file into incoming/ (or hold/), makes it durable (fsync of
    the file, rename, fsync of the directory, shared between messages by
    group commit) and only then answers.

    Transformations, as Postfix's cleanup(8):
      * insert missing (Resent-) From:, Date:, Message-Id: and (with
        undisclosed_recipients_header) To: headers, for local clients
        (rewrite_context=local) or with always_add_missing_headers=yes;
      * rewrite envelope addresses through trivial-rewrite(8), then
        canonical(5) (sender_/recipient_/canonical_maps), masquerade_domains,
        and expand recipients through virtual(5) (virtual_alias_maps);
        header addresses are rewritten for local clients;
      * remove duplicate recipients (duplicate_filter_limit), keep the
        original recipient (enable_original_recipient);
      * remove the headers in message_drop_headers (Bcc, Content-Length,
        Resent-Bcc, Return-Path);
      * extract recipients from (Resent-) To/Cc/Bcc with sendmail -t;
      * add always_bcc, sender_bcc_maps and recipient_bcc_maps recipients;
      * header_checks, mime_header_checks, nested_header_checks and
        body_checks (header_checks(5)) with their actions;
      * enforce message_size_limit, header_size_limit, hopcount_limit,
        line_length_limit.

PROTOCOL
    Attribute lists (postel.ipc.attr) on private/cleanup (and
    public/cleanup for local submission).  One connection carries any
    number of messages, one after the other:

      client: request=open  flags=NAMES
                 NAMES: comma-separated bcc_ok, map_ok, milter_ok,
                 extract_recipients, hold; absent or empty means
                 "bcc_ok,map_ok,milter_ok"; "none" means none.
      server: status=0 queue_id=QID
              (or status=452 dsn=4.3.1 / status=451 dsn=4.3.0, reason=TEXT)
      client: request=envelope sender=ADDR
                 rcpt=ADDR orcpt=DSN-ORCPT notify=MASK   (one triple per recipient)
                 fullname, client_name, client_address, client_port,
                 helo_name, protocol, sasl_username, rewrite_context
                 (local|remote), dsn_envid, dsn_ret (FULL|HDRS),
                 arrival_time, encoding, smtputf8        (all optional)
      client: request=data data=BYTES          (any number; no reply)
                 raw message content, CRLF or LF line ends; smtpd puts its
                 Received: header first, cleanup adds none
      client: request=close
      server: status=CODE dsn=X.Y.Z reason=TEXT queue_id=QID
      (client: request=abort -> server: status=0, file removed)

    The close reply is sent only after the file is durable, or removed.
    CODE is 0 (queued; also for DISCARD), 452 (4.3.1 storage), 552 (5.3.4
    size), 550 (5.7.1 REJECT action, with its text), 451 (4.7.1 DEFER
    action; 4.3.0 write or lookup error; 4.6.0 alias expansion), 554
    (5.4.0 too many hops; 5.1.3 no recipients).  An EOF in the middle of a
    message makes the server remove the temporary file; the client then
    reports 451 4.3.0 "queue file write error".

MODULES
    message.py   sans-IO content processing (headers, MIME, checks, limits)
    checks.py    header/body check actions
    addr.py      canonical, masquerade, virtual alias, bcc maps
    service.py   the server: protocol, queue file, commit

DIAGNOSTICS
    QID: message-id=<...>
    QID: reject: header Subject: ... from host[addr]; from=<s> to=<r> proto=ESMTP helo=<h>: 5.7.1 text
    QID: warning|info|hold|discard|redirect|filter|bcc|replace|prepend: header ...
    warning: QID: message rejected: hopcount exceeded

SEE ALSO
    docs/cleanup.md, header_checks(5), canonical(5), virtual(5)
"""
