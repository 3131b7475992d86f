"""The event's PostgreSQL: the server (managed cluster or adopted), tenancy, sources, and their parts."""
