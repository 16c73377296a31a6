"""What comes in: samples pushed by agents (``samples``) and Alertmanager's webhook
notifications (``alertmanager``) become the same alerts in the same ticket lifecycle.

May use: the rules engine, ``bridge.tickets``, the store roles it is given. Knows nothing of
HTTP: the API parses requests and calls in here."""
