"""flush - Postel fast flush service (per-destination logs of deferred mail)

SYNOPSIS
    from postel.flush.client import flush_send_site, flush_add, FLUSH_STAT_OK

DESCRIPTION
    client.py   the client API (postqueue -s/-i, smtpd ETRN, delivery agents)
    logs.py     the per-destination log files under $queue_directory/flush
    service.py  the flush(8) daemon on public/flush
"""
