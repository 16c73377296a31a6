"""What leaves dyzur: audit events forwarded to the hospitals' SIEMs (``siem``: forwarding
with a cursor and a lease per destination; ``siem_format``: RFC 5424 and CEF lines).

May use: the store's audit log and coordination roles, the network. Nothing here changes a
ticket."""
