"""The SMTP relay: listeners, the message pipeline, the durable queue and delivery."""
