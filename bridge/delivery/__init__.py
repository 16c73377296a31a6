"""What leaves dyzur, by one path: the outbox (``outbox``: the audit log read by each consumer
with a cursor and a lease of its own, delivered at least once, in order, with retries) and its
consumers. The first consumer is SIEM forwarding (``siem``: destinations, transports and the
consumer; ``siem_format``: RFC 5424 and CEF lines); helpdesk sinks and on-call pages follow.

May use: the store's audit log, cursors and coordination roles, the network. Nothing here
changes a ticket."""
