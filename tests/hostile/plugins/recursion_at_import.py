"""Hostile plugin: unbounded recursion as it is imported."""
def f(n):
    return f(n + 1)


f(0)
