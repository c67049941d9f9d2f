"""flush - Postel fast flush service (per-destination logs of deferred mail)

SYNOPSIS
    from postel.ipc.flush_client import flush_send_site, flush_add, FLUSH_STAT_OK

DESCRIPTION
    The client API (postqueue -s/-i, smtpd ETRN, delivery agents) is
    postel.ipc.flush_client, so that clients never import this daemon.

    logs.py     the per-destination log files under $queue_directory/flush
    service.py  the flush(8) daemon on public/flush
"""
