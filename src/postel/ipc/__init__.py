"""ipc - interprocess communication between Postel services

DESCRIPTION
    attr        the attribute-list protocol: encode, AttrDecoder, read_attrs,
                write_attrs, serve_requests (the one definition of the format)
    client      connect_service (connect with retry), ServiceClient (a small
                pool of reused connections), request_sync for commands
    trigger     send_trigger: one-shot wake-up requests to FIFO or UNIX
                socket endpoints (pickup, qmgr, flush)
    skeleton    the service process skeleton (multi_server_main, ...)

    The modules are imported by name (postel.ipc.attr, ...); this package
    imports nothing itself, so that importing one part stays cheap.
"""
