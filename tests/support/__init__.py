"""Test and benchmark support: doubles that must never ship (they are outside the installed packages).

`fake_client.FakeScoreClient` stands in for `/score`; `synthetic` builds small LightGBM champions and an
in-memory feature store; `synthetic_service` is the Bento service over them (the only way to serve
something other than the registry's champions, reachable only from a checkout).
"""
