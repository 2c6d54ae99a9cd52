"""Routing: sendmail-format map readers and the resolver.

``maps`` reads the source files, ``mapset`` loads a site's maps together (last good wins),
``resolve`` turns an address into its final routes.
"""
