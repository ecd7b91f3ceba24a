"""The WSGI application, for a server that streams request bodies to it::

    gunicorn --worker-class gthread --threads 16 site_config.wsgi
"""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "site_config.settings")
application = get_wsgi_application()
