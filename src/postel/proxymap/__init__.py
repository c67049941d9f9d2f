"""proxymap - the Postel lookup table proxy server

DESCRIPTION
    service.py  the proxymap(8) daemon, as the proxymap (read-only) and
                proxywrite (read-write) services of master.cf

    The client side is the proxy: table type, postel.tables.proxy.
"""
