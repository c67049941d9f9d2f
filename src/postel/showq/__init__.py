"""showq - the Postel mail queue listing service

SYNOPSIS
    from postel.queue.report import (QueueEntry, scan_entries, read_entry,
                                     read_defer_log, MailqFormatter, json_line)

DESCRIPTION
    The queue scan, defer-log reader, mailq and JSON formatters and the
    showq wire encoding shared by service and client (postqueue) live in
    the queue library, postel.queue.report.

    service.py  the showq(8) daemon on public/showq
"""
