"""The web dashboard (`/ui`): projects, datasets, runs, models, gateway traffic and keys.

Server-rendered shells (Jinja2) plus one small bundled script that reads the JSON endpoints
under ``/ui/api`` — the same endpoints scripts can use. No CDN: everything ships in the package.
:func:`zimo.web.ui.mount_ui` adds it to a gateway app.
"""
