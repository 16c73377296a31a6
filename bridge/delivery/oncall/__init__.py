"""On call (dyżur): who is on duty when (``rota``), paging that person through e-mail and an
SMS gateway and escalating when nobody acknowledges (``pager``, ``channels``), and the signed
one-time links in the pages (``links``)."""
