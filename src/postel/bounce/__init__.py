"""bounce - the bounce(8), defer(8) and trace(8) service

DESCRIPTION
    One package, three master.cf services (bounce, defer, trace all run
    postel.bounce.service).  It keeps no state of its own: the delivery
    agents append per-message logs (postel.bounce.logfile format), qmgr
    asks for a notification once a message is finished, expired, or
    delayed, and the service mails an RFC 3464 report through cleanup(8).

      logfile.py    the per-message log format: read_log, append_entry
      service.py    the daemon and its request protocol

    The bounce(5) templates and the multipart/report builder are
    libraries (postel.mail.bounce_templates, postel.mail.dsn), shared
    with pickup(8), which returns mail that cleanup rejects.

    Clients use postel.ipc.bounce_client (bounce_flush, bounce_warn,
    bounce_expire, trace_flush, bounce_append).  See docs/bounce.md.
"""
