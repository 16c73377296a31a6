"""Maintenance: windows (``windows``: pure occurrences and the muting question; ``planning``:
planning, conflicts, cancel), the calendar feed, and staged AMMS updates (``updates``).

May use: the store's window and plan roles, ``bridge.tickets`` for the plans' tickets, and the
ssh collector's runner for runbooks. Muting answers one question and knows nothing of tickets."""
