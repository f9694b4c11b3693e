"""The recommendation HTTP service (issue 7).

``create_app()`` builds the ASGI application, ``run_server()`` runs it under uvicorn. Data
comes from the warehouse as immutable snapshots (``snapshot.load_snapshot``) that are
swapped atomically when a newer model version is published.
"""
