"""mensa.core: config and its validation, the user-error types, the Layer IR and builder, the golden numerics.

The bottom of the package graph: it needs only the standard library and numpy.
"""
