"""The API's routes, one module per resource; HTTP only, the work is in the desk and the worker."""
