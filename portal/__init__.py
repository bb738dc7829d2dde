"""The web application: recipient portal, admin console, REST API and key lookup."""

from portal.app import create_app

__all__ = ["create_app"]
