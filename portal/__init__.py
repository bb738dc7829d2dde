"""The web application: recipient portal, admin console, REST API and key lookup."""
