"""showq - the Postel mail queue listing (library and service)

SYNOPSIS
    from postel.showq.report import (QueueEntry, scan_entries, read_entry,
                                     read_defer_log, MailqFormatter, json_line)

DESCRIPTION
    report.py   queue scan, defer-log reader, mailq and JSON formatters,
                and the showq wire encoding shared by service and client
    service.py  the showq(8) daemon on public/showq
"""
