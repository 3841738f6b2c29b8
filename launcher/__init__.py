"""`python -m launcher`: the one-machine stack behind `make run`."""
