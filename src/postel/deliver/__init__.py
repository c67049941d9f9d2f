"""deliver - the library shared by qmgr(8) and the delivery agents

SYNOPSIS
    from postel.deliver.request import DeliverRequest, DeliverRcpt, encode_request, ...
    from postel.deliver.status import DeliveryContext, sent, defer, bounce, read_log
    from postel.deliver.agent import delivery_agent_main

DESCRIPTION
      request.py   the delivery request (qmgr -> agent) and its reply
      status.py    per-recipient outcomes: the log line, the queue file
                   mark, the bounce/defer/trace per-message logs
      agent.py     the delivery agent skeleton (a multi_server service)

    See docs/delivery.md.
"""
