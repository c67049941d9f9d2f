"""flush_client - talk to the flush(8) service

SYNOPSIS
    from postel.ipc.flush_client import (flush_add, flush_send_site, flush_send_file,
                                     flush_refresh, flush_purge, flush_send_site_async,
                                     flush_add_async, FLUSH_STAT_OK, FLUSH_STAT_FAIL,
                                     FLUSH_STAT_BAD, FLUSH_STAT_DENY)

    status = flush_send_site(queue_directory, "example.com")     # ETRN, postqueue -s
    status = await flush_send_site_async(queue_directory, "example.com")   # smtpd

DESCRIPTION
    Every function sends one request to public/flush and returns the
    service's status, one of:

      FLUSH_STAT_OK    (0)  done
      FLUSH_STAT_FAIL  (1)  the service is unreachable or failed (temporary)
      FLUSH_STAT_BAD   (3)  invalid request (bad site name or queue ID)
      FLUSH_STAT_DENY  (4)  the site is not eligible ($fast_flush_domains)

    None of them raises for an unavailable service: that is FLUSH_STAT_FAIL,
    which smtpd maps to "458 Unable to queue messages for node" and
    postqueue to "Cannot flush mail queue - mail system is down".

    Requests (attribute lists):
      request=add site=S queue_id=Q     a delivery to S was deferred (agent)
      request=send_site site=S          deliver S's deferred mail now (ETRN)
      request=send_file queue_id=Q      deliver one deferred message now
      request=refresh                   flush logs not flushed for a while
      request=purge                     flush every log now
    Reply: status=N
"""

from __future__ import annotations

import os

from postel.ipc.attr import AttrError, read_attrs, write_attrs
from postel.ipc.client import ServiceUnavailable, connect_service, request_sync, service_path

FLUSH_STAT_OK = 0
FLUSH_STAT_FAIL = 1
FLUSH_STAT_BAD = 3
FLUSH_STAT_DENY = 4
FLUSH_ENDPOINT = "public/flush"
TIMEOUT = 100.0


def _request(queue_directory: str, attrs: dict[str, str], timeout: float) -> int:
    """_request - one blocking exchange; FLUSH_STAT_FAIL for any failure."""
    if not os.path.exists(service_path(queue_directory, FLUSH_ENDPOINT)):
        return FLUSH_STAT_FAIL          # master creates the socket: the system is down
    try:
        reply = request_sync(queue_directory, FLUSH_ENDPOINT, attrs, timeout=timeout,
                             retry_for=2.0)
        status = reply.get_int("status", FLUSH_STAT_FAIL)
    except (ServiceUnavailable, AttrError, EOFError, OSError, ValueError):
        return FLUSH_STAT_FAIL
    return status if status is not None else FLUSH_STAT_FAIL


async def _request_async(queue_directory: str, attrs: dict[str, str], timeout: float) -> int:
    """_request_async - one exchange from event-loop code."""
    writer = None
    try:
        reader, writer = await connect_service(queue_directory, FLUSH_ENDPOINT)
        await write_attrs(writer, attrs)
        reply = await read_attrs(reader, timeout=timeout)
        status = reply.get_int("status", FLUSH_STAT_FAIL)
    except (ServiceUnavailable, AttrError, EOFError, OSError, ValueError, TimeoutError):
        return FLUSH_STAT_FAIL
    finally:
        if writer is not None:
            writer.close()
    return status if status is not None else FLUSH_STAT_FAIL


def flush_add(queue_directory: str, site: str, queue_id: str, timeout: float = TIMEOUT) -> int:
    """flush_add - record that queue_id has mail deferred for site."""
    return _request(queue_directory, {"request": "add", "site": site, "queue_id": queue_id},
                    timeout)


def flush_send_site(queue_directory: str, site: str, timeout: float = TIMEOUT) -> int:
    """flush_send_site - deliver the deferred mail for site now (ETRN, postqueue -s)."""
    return _request(queue_directory, {"request": "send_site", "site": site}, timeout)


def flush_send_file(queue_directory: str, queue_id: str, timeout: float = TIMEOUT) -> int:
    """flush_send_file - deliver one deferred message now (postqueue -i)."""
    return _request(queue_directory, {"request": "send_file", "queue_id": queue_id}, timeout)


def flush_refresh(queue_directory: str, timeout: float = TIMEOUT) -> int:
    """flush_refresh - flush logs older than $fast_flush_refresh_time, drop stale ones."""
    return _request(queue_directory, {"request": "refresh"}, timeout)


def flush_purge(queue_directory: str, timeout: float = TIMEOUT) -> int:
    """flush_purge - flush every log now."""
    return _request(queue_directory, {"request": "purge"}, timeout)


async def flush_send_site_async(queue_directory: str, site: str, timeout: float = TIMEOUT) -> int:
    """flush_send_site_async - flush_send_site for smtpd's ETRN."""
    return await _request_async(queue_directory, {"request": "send_site", "site": site}, timeout)


async def flush_add_async(queue_directory: str, site: str, queue_id: str,
                          timeout: float = TIMEOUT) -> int:
    """flush_add_async - flush_add for delivery agents."""
    return await _request_async(queue_directory,
                                {"request": "add", "site": site, "queue_id": queue_id}, timeout)
