"""Operations: what an operator does to a site as a whole.

    export        the valid-address list for the upstream relays
    backup        ``postroom backup``: snapshot -> verify -> publish -> prune -> push, from
                  snapshot (the consistent copy), manifest (sizes, SHA-256), generations
                  (latest, held, pruning), mirror (rsync)
    restore       ``postroom restore``: a site home from a generation, quiescent
    salvage       ``postroom queue import`` of a dead machine's queue (after a restore:
                  each message once)
    check         ``postroom check``: check_items, check_net (DNS, certificate)
    backlog       how the queue stands (deferred count, oldest), for check and alerts
    alerts        the periodic task that mails the postmaster about trouble
    sdnotify      READY=1 / WATCHDOG=1 to systemd
    status        ``postroom status``

The control channel the commands use to reach a running server is ``postroom.control``
(on the ground floor, so that every layer can announce mail)."""
