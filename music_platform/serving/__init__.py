"""The recommendation HTTP service (issue 7).

``create_app()`` builds the application (RSGI for Granian, ASGI for anything else),
``run_server()`` runs it on Granian. Data comes from the warehouse as immutable snapshots
(``snapshot.load_snapshot``) that are swapped atomically when a newer model version is
published.
"""
