"""Tickets: the lifecycle state machine (one alert, one ticket), the SLA clock (``sla``), the
texts a person reads (``texts``) and the monthly report (``report``).

May use: the store's ticket, audit and coordination roles; whatever mutes alerts, through the
one question ``muting(asset, at)``. Knows nothing of where alerts come from."""
