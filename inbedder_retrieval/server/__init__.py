"""``inbedder serve``: an HTTP service over the library (needs the ``server`` extra:
fastapi, uvicorn, prometheus-client). Build an app with
``inbedder_retrieval.server.app.create_app(Service.from_objects([model], {...}), ServerConfig())``.

Nothing is imported here, so ``inbedder --help`` stays free of the server's dependencies.
"""
