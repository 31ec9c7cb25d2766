"""pixhook: asynchronous image jobs with signed webhooks."""
