"""The gateway's endpoints, one router per area: ``models`` (health, metrics, model list),
``chat`` (chat and text completions), ``embeddings``, ``feedback``, ``admin``; ``common`` holds
what they share. :func:`zimo.serve.app.create_app` includes them."""
