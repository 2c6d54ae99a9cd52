"""The list engine (what GNU Mailman did): lists and members (``model``), the posting
pipeline, moderation, decoration, fan-out, archive, subscriptions, digests, bounces,
membership sync and import."""
