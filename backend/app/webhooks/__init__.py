"""Completion webhooks: a job submitted with `webhook_url` gets its final JSON POSTed there,
signed, retried with a backoff, every attempt recorded (`models.WebhookDelivery`)."""
