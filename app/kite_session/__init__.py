"""Kite's daily session: each account's session state (state.py), what a change of it announces
(announce.py), the orders held while it is dead (held_orders.py) and the one-click login (login.py)."""
